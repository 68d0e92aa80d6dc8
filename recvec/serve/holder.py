"""The artifact a server answers from, and its hot reload.

A :class:`Snapshot` is one loaded artifact (an immutable ``LoadedIndex``; see
``recvec.engine.recommender``) with its version. :class:`IndexHolder` keeps the current one: a
request takes it once (``use()``) and answers wholly from it; ``reload()`` loads the artifact again
*beside* the served one -- every file checked against the manifest, the text encoder of a text
index loaded and tried -- and only then swaps the reference. Requests in flight finish on the old
snapshot, later ones get the new one, no answer mixes the two; a load that fails (a corrupt or
half-published artifact) leaves the old snapshot serving and says why. A retired snapshot's
artifact is closed once its last request has finished (a Milvus connection; FAISS holds nothing).

``version`` identifies an artifact's content: 12 hex digits of the SHA-256 of its manifest (which
records the SHA-256 of every file), so two publishes of the same build have the same version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from recvec.engine import storage
from recvec.errors import RecvecError
from recvec.indexes.build import LoadedIndex, open_index

log = logging.getLogger("recvec.serve")


def manifest_version(manifest: dict) -> str:
    """12 hex digits of the SHA-256 of the manifest's canonical JSON (a default FAISS ``backend``
    entry left out, as loading drops it)."""
    body = {k: v for k, v in manifest.items() if k != "backend"}
    backend = manifest.get("backend")
    if isinstance(backend, dict) and str(backend.get("kind", "faiss")).lower() != "faiss":
        body["backend"] = backend
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@dataclass
class Snapshot:
    """One loaded artifact: ``loaded`` (artifact + Recommender), ``version``, ``loaded_at`` (epoch
    seconds), ``load_s`` (seconds the load took), ``embedder`` (text indexes: the artifact's encoder,
    used under ``embed_lock``: tokenizers are not thread-safe) and ``int_ids`` (whether the artifact's
    item ids are integers). Requests in flight are counted so a retired snapshot closes after them."""

    loaded: LoadedIndex
    version: str
    loaded_at: float
    load_s: float
    embedder: Any = None
    int_ids: bool = True
    embed_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _users: int = field(default=0, repr=False)
    _retired: bool = field(default=False, repr=False)

    @property
    def manifest(self) -> dict:
        """The artifact's manifest."""
        return self.loaded.artifact.manifest

    def summary(self) -> dict:
        """The manifest in brief (what ``GET /info`` shows): version, model, encoder, index, sizes,
        build and data provenance; no file list."""
        m = self.manifest
        keep = ("model", "encoder", "pooling", "normalized", "user_encoder", "index", "dim", "metric", "n_items",
                "format_version", "created", "build_time_s", "fit_time_s", "data_source", "data_format",
                "data_fingerprint", "split")
        return {"version": self.version, "loaded_at": self.loaded_at, "load_s": round(self.load_s, 4),
                "backend": self.loaded.artifact.backend, "text_queries": self.embedder is not None,
                **{k: m[k] for k in keep if k in m}}


def load_snapshot(src: str, endpoint_url: str | None = None) -> Snapshot:
    """Load the artifact at ``src`` into a Snapshot (a text index's encoder loaded and tried once).
    ArtifactError/RecvecError for a missing, corrupt or unusable artifact."""
    t0 = time.perf_counter()
    loaded = open_index(src, endpoint_url=endpoint_url)
    art = loaded.artifact
    embedder = None
    if art.model_kind == "text":
        from recvec.engine.models.text import get_embedder

        embedder = get_embedder(art.manifest["encoder"], art.manifest.get("pooling"))
        if embedder.dim != art.dim:
            raise RecvecError(f"encoder {art.manifest['encoder']} gives {embedder.dim}-d vectors but the index holds "
                              f"{art.dim}-d vectors")
        embedder.encode_queries(["warm-up"])  # the first call loads lazily-built parts
    int_ids = getattr(art.item_ids, "dtype", None) is not None and art.item_ids.dtype.kind in "iu"
    return Snapshot(loaded, manifest_version(art.manifest), time.time(), time.perf_counter() - t0, embedder, int_ids)


class NotReady(RecvecError):
    """No artifact is loaded (yet)."""


