"""Index artifacts: one directory (or ``s3://bucket/prefix``) holding everything a query needs.

Layout (format_version 1)::

    manifest.json      written last, read first (below)
    index.faiss        the FAISS index (inner product; ids are rows 0..n-1), for FAISS artifacts
    item_ids.npy       external item id of each row: int64, or numpy unicode ('<U…', no pickle)
                       for string ids
    <name>.npy         each extra array (e.g. ALS item factors, embeddings, gram matrices);
                       ``item_vectors`` is not written when the index reproduces it bit-exactly
                       (flat, HNSW-flat): it is reconstructed from the index on load, so a flat
                       artifact stores its vectors once
    catalog.json.gz    display metadata aligned with item_ids (e.g. {"titles": [...], "genres": [...]}),
                       gzip-compressed JSON (titles and genres compress well)

``manifest.json`` is described in ``manifest.py``. The index is whatever the backend that built it
(``recvec.indexes.backends``) stores: FAISS writes ``index.faiss``; a backend that serves the index
elsewhere (a Milvus collection) writes no index file, records its entry as the manifest's
``backend``, and the artifact always stores ``item_vectors.npy``. Loading checks every file, then
asks that backend to open the index (a served one is checked against the stored vectors) and checks
its row count and dimension against the manifest.

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

import gzip
import hashlib
import json
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recvec.engine import storage
from recvec.errors import ArtifactError, RecvecError, shorten_path, shown
from recvec.indexes import backends
from recvec.indexes.manifest import (
    CATALOG_FILE,
    FORMAT_VERSION,
    ITEM_IDS_FILE,
    ITEM_VECTORS,
    MANIFEST,
    METRIC,
    catalog_bytes,
    check_arrays,
    check_caller_manifest,
    check_catalog_alignment,
    check_item_ids,
    load_npy,
    npy_bytes,
    parse_backend_entry,
    parse_manifest,
    tagged,
    untagged,
)
from recvec.indexes.publish import (
    JOURNAL_PREFIX,
    check_replaceable,
    os_reason,
    remove_stale_s3,
    s3_prefix_state,
)

#: Loads that meet files not matching the manifest they read start again this often if it changed.
_LOAD_ATTEMPTS = 3


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
        """Vector dimension, from the manifest."""
        return int(self.manifest["dim"])

    @property
    def n_items(self) -> int:
        """Number of items (index rows), from the manifest."""
        return int(self.manifest["n_items"])

    @property
    def model_kind(self) -> str:
        """The model kind the manifest records (e.g. "als", "text", "hybrid")."""
        return str(self.manifest["model"]["kind"])

    @property
    def item_vectors(self) -> np.ndarray | None:
        """(n_items, dim) float32 item vectors (stored, or reconstructed from the index), or None when absent."""
        return self.arrays.get(ITEM_VECTORS)

    @property
    def backend(self) -> str:
        """The registry name of the backend serving the index ("faiss": in process, index.faiss)."""
        return str(self.index.backend)

    def close(self) -> None:
        """Close the index's connection (a Milvus client); in-process indexes need nothing."""
        self.index.close()


# ------------------------------------------------------------------------------------- saving


