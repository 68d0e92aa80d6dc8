"""Index artifacts: one directory (or ``s3://bucket/prefix``) holding everything a query needs.

Layout (format_version 1)::

    manifest.json      written last, read first (below)
    index.faiss        the FAISS index (inner product; ids are rows 0..n-1)
    item_ids.npy       int64 external item id of each row
    <name>.npy         each extra array (e.g. ALS item factors, embeddings, gram matrices);
                       ``item_vectors`` is not written when the index reproduces it bit-exactly
                       (flat, HNSW-flat): it is reconstructed from the index on load, so a flat
                       artifact stores its vectors once
    catalog.json.gz    display metadata aligned with item_ids (e.g. {"titles": [...], "genres": [...]}),
                       gzip-compressed JSON (ML-1M titles+genres are 16% of the 64-d vectors raw, 5% gzipped)

``manifest.json``::

    format_version  int (this code writes and reads 1; newer is refused)
    created         ISO-8601 UTC time
    model           {"kind": ..., "params": {...}} from the caller
    encoder, pooling, normalized, index, build_time_s, data_fingerprint, ...   from the caller
    dim, metric ("inner_product"), n_items
    index_file, item_ids_file, catalog_file
    arrays          {name: {"file": "name.npy" | null, "from_index": bool, "dtype", "shape"}}
    files           {name: {"sha256", "bytes"}} for every file but the manifest

Index backends: by default the index is FAISS, stored as ``index.faiss``. An artifact whose index
lives in Milvus (``recvec build --backend milvus``) has no index file (``index_file`` is null), always
stores ``item_vectors.npy`` (nothing to reconstruct them from), and its manifest adds::

    backend         {"kind": "milvus", "mode": "lite"|"server", "uri", "collection", "metric", "dim",
                     "ntotal", "index_kind", "index_type", "index_params", "search_defaults"}
                    (MilvusIndex.describe(); a Lite uri is an absolute path; never a token)

Loading such an artifact checks every file as usual, then opens the collection with
``MilvusIndex.open`` (token from ``$RECVEC_MILVUS_TOKEN``) and checks it against the manifest: row
count, dimension, index type, and (for unquantised indexes, when verifying) that a few rows' search
scores match the stored item vectors -- a collection rebuilt for another artifact is refused.

Loading reads the manifest first, refuses newer format versions, file names that are not plain
names, missing/truncated/altered files (size and sha256), dimension/metric/count mismatches,
and never unpickles anything (``np.load(allow_pickle=False)``, JSON, FAISS's own format).

Saving is atomic: locally everything is written into a temp dir beside the destination and
swapped in with one rename (``storage.publish_local_dir``); on S3 the manifest is uploaded last, so a
reader (which reads the manifest first and checks every file against it) never loads a half-written
artifact. An upload over an existing S3 artifact never overwrites an object the live manifest points
at: its files get a fresh tag (``index.<12 hex>.faiss``, ``item_ids.<tag>.npy``, ...; the manifest
records the names), and once the new manifest is up the previous version's files and any other
artifact file names directly under the prefix that it does not list (debris of killed uploads)
are deleted. A build killed at any point (tests/test_artifact_faults.py kills one
at every write, rename, request and half-way through each file and PUT body) leaves the previous
complete artifact, or nothing that loads when there was none.

A loaded ``Artifact`` holds everything in memory (nothing refers back to the files), so it can be
replaced on disk or in S3 while loaded. ``load_artifact`` racing a publish at the same place loads
either version complete: a file that does not match the manifest it read (replaced or deleted under
it) makes it re-read the manifest and start again if that changed.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from recvec.engine import storage
from recvec.errors import ArtifactError, RecvecError, shorten, shorten_path, shown
from recvec.indexes.search import ItemIndex

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
ITEM_IDS_FILE = "item_ids.npy"
CATALOG_FILE = "catalog.json.gz"
METRIC = "inner_product"
ITEM_VECTORS = "item_vectors"
#: Where an artifact's index lives; "faiss" artifacts have no ``backend`` entry in the manifest.
BACKENDS = ("faiss", "milvus")

#: Keys save_artifact computes; a caller's manifest may not set them.
RESERVED_KEYS = frozenset({"format_version", "dim", "metric", "n_items", "index_file", "item_ids_file",
                           "catalog_file", "arrays", "files", "backend"})
_ARRAY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")
#: Loads that meet files not matching the manifest they read start again this often if it changed.
_LOAD_ATTEMPTS = 3

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Artifact:
    """A loaded artifact: manifest, index, item ids (row -> external id), arrays, catalog.

    ``index`` is an ``ItemIndex`` (FAISS) or, for a Milvus artifact, an open ``MilvusIndex``; both
    answer the same ``search`` contract. ``close()`` releases a Milvus connection (no-op for FAISS).
    """

    manifest: dict
    index: Any
    item_ids: np.ndarray
    arrays: dict
    catalog: dict

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def n_items(self) -> int:
        return int(self.manifest["n_items"])

    @property
    def model_kind(self) -> str:
        return str(self.manifest["model"]["kind"])

    @property
    def item_vectors(self) -> np.ndarray | None:
        return self.arrays.get(ITEM_VECTORS)

    @property
    def backend(self) -> str:
        """Where the index lives: "faiss" (in process, index.faiss) or "milvus"."""
        return str((self.manifest.get("backend") or {}).get("kind", "faiss"))

    def close(self) -> None:
        """Close the index's connection (a Milvus client); FAISS indexes need nothing."""
        close = getattr(self.index, "close", None)
        if callable(close):
            close()


