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

Loading reads the manifest first, refuses newer format versions, file names that are not plain
names, missing/truncated/altered files (size and sha256), dimension/metric/count mismatches,
and never unpickles anything (``np.load(allow_pickle=False)``, JSON, FAISS's own format).

Saving is atomic: locally everything is written into a temp dir beside the destination and
swapped in with one rename; on S3 the manifest is uploaded last, so a reader (which reads the
manifest first and checks every file against it) never loads a half-written artifact.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import io
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recvec.engine import storage
from recvec.errors import ArtifactError, RecvecError
from recvec.indexes.search import ItemIndex

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX_FILE = "index.faiss"
ITEM_IDS_FILE = "item_ids.npy"
CATALOG_FILE = "catalog.json.gz"
METRIC = "inner_product"
ITEM_VECTORS = "item_vectors"

#: Keys save_artifact computes; a caller's manifest may not set them.
RESERVED_KEYS = frozenset({"format_version", "dim", "metric", "n_items", "index_file", "item_ids_file",
                           "catalog_file", "arrays", "files"})
_ARRAY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")


@dataclass(frozen=True)
class Artifact:
    """A loaded artifact: manifest, index, item ids (row -> external id), arrays, catalog."""

    manifest: dict
    index: ItemIndex
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


# ------------------------------------------------------------------------------------- saving


def save_artifact(dest: str | Path, *, index: Any, item_ids: np.ndarray, arrays: dict[str, np.ndarray],
                  catalog: dict, manifest: dict, endpoint_url: str | None = None) -> str:
    """Write an artifact to a local directory or ``s3://bucket/prefix`` atomically; returns dest.

    ``index`` is an ItemIndex or a FAISS index; ``item_ids`` the external id of each row;
    ``arrays`` extra named numeric arrays (``item_vectors`` must be (n, dim)); ``catalog`` JSON
    display data whose list values are aligned with item_ids; ``manifest`` the caller's part of
    the manifest (must hold ``model: {"kind", "params"}``).
    """
    ix = index if isinstance(index, ItemIndex) else ItemIndex(index)
    ids = _check_item_ids(item_ids, ix.ntotal)
    arrs = _check_arrays(arrays, ix.ntotal, ix.dim)
    catalog_bytes = _catalog_bytes(catalog, ix.ntotal)
    head = _check_caller_manifest(manifest)
    if storage.is_s3(str(dest)):
        with tempfile.TemporaryDirectory(prefix="recvec-artifact-") as tmp:
            _write_dir(Path(tmp), ix, ids, arrs, catalog_bytes, head)
            storage.upload_dir(tmp, str(dest), endpoint_url=endpoint_url, last=MANIFEST)
        return str(dest)
    final = Path(dest)
    if final.exists() and not final.is_dir():
        raise ArtifactError(f"cannot write an artifact to {final}: it exists and is not a directory")
    tmp = storage.sibling_tmp_dir(final)
    try:
        _write_dir(tmp, ix, ids, arrs, catalog_bytes, head)
        storage.publish_local_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(final)


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
            raise ArtifactError(f"array name {name!r} must be an identifier (letters, digits, _) other than item_ids")
        a = np.asarray(value)
        if a.dtype.kind not in "biuf":
            raise ArtifactError(f"array {name!r} must be numeric (bool/int/float), got {a.dtype}")
        if name == ITEM_VECTORS and (a.ndim != 2 or a.shape != (n, dim) or a.dtype != np.float32):
            raise ArtifactError(f"array {ITEM_VECTORS!r} must be float32 of shape ({n}, {dim}), "
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
            raise ArtifactError(f"{where} entry {key!r} has {len(value)} values but there are {n} items")


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
        return bool(np.array_equal(ix.faiss_index.reconstruct_n(0, ix.ntotal), vectors))
    except RuntimeError:
        return False


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _write_dir(root: Path, ix: ItemIndex, ids: np.ndarray, arrays: dict[str, np.ndarray],
               catalog_bytes: bytes, head: dict) -> None:
    files: dict[str, dict] = {}

    def put(name: str, data: bytes) -> None:
        (root / name).write_bytes(data)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    put(INDEX_FILE, ix.to_bytes())
    put(ITEM_IDS_FILE, _npy_bytes(ids))
    array_meta = {}
    for name, a in arrays.items():
        meta = {"dtype": a.dtype.str, "shape": list(a.shape)}
        if name == ITEM_VECTORS and _reproduces(ix, a):
            meta.update(file=None, from_index=True)
        else:
            put(f"{name}.npy", _npy_bytes(a))
            meta.update(file=f"{name}.npy", from_index=False)
        array_meta[name] = meta
    put(CATALOG_FILE, catalog_bytes)
    manifest = {"format_version": FORMAT_VERSION, **head, "dim": ix.dim, "metric": METRIC,
                "n_items": ix.ntotal, "index_file": INDEX_FILE, "item_ids_file": ITEM_IDS_FILE,
                "catalog_file": CATALOG_FILE, "arrays": array_meta, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------- loading


class _Source:
    """Reads named files of a local directory or an S3 prefix."""

    def __init__(self, src: str | Path, endpoint_url: str | None):
        self.src = str(src)
        self.s3 = storage.is_s3(self.src)
        self.endpoint_url = endpoint_url
        self._client = None

    def where(self, name: str) -> str:
        return f"{self.src.rstrip('/')}/{name}" if self.s3 else str(Path(self.src) / name)

    def read(self, name: str) -> bytes:
        if not self.s3:
            try:
                return (Path(self.src) / name).read_bytes()
            except FileNotFoundError:
                raise ArtifactError(f"artifact file {name} is missing: {self.where(name)}") from None
            except OSError as e:
                raise ArtifactError(f"cannot read artifact file {self.where(name)}: {e.strerror}") from None
        if self._client is None:
            self._client = storage.s3_client(self.endpoint_url)
        try:
            return storage.read_bytes(self.where(name), client=self._client)
        except storage.StorageError as e:
            if e.code == "NoSuchKey":
                raise ArtifactError(f"artifact file {name} is missing: {self.where(name)}") from None
            raise


def _plain_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _PLAIN_NAME.match(name) or name in (".", "..") or ".." in name:
        raise ArtifactError(f"manifest {what} {name!r} is not a plain file name (no paths, no '..')")
    return name


def load_artifact(src: str | Path, *, endpoint_url: str | None = None, verify: bool = True) -> Artifact:
    """Load and check an artifact from a local directory or ``s3://bucket/prefix``.

    ``verify=False`` skips the sha256 checksums (sizes, dimensions and the rest are still checked).
    """
    source = _Source(src, endpoint_url)
    if not source.s3 and not Path(source.src).is_dir():
        raise ArtifactError(f"no artifact at {source.src}: not a directory")
    try:
        raw = source.read(MANIFEST)
    except ArtifactError:
        raise ArtifactError(f"no artifact at {source.src}: {MANIFEST} not found") from None
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
            a = ix.faiss_index.reconstruct_n(0, ix.ntotal)
        else:
            a = _load_npy(blobs[meta["file"]], meta["file"])
        if a.dtype.str != meta["dtype"] or list(a.shape) != list(meta["shape"]):
            raise ArtifactError(f"array {name!r} is {a.dtype.str} {list(a.shape)}, the manifest says "
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
    return Artifact(manifest=manifest, index=ix, item_ids=ids, arrays=arrays, catalog=catalog)


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
        raise ArtifactError(f"{where}: format_version must be a positive integer, got {v!r}")
    if v > FORMAT_VERSION:
        raise ArtifactError(f"{where} has format_version {v}, newer than the {FORMAT_VERSION} this recvec "
                            "reads: upgrade recvec to load it")

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        value = m.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ArtifactError(f"{where}: {key!r} is missing or not a {getattr(kind, '__name__', kind)}")
        return value

    for key in ("dim", "n_items"):
        if need(key, int) < 1:
            raise ArtifactError(f"{where}: {key} must be >= 1, got {m[key]}")
    if m.get("metric") != METRIC:
        raise ArtifactError(f"{where}: metric is {m.get('metric')!r}; recvec serves {METRIC!r} indexes only")
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
            raise ArtifactError(f"{where}: files[{name!r}] needs sha256 (str) and bytes (int)")
    for key in ("index_file", "item_ids_file", "catalog_file"):
        name = _plain_name(need(key, str), key)
        if name not in files:
            raise ArtifactError(f"{where}: {key} {name!r} has no entry in files (no checksum)")
    for name, meta in need("arrays", dict).items():
        if not isinstance(name, str) or not _ARRAY_NAME.match(name):
            raise ArtifactError(f"{where}: array name {name!r} is not an identifier")
        if not isinstance(meta, dict) or not isinstance(meta.get("dtype"), str) \
                or not isinstance(meta.get("shape"), list):
            raise ArtifactError(f"{where}: arrays[{name!r}] needs dtype and shape")
        if meta.get("from_index"):
            if name != ITEM_VECTORS:
                raise ArtifactError(f"{where}: only {ITEM_VECTORS} can come from the index, not {name!r}")
            continue
        fname = _plain_name(meta.get("file"), f"arrays[{name!r}].file")
        if fname not in files:
            raise ArtifactError(f"{where}: array file {fname!r} has no entry in files (no checksum)")
    return m
