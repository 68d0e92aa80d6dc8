"""The cosine index ``similar`` answers from, built with an artifact over un-normalised item vectors.

An index over ALS factors ranks by inner product, which is what users' queries need but not what
item-to-item similarity means (cosine). Without help, ``Recommender.similar`` scores every item
exactly against a normalised copy of the table: O(n·d) a call. With ``recvec build --similar-index
SPEC`` the artifact also holds a FAISS index of kind SPEC over the L2-normalised vectors (inner
product of unit vectors is cosine, and cosine graphs have no hub problem: every node stays
reachable), stored as the uint8 array ``similar_index`` in FAISS's own format; its manifest entry is
``similar`` ({"spec", "file", "build_time_s", and what the index describes, e.g. reachable_share}).
An index over normalised vectors (text) answers ``similar`` itself and gets none.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from recvec.engine.models.text import l2_normalize
from recvec.errors import ArtifactError, RecvecError, shown
from recvec.indexes import backends
from recvec.indexes.spec import IndexSpec

ARRAY = "similar_index"
BACKEND = "faiss"  # the similar index always runs in process, whatever serves the main index


def build_similar(vectors: np.ndarray, spec: IndexSpec, *, seed: int = 0) -> tuple[np.ndarray, dict]:
    """The cosine index of kind ``spec`` over ``vectors`` (n, d) float32: ``(bytes as a 1-d uint8 array,
    its manifest entry)``. RecvecError if FAISS cannot build ``spec`` for these vectors."""
    be = backends.get(BACKEND)
    t0 = time.perf_counter()
    index = be.build(l2_normalize(vectors), spec, seed=seed)
    seconds = time.perf_counter() - t0
    (name, data), = be.files(index).items()
    entry = {"spec": str(spec), "file": name, "build_time_s": seconds, **index.describe()}
    return np.frombuffer(data, dtype=np.uint8).copy(), entry


def open_similar(entry: Any, raw: Any, n_items: int, dim: int) -> Any:
    """The SearchBackend stored by :func:`build_similar`; ArtifactError when the manifest entry, the
    array or the index it holds does not fit the artifact (``n_items`` rows of ``dim``)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise ArtifactError(f"manifest.json similar must be an object with a file name, got {shown(entry)}")
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ArtifactError(f"array {ARRAY} must be a 1-d uint8 array of FAISS index bytes")
    try:
        index = backends.get(BACKEND).open(None, {entry["file"]: raw.tobytes()}, None)
    except RecvecError as e:
        raise ArtifactError(f"array {ARRAY}: {e}") from None
    if index.ntotal != n_items or index.dim != dim:
        raise ArtifactError(f"array {ARRAY} holds {index.ntotal} x {index.dim} vectors, the artifact {n_items} x {dim}")
    return index