# --------------------------------------------------------------------- index backends (build side)


def backend_options(kind: str | None, uri: str | None, collection: str | None, spec: Any = None,
                    dest: str | Path | None = None) -> dict | None:
    """Check where an index is to be served before any slow work; None means FAISS (the default).

    For "milvus" returns ``{"kind": "milvus", "uri": <absolute .db path or http(s) URI>, "collection"}``
    after checking the URI, the collection name, that this Milvus flavour can build ``spec`` (an
    IndexSpec) and that a Lite database does not sit inside the artifact directory ``dest``. A
    FAISS build given a --uri or --collection is refused rather than silently ignoring them.
    """
    kind = (kind or "faiss").lower()
    if kind not in BACKENDS:
        raise RecvecError(f"unknown index backend {shown(kind)}; choose one of {', '.join(BACKENDS)}")
    if kind == "faiss":
        given = [flag for flag, value in (("--uri", uri), ("--collection", collection)) if value]
        if given:
            raise RecvecError(f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --backend "
                              "milvus only (this build writes a FAISS index)")
        return None
    from recvec.indexes.backends.milvus import LITE_KINDS, SERVER_KINDS, check_collection_name, resolve_uri

    missing = [flag for flag, value in (("--uri", uri), ("--collection", collection)) if not value]
    if missing:
        raise RecvecError(f"--backend milvus needs {' and '.join(missing)} (--uri FILE.db for Milvus Lite or "
                          "http://HOST:19530 for a Milvus server; --collection NAME)")
    resolved, mode = resolve_uri(uri)
    check_collection_name(collection)
    if spec is not None:
        supported = LITE_KINDS if mode == "lite" else SERVER_KINDS
        if getattr(spec, "kind", None) not in supported:
            what = f"FAISS factory string {shown(spec.factory)}" if spec.kind == "factory" else f"index kind {shown(spec.kind)}"
            where = "Milvus Lite" if mode == "lite" else "a Milvus server"
            raise RecvecError(f"{what} cannot be built on {where}; supported kinds: {', '.join(supported)}")
    if dest is not None:
        check_backend_location(resolved, dest)
    return {"kind": "milvus", "uri": resolved, "collection": collection}


def create_backend_index(vectors: np.ndarray, spec: Any, backend: dict | None, dest: str | Path | None = None, *,
                         progress: bool = False) -> Any:
    """Build the served index for a non-FAISS backend (see ``backend_options``); None for FAISS.

    Milvus: creates (replacing) the collection from ``vectors`` with ids 0..n-1 and ``spec`` mapped
    to Milvus index parameters, inserting in batches (a progress bar when ``progress``). Returns the
    open ``MilvusIndex``; pass it to ``save_artifact`` and finish with ``finish_backend_index``.
    """
    if backend is None or backend.get("kind", "faiss") == "faiss":
        return None
    opts = backend_options(backend.get("kind"), backend.get("uri"), backend.get("collection"), spec, dest)
    from recvec.indexes.backends.milvus import MilvusIndex

    extra = {k: backend[k] for k in ("batch_size",) if k in backend}
    return MilvusIndex.create(opts["uri"], opts["collection"], vectors, spec,
                              progress=bool(backend.get("progress", progress)), **extra)


@contextmanager
def finish_backend_index(index: Any) -> Iterator[None]:
    """Around saving the artifact of a served index: drop the new collection if saving fails (no
    artifact points at it), and close the client either way (Milvus Lite lets one process hold a .db)."""
    if index is None or isinstance(index, ItemIndex):
        yield
        return
    try:
        yield
    except BaseException:
        try:
            index.drop()
        except RecvecError:
            pass  # the save error is the one to report
        raise
    finally:
        index.close()


# ------------------------------------------------------------------------------------- saving