def save_artifact(dest: str | Path, *, index: Any, item_ids: np.ndarray, arrays: dict[str, np.ndarray],
                  catalog: dict, manifest: dict, endpoint_url: str | None = None) -> str:
    """Write an artifact to a local directory or ``s3://bucket/prefix`` atomically; returns dest.

    ``index`` is a search backend's index (``backends.base.SearchBackend``: an ItemIndex, a
    MilvusIndex, ...) or a raw FAISS index; its backend decides what the artifact stores for it (an
    index file, or a ``backend`` manifest entry pointing at where it is served, in which case
    ``arrays`` must hold ``item_vectors``). ``item_ids`` the external id of each row; ``arrays`` extra
    named numeric arrays (``item_vectors`` must be (n, dim)); ``catalog`` JSON display data whose list
    values are aligned with item_ids; ``manifest`` the caller's part of the manifest (must hold
    ``model: {"kind", "params"}``). Raises ArtifactError (nothing replaced) for bad parts, a
    destination that is not recvec's to replace, or an OS error.
    """
    ix = index if isinstance(getattr(index, "backend", None), str) else backends.get(backends.DEFAULT).adopt(index)
    backend = backends.of(ix)
    ids = check_item_ids(item_ids, ix.ntotal)
    arrs = check_arrays(arrays, ix.ntotal, ix.dim)
    try:
        entry = backend.manifest_entry(ix, dest)
    except RecvecError as e:
        raise ArtifactError(str(e)) from None
    if entry is not None and ITEM_VECTORS not in arrs:
        raise ArtifactError(f"an artifact served from {backend.name} must store {shown(ITEM_VECTORS)} "
                            "(query-time user vectors are built from them)")
    catalog = catalog_bytes(catalog, ix.ntotal)
    head = check_caller_manifest(manifest)
    if storage.is_s3(str(dest)):
        _save_s3(str(dest), ix, backend, entry, ids, arrs, catalog, head, endpoint_url)
        return str(dest)
    try:
        final = storage.output_dir(dest, what="artifact directory")
    except storage.StorageError as e:
        raise ArtifactError(str(e)) from None
    check_replaceable(final)
    tmp = None
    try:
        tmp = storage.sibling_tmp_dir(final)
        _write_dir(tmp, ix, backend, entry, ids, arrs, catalog, head, durable=True)
        storage.publish_local_dir(tmp, final)
    except OSError as e:
        raise ArtifactError(f"cannot write the artifact {shorten_path(final)}: {os_reason(e, final)}; "
                            "nothing was replaced") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(final)


def _save_s3(dest: str, ix: Any, backend: Any, entry: dict | None, ids: np.ndarray, arrs: dict,
             catalog: bytes, head: dict, endpoint_url: str | None) -> None:
    """Upload without overwriting anything the live manifest points at, the manifest last; then delete
    what the previous version and killed uploads left (see the module docstring).

    Before any file goes up, a journal (``.recvec-upload.<tag>.json``: the names about to be written
    and the live version's names that the new manifest replaces) is written, so every object recvec
    puts under the prefix is accounted for by a manifest or a journal even when a build is killed.
    A prefix holding any object that neither accounts for is not recvec's to replace: refused before
    anything is written."""
    client = storage.s3_client(endpoint_url)
    live, journals, recorded = s3_prefix_state(dest, client)
    tag = uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory(prefix="recvec-artifact-") as tmp:
        names = _write_dir(Path(tmp), ix, backend, entry, ids, arrs, catalog, head,
                           tag=None if live is None else tag)
        journal = f"{JOURNAL_PREFIX}{tag}.json"
        body = json.dumps({"writes": sorted(names), "replaces": sorted(live or ())}).encode("utf-8")
        storage.put_bytes(f"{dest.rstrip('/')}/{journal}", body, client=client)
        storage.upload_dir(tmp, dest, endpoint_url=endpoint_url, last=MANIFEST, client=client)
    keep = {*names, MANIFEST}
    remove_stale_s3(dest, client, stale=(set(live or ()) | recorded) - keep, journals={*journals, journal})


