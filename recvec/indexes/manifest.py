"""The artifact manifest and the parts it lists: format constants, checks of what a caller saves
(item ids, arrays, catalogue, the caller's manifest keys) and the parsing of a manifest read back
(every name a plain file name, every file with a size and sha256, known backend, format version).
Pure: no file or network I/O here (``artifact.py`` does that).

``manifest.json`` (format_version 1)::

    format_version  int (this code writes and reads 1; newer is refused)
    created         ISO-8601 UTC time
    model           {"kind": ..., "params": {...}} from the caller
    encoder, pooling, normalized, index, build_time_s, data_fingerprint, ...   from the caller
    dim, metric ("inner_product"), n_items
    index_file      the index's file (FAISS: index.faiss), or null when it lives elsewhere
    backend         absent for FAISS; else the backend's entry: {"kind": NAME, ...} (e.g. a Milvus
                    collection's uri, collection, index type; never a credential)
    similar         with --similar-index: the cosine index over the normalised vectors (the array
                    ``similar_index``): {"spec", "file", "build_time_s", its description}
    item_ids_file, catalog_file
    arrays          {name: {"file": "name.npy" | null, "from_index": bool, "dtype", "shape"}}
    files           {name: {"sha256", "bytes"}} for every file but the manifest
"""

from __future__ import annotations

import datetime as _dt
import gzip
import io
import json
import re
from typing import Any

import numpy as np

from recvec.errors import ArtifactError, RecvecError, shown
from recvec.indexes import backends

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ITEM_IDS_FILE = "item_ids.npy"
CATALOG_FILE = "catalog.json.gz"
METRIC = "inner_product"
ITEM_VECTORS = "item_vectors"

#: Keys save_artifact computes; a caller's manifest may not set them.
RESERVED_KEYS = frozenset({"format_version", "dim", "metric", "n_items", "index_file", "item_ids_file",
                           "catalog_file", "arrays", "files", "backend"})
_ARRAY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")
_TAG = re.compile(r"\.[0-9a-f]{12}(?=\.)")


def plain_name(name: Any, what: str) -> str:
    """``name`` unchanged if it is a plain file name (no path separators, no '..', at most 200
    characters), else ArtifactError naming ``what``."""
    if not isinstance(name, str) or not _PLAIN_NAME.match(name) or name in (".", "..") or ".." in name:
        raise ArtifactError(f"manifest {what} {shown(name)} is not a plain file name (no paths, no '..')")
    return name



def tagged(name: str, tag: str | None) -> str:
    """'index.faiss' -> 'index.<tag>.faiss' (unchanged without a tag)."""
    if tag is None:
        return name
    stem, _, ext = name.partition(".")
    return f"{stem}.{tag}.{ext}"


def untagged(name: str) -> str:
    """'index.<tag>.faiss' -> 'index.faiss' (the name a backend knows its file by)."""
    return _TAG.sub("", name, count=1)


def check_item_ids(item_ids: Any, n: int) -> np.ndarray:
    """``item_ids`` as (n,) int64 (integer ids) or numpy unicode (string ids: a 'U' array, or a
    sequence of str), one unique id per index row; else ArtifactError. String ids are saved as a
    plain unicode .npy (no pickle); integer ids stay int64, as every artifact before them."""
    ids = np.asarray(item_ids)
    if ids.ndim != 1 or ids.shape[0] != n:
        raise ArtifactError(f"item_ids must be a 1-d array of {n} ids (one per index row), got shape {ids.shape}")
    if n and ids.dtype.kind == "O" and all(isinstance(x, str) for x in ids.tolist()):
        ids = ids.astype(str)
    if n and ids.dtype.kind == "U":
        if any(not x for x in ids.tolist()):
            raise ArtifactError("item_ids must not hold empty strings")
    elif n and not np.issubdtype(ids.dtype, np.integer):
        raise ArtifactError(f"item_ids must be integers or strings, got {ids.dtype}")
    else:
        ids = ids.astype(np.int64)
    if np.unique(ids).size != n:
        raise ArtifactError("item_ids must be unique")
    return ids


def check_arrays(arrays: dict[str, Any], n: int, dim: int) -> dict[str, np.ndarray]:
    """The caller's extra arrays as contiguous numpy arrays; ArtifactError for a non-dict, a name that
    is not an identifier (or is item_ids), a non-numeric array, or an ``item_vectors`` that is not
    float32 (n, dim)."""
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