def save_artifact(dest: str | Path, *, index: Any, item_ids: np.ndarray, arrays: dict[str, np.ndarray],
                  catalog: dict, manifest: dict, endpoint_url: str | None = None) -> str:
    """Write an artifact to a local directory or ``s3://bucket/prefix`` atomically; returns dest.

    ``index`` is an ItemIndex or a FAISS index, or a ``MilvusIndex`` (then the manifest records
    its ``describe()`` as ``backend`` instead of writing index.faiss, and ``arrays`` must hold
    ``item_vectors``); ``item_ids`` the external id of each row; ``arrays`` extra named numeric
    arrays (``item_vectors`` must be (n, dim)); ``catalog`` JSON display data whose list values are
    aligned with item_ids; ``manifest`` the caller's part of the manifest (must hold
    ``model: {"kind", "params"}``).
    """
    backend = _backend_entry(index)
    ix = index if (backend is not None or isinstance(index, ItemIndex)) else ItemIndex(index)
    ids = _check_item_ids(item_ids, ix.ntotal)
    arrs = _check_arrays(arrays, ix.ntotal, ix.dim)
    if backend is not None:
        if ITEM_VECTORS not in arrs:
            raise ArtifactError(f"an artifact served from {backend['kind']} must store {shown(ITEM_VECTORS)} "
                                "(query-time user vectors are built from them)")
        check_backend_location(backend["uri"], dest)
    catalog_bytes = _catalog_bytes(catalog, ix.ntotal)
    head = _check_caller_manifest(manifest)
    if storage.is_s3(str(dest)):
        _save_s3(str(dest), ix, ids, arrs, catalog_bytes, head, backend, endpoint_url)
        return str(dest)
    try:
        final = storage.output_dir(dest, what="artifact directory")
    except storage.StorageError as e:
        raise ArtifactError(str(e)) from None
    check_replaceable(final)
    tmp = None
    try:
        tmp = storage.sibling_tmp_dir(final)
        _write_dir(tmp, ix, ids, arrs, catalog_bytes, head, backend, durable=True)
        storage.publish_local_dir(tmp, final)
    except OSError as e:
        raise ArtifactError(f"cannot write the artifact {shorten_path(final)}: {_os_reason(e, final)}; "
                            "nothing was replaced") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(final)


def _os_reason(e: OSError, where: Path) -> str:
    """'Permission denied: /path' -- the OS's reason and the path it names (where, if none)."""
    path = e.filename if e.filename is not None else where
    return f"{e.strerror or type(e).__name__}: {shorten_path(path)}"


