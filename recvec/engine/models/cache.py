"""On-disk cache of encoded item embeddings.

One ``<key>.npz`` per (encoder, pooling, max_length, texts): arrays ``ids`` (int64, or numpy
unicode for string item ids), ``vectors``
(float32, L2-normalised rows) and ``meta`` (a JSON string, stored as a numpy unicode scalar).
No pickle anywhere: files are read with ``np.load(allow_pickle=False)``. Files are written to a
temporary name in the same directory and renamed into place, so a reader never sees half a file.

The key is the SHA-256 of the encoder's identity (``name``, ``revision``, ``pooling``,
``max_length``) and every text, length-prefixed. The ids are stored alongside and checked on load.
A cache file that is unreadable or disagrees with the request (ids, shape) is reported with a
warning and rebuilt; a cache directory that cannot be written is reported with a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from recvec.errors import RecvecError

if TYPE_CHECKING:  # pragma: no cover
    from recvec.engine.models.text import Embedder

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$RECVEC_CACHE/embeddings`` if set, else ``$XDG_CACHE_HOME`` or ``~/.cache`` + ``/recvec/embeddings``."""
    root = os.environ.get("RECVEC_CACHE")
    if root:
        return Path(root).expanduser() / "embeddings"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "recvec" / "embeddings"


def _identity(embedder: "Embedder") -> dict:
    return {
        "format": CACHE_FORMAT,
        "name": str(embedder.name),
        "revision": str(getattr(embedder, "revision", "")),
        "pooling": str(embedder.pooling),
        "max_length": getattr(embedder, "max_length", None),
    }


def cache_key(embedder: "Embedder", texts: Sequence[str]) -> str:
    """SHA-256 hex digest of the encoder identity and the texts (order matters)."""
    h = hashlib.sha256()
    h.update(json.dumps(_identity(embedder), sort_keys=True).encode("utf-8"))
    h.update(len(texts).to_bytes(8, "little"))
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _read(path: Path, ids: np.ndarray, dim: int | None) -> np.ndarray | None:
    """Vectors from ``path`` when it matches ``ids``; None (with a warning) when it does not."""
    try:
        with np.load(path, allow_pickle=False) as z:
            cached_ids = z["ids"]
            vectors = z["vectors"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(f"embedding cache {path} is unreadable ({exc}); re-encoding", stacklevel=3)
        return None
    problem = None
    if not np.array_equal(cached_ids, ids):
        problem = "its movie ids differ from the requested ones"
    elif vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[0] != ids.shape[0]:
        problem = f"its vectors have shape {vectors.shape} and dtype {vectors.dtype}"
    elif dim is not None and vectors.shape[1] != dim:
        problem = f"its vectors have {vectors.shape[1]} dims, the encoder {dim}"
    if problem:
        warnings.warn(f"embedding cache {path}: {problem}; re-encoding", stacklevel=3)
        return None
    return vectors


def _write_atomic(path: Path, ids: np.ndarray, vectors: np.ndarray, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, ids=ids, vectors=vectors, meta=np.array(json.dumps(meta, sort_keys=True)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def encode_cached(
    embedder: "Embedder",
    ids: np.ndarray,
    texts: Sequence[str],
    cache_dir: Path | str | None = None,
    *,
    progress: bool = False,
    batch_size: int = 64,
    encode=None,
) -> np.ndarray:
    """``embedder.encode(texts)``, read from / written to ``cache_dir`` (default: :func:`default_cache_dir`).

    ``ids[i]`` is the item id (int or str) of ``texts[i]``; they are stored with the vectors and checked when
    the file is read back. Returns float32 ``(len(texts), dim)``. ``encode``: a function texts -> vectors
    that computes the same embedding elsewhere (an execution engine's, e.g. Spark's); default
    ``embedder.encode``.
    """
    ids_arr = np.asarray(ids)
    if ids_arr.ndim != 1 or (ids_arr.size and not (np.issubdtype(ids_arr.dtype, np.integer)
                                                   or ids_arr.dtype.kind == "U")):
        raise RecvecError(f"encode_cached: ids must be a 1-d integer or string array, got {ids_arr.dtype} "
                          f"{ids_arr.shape}")
    if ids_arr.dtype.kind != "U":
        ids_arr = ids_arr.astype(np.int64, copy=False)
    texts = list(texts)
    if len(texts) != ids_arr.shape[0]:
        raise RecvecError(f"encode_cached: {ids_arr.shape[0]} ids but {len(texts)} texts")
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = directory / f"{cache_key(embedder, texts)}.npz"
    dim = getattr(embedder, "dim", None)
    if path.is_file():
        vectors = _read(path, ids_arr, dim)
        if vectors is not None:
            return vectors
    vectors = np.ascontiguousarray(
        embedder.encode(texts, batch_size=batch_size, progress=progress) if encode is None else encode(texts),
        dtype=np.float32,
    )
    meta = {**_identity(embedder), "n": len(texts), "dim": int(vectors.shape[1]) if vectors.ndim == 2 else None}
    try:
        _write_atomic(path, ids_arr, vectors, meta)
    except OSError as exc:  # an unwritable cache must not throw away the encoding work
        warnings.warn(f"could not write embedding cache {path}: {exc}", stacklevel=2)
    return vectors