class IndexHolder:
    """The current Snapshot of the artifact at ``src`` and its reloads (see the module doc).
    Thread-safe: any number of requests may ``use()`` while one ``reload()`` runs."""

    def __init__(self, src: str, endpoint_url: str | None = None):
        self.src = str(src)
        self.endpoint_url = endpoint_url
        self._current: Snapshot | None = None
        self._lock = threading.Lock()  # guards _current and the snapshots' user counts
        self._reload_lock = threading.Lock()  # one load at a time
        self._s3_client = None
        self.failed_version: str | None = None  # the manifest version whose load failed last (not retried by watch)
        self.last_error: str | None = None
        self.reloads = {"reloaded": 0, "unchanged": 0, "failed": 0}

    @property
    def current(self) -> Snapshot:
        """The snapshot served now; NotReady before the first load."""
        snap = self._current
        if snap is None:
            raise NotReady("no artifact is loaded yet")
        return snap

    @property
    def ready(self) -> bool:
        """Whether a snapshot is loaded."""
        return self._current is not None

    @contextmanager
    def use(self):
        """The current snapshot, held for one request: it stays open until the block ends, even if a
        reload swaps in another meanwhile."""
        with self._lock:
            snap = self.current
            snap._users += 1
        try:
            yield snap
        finally:
            with self._lock:
                snap._users -= 1
                close = snap._retired and snap._users == 0
            if close:
                snap.loaded.artifact.close()

    def load(self) -> Snapshot:
        """Load the artifact and serve it (the first load, or a reload); returns it. Errors propagate
        and leave what was served in place."""
        return self._swap(load_snapshot(self.src, self.endpoint_url))

    def _swap(self, new: Snapshot) -> Snapshot:
        with self._lock:
            old, self._current = self._current, new
            close = old is not None and old._users == 0
            if old is not None:
                old._retired = True
        if close:
            old.loaded.artifact.close()
        return new

    def reload(self, *, only_if_changed: bool = False) -> dict:
        """Load the artifact again beside the served one and swap it in. Returns ``{"status":
        "reloaded" | "unchanged", "version", "previous", "load_s"}`` ("unchanged": the same version,
        the served snapshot kept). With ``only_if_changed`` (the manifest watcher) nothing is loaded
        while the manifest's version is the served one or the one that failed last. A failed load
        raises RecvecError (the old snapshot keeps serving) and is counted."""
        with self._reload_lock:
            previous = self._current.version if self._current is not None else None
            if only_if_changed:
                seen = self.stored_version()
                if seen is None or seen == previous or seen == self.failed_version:
                    return {"status": "unchanged", "version": previous, "previous": previous, "load_s": 0.0}
            try:
                new = load_snapshot(self.src, self.endpoint_url)
            except Exception as e:  # whatever failed, the served snapshot stays
                self.reloads["failed"] += 1
                self.failed_version = self.stored_version()
                self.last_error = str(e) if isinstance(e, RecvecError) else f"{type(e).__name__}: {e}"
                if isinstance(e, RecvecError):
                    raise
                log.exception("loading %s failed", self.src)
                raise RecvecError(f"loading the artifact failed: {self.last_error}") from None
            self.failed_version = None
            self.last_error = None
            if new.version == previous:
                new.loaded.artifact.close()
                self.reloads["unchanged"] += 1
                return {"status": "unchanged", "version": previous, "previous": previous, "load_s": new.load_s}
            self._swap(new)
            self.reloads["reloaded"] += 1
            return {"status": "reloaded", "version": new.version, "previous": previous, "load_s": new.load_s}

    def stored_version(self) -> str | None:
        """The version of the manifest stored at ``src`` now (None when it cannot be read; the
        SHA-256 of its bytes, marked ``invalid-``, when it is not a JSON object)."""
        try:
            if storage.is_s3(self.src):
                if self._s3_client is None:
                    self._s3_client = storage.s3_client(self.endpoint_url)
                raw = storage.read_bytes(f"{self.src.rstrip('/')}/manifest.json", client=self._s3_client)
            else:
                raw = (storage.published_dir(self.src) / "manifest.json").read_bytes()
        except (RecvecError, OSError):
            return None
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            manifest = None
        if not isinstance(manifest, dict):
            return "invalid-" + hashlib.sha256(raw).hexdigest()[:12]
        return manifest_version(manifest)

    def close(self) -> None:
        """Close the served snapshot's artifact (at shutdown)."""
        with self._lock:
            snap, self._current = self._current, None
        if snap is not None:
            snap.loaded.artifact.close()