def check_replaceable(final: Path) -> None:
    """Refuse to publish over a local directory that is not a recvec artifact.

    Publishing replaces the destination whole, so it may only stand where nothing is, where an
    empty directory is, or where a recvec artifact is whose manifest lists every file in it (its
    ``manifest.json`` parses and nothing else is there). Anything else -- a file, a symbolic link,
    a folder of the user's own files, an artifact with files added to it -- raises ArtifactError
    naming what is in the way; nothing is touched."""
    for above in final.parents:
        if os.path.lexists(above):
            if not above.is_dir():
                raise ArtifactError(f"cannot write an artifact to {shorten_path(final)}: {shorten_path(above)} "
                                    "is a file, not a directory")
            break
    if not os.path.lexists(final):
        return
    if final.is_symlink() or not final.is_dir():
        kind = "a symbolic link" if final.is_symlink() else "a file"
        raise ArtifactError(f"cannot write an artifact to {final}: it exists and is {kind}, not a directory; "
                            "choose another destination")
    try:
        entries = sorted(p.name for p in final.iterdir())
    except OSError as e:
        raise ArtifactError(f"cannot write an artifact to {final}: {_os_reason(e, final)}") from None
    if not entries:
        return
    refuse = (f"refusing to replace {final}: it is not a recvec artifact ({{why}}), and publishing an artifact "
              "replaces the whole directory; nothing was changed. Choose a new or empty directory")
    if MANIFEST not in entries:
        raise ArtifactError(refuse.format(why=f"no {MANIFEST}; it holds {_names(entries)}"))
    try:
        listed = set(_parse_manifest((final / MANIFEST).read_bytes(), str(final / MANIFEST))["files"])
    except OSError as e:
        raise ArtifactError(f"cannot write an artifact to {final}: {_os_reason(e, final / MANIFEST)}") from None
    except RecvecError as e:
        raise ArtifactError(refuse.format(why=f"its {MANIFEST} is not a recvec manifest: {e}")) from None
    foreign = [n for n in entries if n != MANIFEST and n not in listed]
    if foreign:
        raise ArtifactError(refuse.format(why=f"its manifest does not list {_names(foreign)}, which recvec did "
                                              "not write; move them out first"))


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(shorten(n, 60) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _save_s3(dest: str, ix: Any, ids: np.ndarray, arrs: dict, catalog_bytes: bytes, head: dict,
             backend: dict | None, endpoint_url: str | None) -> None:
    """Upload without overwriting anything the live manifest points at, the manifest last; then delete
    what the previous version and killed uploads left (see the module docstring).

    Before any file goes up, a journal (``.recvec-upload.<tag>.json``: the names about to be written
    and the live version's names that the new manifest replaces) is written, so every object recvec
    puts under the prefix is accounted for by a manifest or a journal even when a build is killed.
    A prefix holding any object that neither accounts for is not recvec's to replace: refused before
    anything is written."""
    client = storage.s3_client(endpoint_url)
    live, journals, recorded = _s3_prefix_state(dest, client)
    tag = uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory(prefix="recvec-artifact-") as tmp:
        names = _write_dir(Path(tmp), ix, ids, arrs, catalog_bytes, head, backend,
                           tag=None if live is None else tag)
        journal = f"{_JOURNAL_PREFIX}{tag}.json"
        body = json.dumps({"writes": sorted(names), "replaces": sorted(live or ())}).encode("utf-8")
        storage.put_bytes(f"{dest.rstrip('/')}/{journal}", body, client=client)
        storage.upload_dir(tmp, dest, endpoint_url=endpoint_url, last=MANIFEST, client=client)
    keep = {*names, MANIFEST}
    _remove_stale_s3(dest, client, stale=(set(live or ()) | recorded) - keep, journals={*journals, journal})


_JOURNAL_PREFIX = ".recvec-upload."
_JOURNAL = re.compile(r"^\.recvec-upload\.[0-9a-f]{12}\.json$")


def _s3_prefix_state(dest: str, client: Any) -> tuple[set[str] | None, list[str], set[str]]:
    """(files the live manifest lists or None when there is no manifest, the upload journals there,
    the names those journals record) for an S3 artifact prefix; raises ArtifactError when the prefix
    holds an object that is none of these (not recvec's: it must not be overwritten or deleted)."""
    present = storage.list_files(dest, client=client)
    live = _live_s3_files(dest, client) if MANIFEST in present else None
    journals = [n for n in present if _JOURNAL.match(n)]
    recorded: set[str] = set()
    for name in journals:
        try:
            j = json.loads(storage.read_bytes(f"{dest.rstrip('/')}/{name}", client=client).decode("utf-8"))
            recorded |= {n for key in ("writes", "replaces") for n in j.get(key, []) if isinstance(n, str)}
        except (storage.StorageError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue  # unreadable: the names it would have covered count as foreign below
    accounted = {MANIFEST, *(live or ()), *journals, *recorded}
    foreign = [n for n in present if n not in accounted]
    if foreign:
        why = "its manifest does not list" if live is not None else f"it has no {MANIFEST} and holds"
        raise ArtifactError(f"refusing to write an artifact to {dest}: it is not a recvec artifact prefix "
                            f"({why} {_names(foreign)}, which recvec did not write); nothing was changed. "
                            "Choose an empty prefix")
    return live, journals, recorded


def _live_s3_files(dest: str, client: Any) -> set[str]:
    """The files the manifest now at dest lists; an empty set when it cannot be read or parsed
    (protect it, delete nothing of it)."""
    where = f"{dest.rstrip('/')}/{MANIFEST}"
    try:
        raw = storage.read_bytes(where, client=client)
    except storage.StorageError as e:
        if e.code == "AccessDenied":  # write-only credentials: assume an artifact may be there
            return set()
        raise
    try:
        return set(_parse_manifest(raw, where)["files"])
    except RecvecError:
        return set()


def _remove_stale_s3(dest: str, client: Any, *, stale: set[str], journals: set[str]) -> None:
    """After publishing: delete the previous version's files and what killed uploads recorded in their
    journals (``stale``, never a name the new manifest lists), then the journals. Nothing else under
    the prefix is touched. The new artifact is live already, so a failure is logged, not raised."""
    try:
        present = set(storage.list_files(dest, client=client))
        storage.delete_files(dest, sorted(stale & present), client=client)
        storage.delete_files(dest, sorted(journals & present), client=client)
    except RecvecError as e:
        _log.warning("published %s, but could not remove the previous version's files: %s", dest, e)


def _tagged(name: str, tag: str | None) -> str:
    """'index.faiss' -> 'index.<tag>.faiss' (unchanged without a tag)."""
    if tag is None:
        return name
    stem, _, ext = name.partition(".")
    return f"{stem}.{tag}.{ext}"


def _is_milvus(index: Any) -> bool:
    if isinstance(index, ItemIndex):
        return False
    from recvec.indexes.backends.milvus import MilvusIndex  # no pymilvus import at module level

    return isinstance(index, MilvusIndex)


def _backend_entry(index: Any) -> dict | None:
    """The manifest's ``backend`` entry for an index served outside the artifact (None for FAISS)."""
    if not _is_milvus(index):
        return None
    d = dict(index.describe())
    d.pop("backend", None)
    index_kind = d.pop("kind", None)
    entry = {"kind": "milvus", **d, "index_kind": index_kind}
    if "token" in entry:  # describe() never holds one; make sure no credential reaches the manifest
        del entry["token"]
    return entry


def check_backend_location(uri: str, dest: str | Path) -> None:
    """Refuse a Milvus Lite database inside the artifact directory (publishing replaces that directory)."""
    if "://" in str(uri) or storage.is_s3(str(dest)):
        return
    db, out = Path(uri).resolve(), Path(dest).resolve()
    if db == out or out in db.parents:
        raise ArtifactError(f"the Milvus Lite database {db} is inside the artifact directory {out}, which is "
                            "replaced on every build; put the .db file outside --out")


def _check_item_ids(item_ids: Any, n: int) -> np.ndarray:
    ids = np.asarray(item_ids)
    if ids.ndim != 1 or ids.shape[0] != n:
        raise ArtifactError(f"item_ids must be a 1-d array of {n} ids (one per index row), got shape {ids.shape}")
    if n and not np.issubdtype(ids.dtype, np.integer):
        raise ArtifactError(f"item_ids must be integers, got {ids.dtype}")
    ids = ids.astype(np.int64)
    if np.unique(ids).size != n:
        raise ArtifactError("item_ids must be unique")
    return ids


def _check_arrays(arrays: dict[str, Any], n: int, dim: int) -> dict[str, np.ndarray]:
    if not isinstance(arrays, dict):
        raise ArtifactError(f"arrays must be a dict of name -> array, got {type(arrays).__name__}")
    out = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not _ARRAY_NAME.match(name) or name == "item_ids":
            raise ArtifactError(f"array name {shown(name)} must be an identifier (letters, digits, _) other than item_ids")
        a = np.asarray(value)
        if a.dtype.kind not in "biuf":
            raise ArtifactError(f"array {shown(name)} must be numeric (bool/int/float), got {a.dtype}")
        if name == ITEM_VECTORS and (a.ndim != 2 or a.shape != (n, dim) or a.dtype != np.float32):
            raise ArtifactError(f"array {shown(ITEM_VECTORS)} must be float32 of shape ({n}, {dim}), "
                                f"got {a.dtype} {a.shape}")
        out[name] = np.ascontiguousarray(a)
    return out


def _catalog_bytes(catalog: dict, n: int) -> bytes:
    if not isinstance(catalog, dict):
        raise ArtifactError(f"catalog must be a dict (e.g. titles/genres lists), got {type(catalog).__name__}")
    _check_catalog_alignment(catalog, n, "catalog")
    try:
        text = json.dumps(catalog, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"catalog is not JSON-serialisable: {e}") from None
    return gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)


def _check_catalog_alignment(catalog: dict, n: int, where: str) -> None:
    for key, value in catalog.items():
        if isinstance(value, (list, tuple)) and len(value) != n:
            raise ArtifactError(f"{where} entry {shown(key)} has {len(value)} values but there are {n} items")


def _check_caller_manifest(manifest: dict) -> dict:
    if not isinstance(manifest, dict):
        raise ArtifactError(f"manifest must be a dict, got {type(manifest).__name__}")
    clash = sorted(RESERVED_KEYS & set(manifest))
    if clash:
        raise ArtifactError(f"manifest keys {clash} are written by save_artifact, not by the caller")
    model = manifest.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("kind"), str) \
            or not isinstance(model.get("params", {}), dict):
        raise ArtifactError('manifest needs model = {"kind": str, "params": dict}')
    head = dict(manifest)
    head.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    try:
        json.dumps(head, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"manifest is not JSON-serialisable: {e}") from None
    return head


