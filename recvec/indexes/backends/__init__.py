"""Where item vectors are served from: the in-process FAISS ``ItemIndex`` (the default) or Milvus.

Every backend answers the same search contract, so query and benchmark code never asks which one
it holds::

    rows, scores = index.search(queries, k, exclude=None, ef_search=None, nprobe=None)

``queries`` is (n, d) float32; ``rows`` (n, k) int64 are catalogue row numbers 0..ntotal-1 (external
ids are mapped elsewhere), ``scores`` (n, k) float32 inner products in rank order. ``exclude[i]``
holds the row numbers query i must never get back; a backend still returns k rows (no -1 padding)
while k <= ntotal - excluded. ``ef_search``/``nprobe`` are per-call HNSW/IVF knobs.

Backends:

- ``recvec.indexes.search.ItemIndex``: FAISS in process, persisted as a file in the artifact.
- ``recvec.indexes.backends.milvus.MilvusIndex``: a Milvus collection, either Milvus Lite (a local
  ``FILE.db``, in process) or a Milvus standalone/distributed server (``http://HOST:19530``).
  Persisted by the server; the artifact stores ``MilvusIndex.describe()`` and reopens it with
  ``MilvusIndex.open(uri, collection)``.

Nothing here imports FAISS or pymilvus at module level (the CLI imports this at startup).
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

BACKENDS = ("faiss", "milvus")


@runtime_checkable
class SearchBackend(Protocol):
    """What the query and benchmark code needs from an index, whatever serves it."""

    @property
    def ntotal(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def search(self, queries: np.ndarray, k: int, *, exclude: Sequence[np.ndarray] | None = None,
               ef_search: int | None = None, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...


def milvus_available() -> bool:
    """True when pymilvus is importable (Milvus Lite ``.db`` URIs also need the milvus-lite package)."""
    import importlib.util

    return importlib.util.find_spec("pymilvus") is not None