def _write_dir(root: Path, ix: Any, backend: Any, entry: dict | None, ids: np.ndarray,
               arrays: dict[str, np.ndarray], catalog: bytes, head: dict, *, tag: str | None = None,
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
        name = tagged(name, tag)
        write(root / name, data)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        return name

    index_file = None
    for name, data in backend.files(ix).items():  # FAISS: index.faiss; a served index: none
        index_file = put(name, data)
    item_ids_file = put(ITEM_IDS_FILE, npy_bytes(ids))
    array_meta = {}
    for name, a in arrays.items():
        meta = {"dtype": a.dtype.str, "shape": list(a.shape)}
        if name == ITEM_VECTORS and entry is None and backend.reproduces(ix, a):
            meta.update(file=None, from_index=True)
        else:
            meta.update(file=put(f"{name}.npy", npy_bytes(a)), from_index=False)
        array_meta[name] = meta
    catalog_file = put(CATALOG_FILE, catalog)
    manifest = {"format_version": FORMAT_VERSION, **head, "dim": ix.dim, "metric": METRIC,
                "n_items": ix.ntotal, "index_file": index_file,
                **({"backend": entry} if entry is not None else {}),
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


def read_backend_entry(src: str | Path, *, endpoint_url: str | None = None) -> dict | None:
    """The ``backend`` entry of the artifact's manifest at ``src`` (where a served index lives), or
    None: a FAISS artifact, or no readable artifact there. Reads the manifest only; raises nothing.
    ``build_artifact`` asks it before publishing over ``src``, to retire what the old one pointed at."""
    try:
        source = _Source(src, endpoint_url)
        raw = _read_manifest(source)
        return parse_backend_entry(parse_manifest(raw, source.where(MANIFEST)), source.where(MANIFEST))
    except (RecvecError, OSError, ValueError):
        return None


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
    manifest = parse_manifest(raw, source.where(MANIFEST))
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
    entry = manifest.get("backend")
    backend = backends.get(entry["kind"] if entry else None)
    index_name = manifest["index_file"]
    # An index stored in the artifact opens first (item_vectors may come from it); one served
    # elsewhere opens once every file has been checked, and is checked against the stored vectors.
    ix = _open_index(backend, entry, index_name, blobs, None, n, dim, verify, source.src) if index_name else None

    ids = load_npy(blobs[manifest["item_ids_file"]], manifest["item_ids_file"])
    if (ids.dtype != np.int64 and ids.dtype.kind != "U") or ids.shape != (n,):
        raise ArtifactError(f"{manifest['item_ids_file']} must be int64 or unicode strings of shape ({n},), "
                            f"got {ids.dtype} {ids.shape}")

    arrays: dict[str, np.ndarray] = {}
    for name, meta in manifest["arrays"].items():
        if meta.get("from_index"):
            if ix is None:
                raise ArtifactError(f"{source.where(MANIFEST)}: array {shown(name)} comes from an index this "
                                    "artifact does not store")
            a = ix.vectors()
        else:
            a = load_npy(blobs[meta["file"]], meta["file"])
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
    check_catalog_alignment(catalog, n, f"artifact file {catalog_name}:")
    if ix is None:  # every file checked: now connect
        ix = _open_index(backend, entry, None, blobs, arrays.get(ITEM_VECTORS), n, dim, verify, source.src)
    return Artifact(manifest=manifest, index=ix, item_ids=ids, arrays=arrays, catalog=catalog)


def _open_index(backend: Any, entry: dict | None, index_name: str | None, blobs: dict[str, bytes],
                vectors: np.ndarray | None, n: int, dim: int, verify: bool, src: str) -> Any:
    """The artifact's index, opened by its backend and checked against the manifest's n_items and dim."""
    files = {untagged(index_name): blobs[index_name]} if index_name else {}
    try:
        ix = backend.open(entry, files, vectors, verify=verify)
    except RecvecError as e:
        if index_name:
            raise ArtifactError(f"artifact file {index_name} is not a usable {backend.label} index: {e}") from None
        raise ArtifactError(f"cannot open the index of artifact {src}: {e}") from None
    what = index_name or f"the {backend.label} index ({entry.get('collection')} at {entry.get('uri')})"
    rebuilt = "" if index_name else "; was it rebuilt or replaced since this artifact was written? Rebuild the artifact"
    problem = (f"dimension mismatch: {what} has dimension {ix.dim}, the manifest says {dim}" if ix.dim != dim else
               f"{what} holds {ix.ntotal} vectors, the manifest says n_items={n}" if ix.ntotal != n else None)
    if problem:
        ix.close()
        raise ArtifactError(problem + rebuilt)
    return ix