def catalog_bytes(catalog: dict, n: int) -> bytes:
    """The catalogue as gzip-compressed UTF-8 JSON (mtime 0: the same catalogue gives the same bytes);
    ArtifactError for a non-dict, a list that is not n long, or values JSON cannot hold."""
    if not isinstance(catalog, dict):
        raise ArtifactError(f"catalog must be a dict (e.g. titles/genres lists), got {type(catalog).__name__}")
    check_catalog_alignment(catalog, n, "catalog")
    try:
        text = json.dumps(catalog, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"catalog is not JSON-serialisable: {e}") from None
    return gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)


def check_catalog_alignment(catalog: dict, n: int, where: str) -> None:
    """ArtifactError naming ``where`` if a list or tuple entry of ``catalog`` does not hold exactly n values."""
    for key, value in catalog.items():
        if isinstance(value, (list, tuple)) and len(value) != n:
            raise ArtifactError(f"{where} entry {shown(key)} has {len(value)} values but there are {n} items")


def check_caller_manifest(manifest: dict) -> dict:
    """The caller's manifest keys, with ``created`` (ISO-8601 UTC) added when absent; ArtifactError for
    a non-dict, a key save_artifact writes itself, a missing or malformed ``model``, or values JSON
    cannot hold."""
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


def npy_bytes(a: np.ndarray) -> bytes:
    """``a`` as the bytes of a .npy file (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def load_npy(data: bytes, name: str) -> np.ndarray:
    """The array in .npy bytes ``data`` (never unpickled); ArtifactError naming file ``name`` if it is
    unreadable or not a plain numeric array."""
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:  # object arrays (pickle) land here too
        raise ArtifactError(f"artifact file {name} is not a plain numeric .npy array: {e}") from None
    except (OSError, EOFError) as e:
        raise ArtifactError(f"artifact file {name} is not a readable .npy array: {e}") from None


def parse_manifest(raw: bytes, where: str) -> dict:
    """The manifest JSON in ``raw``, checked (fields as in the module doc) and with a default FAISS
    ``backend`` entry dropped; ArtifactError naming ``where`` for anything malformed, a newer
    format_version or an unknown backend."""
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
        plain_name(name, "file name")
        if name == MANIFEST:
            raise ArtifactError(f"{where}: files must not list {MANIFEST} itself")
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) \
                or isinstance(meta.get("bytes"), bool) or not isinstance(meta.get("bytes"), int):
            raise ArtifactError(f"{where}: files[{shown(name)}] needs sha256 (str) and bytes (int)")
    backend = parse_backend_entry(m, where)
    for key in ("index_file", "item_ids_file", "catalog_file"):
        if key == "index_file" and backend is not None:
            if m.get(key) is not None:
                raise ArtifactError(f"{where}: an artifact served from {backend['kind']} has no index file; "
                                    f"index_file must be null, got {shown(m.get(key))}")
            continue
        name = plain_name(need(key, str), key)
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
        fname = plain_name(meta.get("file"), f"arrays[{shown(name)}].file")
        if fname not in files:
            raise ArtifactError(f"{where}: array file {shown(fname)} has no entry in files (no checksum)")
    if backend is not None and ITEM_VECTORS not in m["arrays"]:
        raise ArtifactError(f"{where}: an artifact served from {backend['kind']} must list {ITEM_VECTORS} in arrays")
    if backend is None:
        m.pop("backend", None)  # {"kind": "faiss"} is the same as no entry
    return m



def parse_backend_entry(m: dict, where: str) -> dict | None:
    """The manifest's ``backend`` entry, checked by its backend; None for the default (FAISS: absent or
    {"kind": "faiss"}), whose index is a file of the artifact."""
    if "backend" not in m or m["backend"] is None:
        return None
    b = m["backend"]
    if not isinstance(b, dict):
        raise ArtifactError(f"{where}: backend must be an object, got {type(b).__name__}")
    kind = b.get("kind")
    if kind == backends.DEFAULT:
        return None
    if kind not in backends.NAMES:
        raise ArtifactError(f"{where}: backend kind {shown(kind)} is unknown; this recvec serves {', '.join(backends.NAMES)}")
    try:
        return backends.get(kind).check_entry(b, where)
    except RecvecError as e:
        raise ArtifactError(str(e)) from None