def _reproduces(ix: ItemIndex, vectors: np.ndarray) -> bool:
    """True when the index returns exactly these vectors (flat / HNSW-flat storage)."""
    if not (ix.is_exact or ix.describe()["faiss_class"] == "IndexHNSWFlat"):
        return False
    try:
        return bool(np.array_equal(ix.vectors(), vectors))
    except RuntimeError:
        return False


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _write_dir(root: Path, ix: Any, ids: np.ndarray, arrays: dict[str, np.ndarray],
               catalog_bytes: bytes, head: dict, backend: dict | None = None, *, tag: str | None = None,
               durable: bool = False) -> list[str]:
    """Write every file, the manifest last; returns the names of the files the manifest lists.
    ``tag`` names them ``<stem>.<tag>.<ext>`` (uploads over a live S3 artifact); ``durable`` fsyncs
    each file (a local publish; the directory is fsync'ed by ``storage.publish_local_dir``)."""
    files: dict[str, dict] = {}

    def write(path: Path, data: bytes) -> None:
        if durable:
            storage.write_durable(path, data)
        else:
            path.write_bytes(data)

    def put(name: str, data: bytes) -> str:
        name = _tagged(name, tag)
        write(root / name, data)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        return name

    index_file = put(INDEX_FILE, ix.to_bytes()) if backend is None else None
    item_ids_file = put(ITEM_IDS_FILE, _npy_bytes(ids))
    array_meta = {}
    for name, a in arrays.items():
        meta = {"dtype": a.dtype.str, "shape": list(a.shape)}
        if name == ITEM_VECTORS and backend is None and _reproduces(ix, a):
            meta.update(file=None, from_index=True)
        else:
            meta.update(file=put(f"{name}.npy", _npy_bytes(a)), from_index=False)
        array_meta[name] = meta
    catalog_file = put(CATALOG_FILE, catalog_bytes)
    manifest = {"format_version": FORMAT_VERSION, **head, "dim": ix.dim, "metric": METRIC,
                "n_items": ix.ntotal, "index_file": index_file,
                **({"backend": backend} if backend is not None else {}),
                "item_ids_file": item_ids_file, "catalog_file": catalog_file, "arrays": array_meta, "files": files}
    write(root / MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return list(files)


# ------------------------------------------------------------------------------------- loading


class _MissingFile(ArtifactError):
    """An artifact file (or the manifest) is not there."""


class _Source:
    """Reads named files of a local directory or an S3 prefix.

    Locally the directory is the published one (``storage.published_dir``: the previous version's
    backup while a publish without rename exchange is between its renames), fixed at construction;
    a file that is a symbolic link leading out of it is refused."""

    def __init__(self, src: str | Path, endpoint_url: str | None, client: Any = None):
        self.src = str(src)
        self.s3 = storage.is_s3(self.src)
        self.endpoint_url = endpoint_url
        self._client = client
        self.root = None if self.s3 else storage.published_dir(self.src)

    def where(self, name: str) -> str:
        return f"{self.src.rstrip('/')}/{name}" if self.s3 else str(self.root / name)

    def read(self, name: str) -> bytes:
        if not self.s3:
            path = self.root / name
            if path.is_symlink() and path.resolve().parent != self.root.resolve():
                raise ArtifactError(f"artifact file {self.where(name)} is a symbolic link to {path.resolve()}, "
                                    "outside the artifact directory: refusing to read it")
            try:
                return path.read_bytes()
            except FileNotFoundError:
                raise _MissingFile(f"artifact file {name} is missing: {self.where(name)}") from None
            except OSError as e:
                raise ArtifactError(f"cannot read artifact file {self.where(name)}: {e.strerror}") from None
        if self._client is None:
            self._client = storage.s3_client(self.endpoint_url)
        try:
            return storage.read_bytes(self.where(name), client=self._client)
        except storage.StorageError as e:
            if e.code == "NoSuchKey":
                raise _MissingFile(f"artifact file {name} is missing: {self.where(name)}") from None
            raise


def _plain_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _PLAIN_NAME.match(name) or name in (".", "..") or ".." in name:
        raise ArtifactError(f"manifest {what} {shown(name)} is not a plain file name (no paths, no '..')")
    return name


def load_artifact(src: str | Path, *, endpoint_url: str | None = None, verify: bool = True) -> Artifact:
    """Load and check an artifact from a local directory or ``s3://bucket/prefix``.

    ``verify=False`` skips the sha256 checksums (sizes, dimensions and the rest are still checked)
    and, for a Milvus artifact, the spot check of the collection's vectors. A Milvus artifact opens
    its collection after every file has been checked (close it with ``Artifact.close()``).

    Everything is read into memory: the returned Artifact is an immutable snapshot that does not
    change when a new artifact is published at ``src``. A load racing such a publish gives one
    version complete (a file that does not match the manifest makes it start again when the manifest
    changed meanwhile), or a clear ArtifactError -- never a mix.
    """
    client = None
    for _ in range(_LOAD_ATTEMPTS - 1):
        source = _Source(src, endpoint_url, client)
        raw = _read_manifest(source)
        client = source._client
        try:
            return _load_checked(source, raw, verify)
        except ArtifactError:
            if not _manifest_changed(source, raw):
                raise
    source = _Source(src, endpoint_url, client)
    return _load_checked(source, _read_manifest(source), verify)


def _read_manifest(source: _Source) -> bytes:
    if not source.s3 and not source.root.is_dir():
        raise ArtifactError(f"no artifact at {source.src}: not a directory")
    try:
        return source.read(MANIFEST)
    except _MissingFile:
        raise ArtifactError(f"no artifact at {source.src}: {MANIFEST} not found") from None


def _manifest_changed(source: _Source, raw: bytes) -> bool:
    """Whether the artifact at the source is now another one than the manifest ``raw`` describes."""
    again = _Source(source.src, source.endpoint_url, source._client)
    if again.root != source.root:
        return True
    try:
        return _read_manifest(again) != raw
    except RecvecError:
        return True


def _load_checked(source: _Source, raw: bytes, verify: bool) -> Artifact:
    manifest = _parse_manifest(raw, source.where(MANIFEST))
    files = manifest["files"]
    blobs: dict[str, bytes] = {}
    for name, meta in files.items():
        data = source.read(name)
        if len(data) != meta["bytes"]:
            raise ArtifactError(f"artifact file {name} is {len(data)} bytes but the manifest says {meta['bytes']} "
                                f"(truncated or replaced): {source.where(name)}")
        if verify and hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ArtifactError(f"checksum mismatch for artifact file {name} (corrupt or modified): "
                                f"{source.where(name)}")
        blobs[name] = data
    n, dim = manifest["n_items"], manifest["dim"]
    backend = manifest.get("backend")

    ix: Any = None
    if backend is None:
        index_name = manifest["index_file"]
        try:
            ix = ItemIndex.from_bytes(blobs[index_name])
        except RecvecError as e:
            raise ArtifactError(f"artifact file {index_name} is not a usable FAISS index: {e}") from None
        if ix.dim != dim:
            raise ArtifactError(f"dimension mismatch: {index_name} has dimension {ix.dim}, the manifest says {dim}")
        if ix.ntotal != n:
            raise ArtifactError(f"{index_name} holds {ix.ntotal} vectors, the manifest says n_items={n}")

    ids = _load_npy(blobs[manifest["item_ids_file"]], manifest["item_ids_file"])
    if ids.dtype != np.int64 or ids.shape != (n,):
        raise ArtifactError(f"{manifest['item_ids_file']} must be int64 of shape ({n},), got {ids.dtype} {ids.shape}")

    arrays: dict[str, np.ndarray] = {}
    for name, meta in manifest["arrays"].items():
        if meta.get("from_index"):
            a = ix.vectors()
        else:
            a = _load_npy(blobs[meta["file"]], meta["file"])
        if a.dtype.str != meta["dtype"] or list(a.shape) != list(meta["shape"]):
            raise ArtifactError(f"array {shown(name)} is {a.dtype.str} {list(a.shape)}, the manifest says "
                                f"{meta['dtype']} {meta['shape']}")
        if name == ITEM_VECTORS and a.shape != (n, dim):
            raise ArtifactError(f"dimension mismatch: {ITEM_VECTORS} has shape {a.shape}, expected ({n}, {dim})")
        arrays[name] = a

    catalog_name = manifest["catalog_file"]
    try:
        catalog = json.loads(gzip.decompress(blobs[catalog_name]).decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"artifact file {catalog_name} is not gzip-compressed JSON: {e}") from None
    if not isinstance(catalog, dict):
        raise ArtifactError(f"artifact file {catalog_name} must hold a JSON object")
    _check_catalog_alignment(catalog, n, f"artifact file {catalog_name}:")
    if backend is not None:  # every file checked: now connect
        ix = _open_backend(backend, manifest, arrays[ITEM_VECTORS], source.src, verify)
    return Artifact(manifest=manifest, index=ix, item_ids=ids, arrays=arrays, catalog=catalog)


def _open_backend(backend: dict, manifest: dict, vectors: np.ndarray, src: str, verify: bool) -> Any:
    """Open the Milvus collection a manifest points at and check it holds this artifact's vectors."""
    from recvec.indexes.backends.milvus import MilvusIndex, resolve_uri

    uri, collection = backend["uri"], backend["collection"]
    what = f"Milvus collection {shown(collection)} at {uri}"
    try:
        uri, mode = resolve_uri(uri)
    except RecvecError as e:
        raise ArtifactError(f"artifact {src}: {MANIFEST} backend uri: {e}") from None
    if mode == "lite" and not Path(uri).exists():  # don't let Milvus Lite create an empty database
        raise ArtifactError(f"artifact {src} serves its index from {what}, but the Milvus Lite database {uri} "
                            "does not exist (moved or deleted?); rebuild with recvec build --backend milvus")
    try:
        ix = MilvusIndex.open(uri, collection)
    except RecvecError as e:
        msg = str(e)
        if collection not in msg or uri not in msg:
            msg = f"{what}: {msg}"
        missing = msg.startswith("no Milvus collection")
        hint = "; rebuild the artifact with recvec build --backend milvus" if missing else ""
        raise ArtifactError(f"cannot open the index of artifact {src}: {msg}{hint}") from None
    try:
        _check_backend_index(ix, backend, manifest, vectors, what, verify)
    except BaseException:
        ix.close()
        raise
    return ix


def _check_backend_index(ix: Any, backend: dict, manifest: dict, vectors: np.ndarray, what: str,
                         verify: bool) -> None:
    n, dim = manifest["n_items"], manifest["dim"]
    rebuilt = "; was it rebuilt or replaced since this artifact was written? Rebuild the artifact"
    if ix.dim != dim:
        raise ArtifactError(f"dimension mismatch: {what} has dimension {ix.dim}, the manifest says {dim}{rebuilt}")
    if ix.ntotal != n:
        raise ArtifactError(f"{what} holds {ix.ntotal} vectors, the manifest says n_items={n}{rebuilt}")
    want_type = backend.get("index_type")
    if isinstance(want_type, str) and want_type and ix.index_type != want_type.upper():
        raise ArtifactError(f"{what} has a {ix.index_type} index, the manifest says {want_type}{rebuilt}")
    if not verify or ix.kind not in ("flat", "hnsw", "ivf"):
        return  # quantised indexes (SQ8, PQ) return approximate scores: nothing exact to compare
    # Spot check: a few rows searched for themselves must score exactly as the stored vectors say.
    rows = np.unique(np.linspace(0, n - 1, num=min(n, 3)).astype(np.int64))
    k = int(min(n, 5))
    got_rows, got_scores = ix.search(vectors[rows], k)
    q, v = vectors[rows].astype(np.float64), vectors[got_rows].astype(np.float64)
    want = np.einsum("qd,qkd->qk", q, v)
    scale = np.linalg.norm(q, axis=1, keepdims=True) * np.linalg.norm(v, axis=2)  # |q.v| <= |q||v|
    bad = np.abs(got_scores.astype(np.float64) - want) > 1e-4 * scale + 1e-6
    if bad.any():
        row = int(rows[np.argwhere(bad)[0][0]])
        raise ArtifactError(f"{what} does not hold this artifact's item vectors (search scores for row {row} "
                            f"disagree with item_vectors.npy){rebuilt}")


def _load_npy(data: bytes, name: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:  # object arrays (pickle) land here too
        raise ArtifactError(f"artifact file {name} is not a plain numeric .npy array: {e}") from None
    except (OSError, EOFError) as e:
        raise ArtifactError(f"artifact file {name} is not a readable .npy array: {e}") from None


def _parse_manifest(raw: bytes, where: str) -> dict:
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(m, dict):
        raise ArtifactError(f"{where} must hold a JSON object")
    v = m.get("format_version")
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ArtifactError(f"{where}: format_version must be a positive integer, got {shown(v)}")
    if v > FORMAT_VERSION:
        raise ArtifactError(f"{where} has format_version {v}, newer than the {FORMAT_VERSION} this recvec "
                            "reads: upgrade recvec to load it")

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        value = m.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ArtifactError(f"{where}: {shown(key)} is missing or not a {getattr(kind, '__name__', kind)}")
        return value

    for key in ("dim", "n_items"):
        if need(key, int) < 1:
            raise ArtifactError(f"{where}: {key} must be >= 1, got {m[key]}")
    if m.get("metric") != METRIC:
        raise ArtifactError(f"{where}: metric is {shown(m.get('metric'))}; recvec serves {shown(METRIC)} indexes only")
    model = need("model", dict)
    if not isinstance(model.get("kind"), str):
        raise ArtifactError(f"{where}: model.kind is missing")
    files = need("files", dict)
    for name, meta in files.items():
        _plain_name(name, "file name")
        if name == MANIFEST:
            raise ArtifactError(f"{where}: files must not list {MANIFEST} itself")
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) \
                or isinstance(meta.get("bytes"), bool) or not isinstance(meta.get("bytes"), int):
            raise ArtifactError(f"{where}: files[{shown(name)}] needs sha256 (str) and bytes (int)")
    backend = _parse_backend(m, where)
    for key in ("index_file", "item_ids_file", "catalog_file"):
        if key == "index_file" and backend is not None:
            if m.get(key) is not None:
                raise ArtifactError(f"{where}: an artifact served from {backend['kind']} has no index file; "
                                    f"index_file must be null, got {shown(m.get(key))}")
            continue
        name = _plain_name(need(key, str), key)
        if name not in files:
            raise ArtifactError(f"{where}: {key} {shown(name)} has no entry in files (no checksum)")
    for name, meta in need("arrays", dict).items():
        if not isinstance(name, str) or not _ARRAY_NAME.match(name):
            raise ArtifactError(f"{where}: array name {shown(name)} is not an identifier")
        if not isinstance(meta, dict) or not isinstance(meta.get("dtype"), str) \
                or not isinstance(meta.get("shape"), list):
            raise ArtifactError(f"{where}: arrays[{shown(name)}] needs dtype and shape")
        if meta.get("from_index"):
            if name != ITEM_VECTORS:
                raise ArtifactError(f"{where}: only {ITEM_VECTORS} can come from the index, not {shown(name)}")
            if backend is not None:
                raise ArtifactError(f"{where}: {ITEM_VECTORS} cannot come from a {backend['kind']} index; "
                                    "it must be stored as a file")
            continue
        fname = _plain_name(meta.get("file"), f"arrays[{shown(name)}].file")
        if fname not in files:
            raise ArtifactError(f"{where}: array file {shown(fname)} has no entry in files (no checksum)")
    if backend is not None and ITEM_VECTORS not in m["arrays"]:
        raise ArtifactError(f"{where}: an artifact served from {backend['kind']} must list {ITEM_VECTORS} in arrays")
    if backend is None:
        m.pop("backend", None)  # {"kind": "faiss"} is the same as no entry
    return m


def _parse_backend(m: dict, where: str) -> dict | None:
    """The manifest's ``backend`` entry, checked; None for FAISS (absent or {"kind": "faiss"})."""
    if "backend" not in m or m["backend"] is None:
        return None
    b = m["backend"]
    if not isinstance(b, dict):
        raise ArtifactError(f"{where}: backend must be an object, got {type(b).__name__}")
    kind = b.get("kind")
    if kind == "faiss":
        return None
    if kind != "milvus":
        raise ArtifactError(f"{where}: backend kind {shown(kind)} is unknown; this recvec serves {', '.join(BACKENDS)}")
    for key in ("uri", "collection"):
        if not isinstance(b.get(key), str) or not b[key].strip():
            raise ArtifactError(f"{where}: backend {key} is missing or not a string")
    from recvec.indexes.backends.milvus import check_collection_name

    try:
        check_collection_name(b["collection"])
    except RecvecError as e:
        raise ArtifactError(f"{where}: backend collection: {e}") from None
    return b
