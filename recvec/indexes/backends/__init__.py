"""Where item vectors are served from, behind one interface (``base.Backend`` builds, records and
reopens a ``base.SearchBackend``): FAISS in process (the default), a Milvus collection
(Milvus Lite or a Milvus server / cluster) or a PostgreSQL + pgvector table.

Adding a backend is one module implementing ``Backend`` and one line in ``_REGISTRY`` below; the
artifact code, ``recvec build --backend NAME``, every ``recvec query`` and the benchmarks then use it.
Modules are imported when first asked for (``recvec --help`` loads none of them, nor numpy).
"""

from __future__ import annotations

import importlib
from typing import Any

from recvec.errors import RecvecError, shown

#: name -> "module:class" of its Backend.
_REGISTRY = {
    "faiss": "recvec.indexes.backends.faiss:FaissBackend",
    "milvus": "recvec.indexes.backends.milvus:MilvusBackend",
    "pgvector": "recvec.indexes.backends.pgvector:PgVectorBackend",
}
NAMES = tuple(_REGISTRY)
DEFAULT = "faiss"
_LOADED: dict[str, Any] = {}


def get(name: str | None) -> Any:
    """The Backend registered as ``name`` (None: the default, FAISS); RecvecError for unknown names."""
    name = DEFAULT if name is None else str(name).lower()
    if name not in _REGISTRY:
        raise RecvecError(f"unknown index backend {shown(name)}; choose one of {', '.join(NAMES)}",
                          params=("backend",))
    if name not in _LOADED:
        module, _, cls = _REGISTRY[name].partition(":")
        _LOADED[name] = getattr(importlib.import_module(module), cls)()
    return _LOADED[name]


def of(index: Any) -> Any:
    """The Backend that built or opened ``index`` (its ``backend`` attribute names it)."""
    name = getattr(index, "backend", None)
    if not isinstance(name, str):
        raise RecvecError(f"{type(index).__name__} is not a search backend of recvec (no backend name)")
    return get(name)
