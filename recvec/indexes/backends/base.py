"""The backend interface: what every place that builds, saves, opens or searches an index talks to,
and the argument checks every backend shares (written once).

A ``Backend`` (one per kind: FAISS in process, a Milvus collection, ...; the registry in
``recvec.indexes.backends`` maps a name to one) builds a ``SearchBackend`` from vectors and an
``IndexSpec``, says how the artifact records it, and opens it again from an artifact. A
``SearchBackend`` answers one search contract::

    rows, scores = index.search(queries, k, exclude=None, ef_search=None, nprobe=None)

``queries`` (n, d) float32; ``rows`` (n, k) int64 catalogue rows 0..ntotal-1 (external ids are
mapped elsewhere) and ``scores`` (n, k) float32 inner products, best first. ``exclude[i]`` holds the
rows query i must not get; every backend still returns exactly k rows (no -1 padding) while
k <= ntotal - len(exclude[i]), else raises. ``ef_search`` (HNSW) and ``nprobe`` (IVF) apply to the
one call. Batch and single calls agree. Errors are ``RecvecError`` naming the parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from recvec.errors import RecvecError, shown


@runtime_checkable
class SearchBackend(Protocol):
    """One built index, whatever serves it (see the module docstring for the search contract)."""

    backend: str  # the registry name of the Backend that built / opened it

    @property
    def ntotal(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def search(self, queries: np.ndarray, k: int, *, exclude: Sequence[np.ndarray] | None = None,
               ef_search: int | None = None, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def vectors(self) -> np.ndarray:
        """The indexed vectors in row order, (ntotal, dim) float32."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (kind, parameters) for the manifest and reports; no credentials."""
        ...

    def close(self) -> None:
        """Release connections (in-process indexes hold none)."""
        ...


@dataclass(frozen=True)
class BackendOptions:
    """Where an index is to be served from: the backend's registry name and its location.

    ``uri``: a Milvus ``FILE.db`` path or ``http://HOST:19530`` URI, a PostgreSQL DSN, ...;
    ``collection``: the collection / table name there; ``batch_size``: rows per insert call (None:
    the backend's default); ``progress``: show a progress bar while loading vectors. In-process
    backends take none of uri / collection."""

    name: str = "faiss"
    uri: str | None = None
    collection: str | None = None
    batch_size: int | None = None
    progress: bool = False


class Backend(Protocol):
    """Builds, records and reopens one kind of index (what ``artifact.py``, ``build.py`` and the CLI
    talk to)."""

    name: str
    label: str  # for messages ("FAISS", "Milvus")

    def check(self, spec: Any, options: BackendOptions, dest: str | Path | None = None) -> BackendOptions:
        """Validate the options (and that the backend can build ``spec``) before any slow work;
        returns them normalised (e.g. a resolved URI). ``dest``: the artifact destination."""
        ...

    def build(self, vectors: np.ndarray, spec: Any, options: BackendOptions, *, seed: int = 0) -> SearchBackend:
        """An index over ``vectors`` (n, d) float32 (rows 0..n-1) as ``spec`` says."""
        ...

    def manifest_entry(self, index: SearchBackend, dest: str | Path | None = None) -> dict | None:
        """The manifest's ``backend`` entry, or None for an index stored as a file in the artifact;
        raises RecvecError when the artifact cannot be saved at ``dest`` (e.g. a database inside it)."""
        ...

    def files(self, index: SearchBackend) -> dict[str, bytes]:
        """The files the artifact stores for the index (name -> bytes; empty when it lives elsewhere)."""
        ...

    def reproduces(self, index: SearchBackend, vectors: np.ndarray) -> bool:
        """Whether ``index.vectors()`` gives back exactly ``vectors`` (then the artifact need not store them)."""
        ...

    def open(self, entry: dict | None, files: dict[str, bytes], vectors: np.ndarray | None, *,
             verify: bool = True) -> SearchBackend:
        """The index an artifact recorded: ``entry`` (its manifest ``backend`` entry or None), the
        index files it stored, and its item vectors (None when they come from the index)."""
        ...

    def check_entry(self, entry: dict, where: str) -> dict:
        """Validate a manifest ``backend`` entry of this kind (raise RecvecError naming ``where``)."""
        ...

    def discard(self, index: SearchBackend) -> None:
        """Remove what ``build`` created outside the artifact (a collection) after a failed save."""
        ...

    def retire(self, entry: dict, keep: dict | None) -> str | None:
        """After an artifact replaced one whose manifest ``backend`` entry is ``entry``: remove what that
        entry points at (a collection recvec created), unless ``keep`` (the new artifact's entry, None
        for a file index) names the same. Never raises for what it cannot remove; returns a line for
        the user saying what was done (None: nothing)."""
        ...


# ------------------------------------------------------------------------ the shared argument checks


def check_vectors(vectors: Any, what: str = "index vectors") -> np.ndarray:
    """A non-empty (n, d) array of finite numbers as contiguous float32, or RecvecError naming ``what``."""
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise RecvecError(f"{what} must be a non-empty (n, d) array, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) or x.dtype == np.bool_:
        raise RecvecError(f"{what} must be numeric, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise RecvecError(f"{what} contain NaN or infinite values (rows {bad[:10].tolist()})")
    return x


def hnsw_ef(ef: int, k: int, n_excluded: int) -> int:
    """efSearch for an HNSW engine that filters *after* its walk (pgvector's ``hnsw.ef_search``
    candidates, then the SQL filter; Milvus, kept on it): the asked ef, at least k + the number
    excluded, so k allowed rows can survive the filter."""
    return max(ef, k + n_excluded)


def walk_ef(ef: int, k: int) -> int:
    """efSearch for a FAISS HNSW walk that filters *as it walks* (an IDSelector): the asked ef, at
    least k, whatever the exclusion.

    The walk still passes through excluded nodes, so they take beam slots, but only those scoring
    above the k-th allowed result do, and those are a few per query even for long histories.
    Widening the beam by the whole history (``hnsw_ef``) multiplied the distance computations for
    no more recall than the same work spent on a larger fixed ef (measured on ML-1M ALS vectors and
    a 100k-item synthetic catalogue: README, "Filtered HNSW search"). A query that still comes back
    short of k is completed by ``ItemIndex`` (wider ef, then exactly).
    """
    return max(ef, k)


def as_queries(queries: Any, dim: int, against: str = "the index dimension") -> np.ndarray:
    """(n, dim) contiguous finite float32 queries (a 1-D query is one row), or a RecvecError."""
    q = np.asarray(queries)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2:
        raise RecvecError(f"queries must be a (n, {dim}) array, got shape {q.shape}")
    if q.shape[1] != dim:
        raise RecvecError(f"query dimension {q.shape[1]} does not match {against} {dim}")
    if q.size and q.dtype.kind not in "fiu":
        raise RecvecError(f"queries must be numeric, got {q.dtype}")
    q = np.ascontiguousarray(q, dtype=np.float32)
    if not np.isfinite(q).all():
        bad = np.flatnonzero(~np.isfinite(q).all(axis=1))
        raise RecvecError(f"queries contain NaN or infinite values (query rows {bad[:10].tolist()})")
    return q


def as_exclusions(exclude: Sequence[Any] | None, n: int, ntotal: int) -> list[np.ndarray] | None:
    """Sorted unique int64 row arrays, one per query, or None when nothing is excluded."""
    if exclude is None:
        return None
    if isinstance(exclude, np.ndarray) and exclude.ndim == 2:
        exclude = list(exclude)
    if len(exclude) != n:
        raise RecvecError(f"exclude has {len(exclude)} entries but there are {n} queries (one array per query)")
    if n == 1 and _canonical_one(exclude[0], ntotal):  # the service call: used as given
        return [exclude[0]]
    if n > 1 and _canonical(exclude, ntotal):  # checked in one vectorised pass: used as given
        return None if all(a.size == 0 for a in exclude) else list(exclude)
    out = []
    for i, e in enumerate(exclude):
        a = np.asarray(e if e is not None else [])
        if a.size == 0:
            out.append(np.empty(0, dtype=np.int64))
            continue
        if a.dtype.kind not in "iu":
            raise RecvecError(f"exclude[{i}] must hold integer item rows, got {a.dtype}")
        a = np.sort(a.astype(np.int64, copy=False).ravel())  # sorted unique; np.unique only for repeats
        if a.size > 1 and (a[1:] == a[:-1]).any():
            a = np.unique(a)
        if a[0] < 0 or a[-1] >= ntotal:
            bad = a[(a < 0) | (a >= ntotal)]
            raise RecvecError(f"exclude[{i}] has item rows outside 0..{ntotal - 1}: {bad[:10].tolist()}")
        out.append(a)
    if all(a.size == 0 for a in out):
        return None
    return out


def first_allowed(found: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
    """Positions (int64) of the first ``k`` entries of ``found`` -- rows best first, -1 for padding --
    that are not in ``excluded`` (sorted unique rows); fewer when ``found`` holds fewer. What a beam
    returned by an unfiltered HNSW walk keeps of its answers (``ItemIndex``, ``BandedIndex``)."""
    absent = np.searchsorted(excluded, found, side="right") == np.searchsorted(excluded, found, side="left")
    return np.flatnonzero(absent & (found >= 0))[:k]


def excluding(rows: np.ndarray) -> tuple[Any, Any]:
    """A FAISS selector of the ids not in ``rows`` (int64 ids) for HNSW and IVF searches: (the
    ``IDSelectorBatch`` of ``rows``, its ``IDSelectorNot``). Pass the second as ``params.sel`` and
    keep the pair alive until the search returns (the selector only points at the batch)."""
    import faiss

    batch = faiss.IDSelectorBatch(rows)
    return batch, faiss.IDSelectorNot(batch)


def _canonical_one(a: Any, ntotal: int) -> bool:
    """Whether ``a`` already is a non-empty 1-D int64 array of sorted unique rows in 0..ntotal-1 (a
    history as ``Recommender`` passes it), in four numpy steps instead of a sort and a copy."""
    return (isinstance(a, np.ndarray) and a.dtype == np.int64 and a.ndim == 1 and a.size > 0
            and a[0] >= 0 and a[-1] < ntotal and bool((a[1:] > a[:-1]).all()))


def _canonical(exclude: Sequence[Any], ntotal: int) -> bool:
    """Whether every entry already is a 1-D int64 array of sorted unique rows in 0..ntotal-1 (as
    ``Recommender.recommend_batch`` passes them), checked over the concatenation: a batch of 1,000
    histories in ~0.3 ms instead of ~3.5 ms one by one. Anything else takes the per-entry path (and
    its error messages)."""
    if not all(isinstance(a, np.ndarray) and a.dtype == np.int64 and a.ndim == 1 for a in exclude):
        return False
    flat = np.concatenate(exclude)
    if not flat.size:
        return True
    if flat.min() < 0 or flat.max() >= ntotal:
        return False
    increasing = np.diff(flat) > 0
    starts = np.cumsum([a.size for a in exclude])[:-1]  # a new entry may start lower than the last ended
    starts = starts[(starts > 0) & (starts < flat.size)]
    increasing[starts - 1] = True
    return bool(increasing.all())


def check_k(k: Any, ntotal: int, excl: list[np.ndarray] | None) -> int:
    """``k`` as an int, or RecvecError unless 1 <= k <= ntotal and, for every query, k <= ntotal minus
    the size of its exclusion in ``excl`` (as :func:`as_exclusions` returns it)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise RecvecError(f"k must be a positive integer, got {shown(k)}")
    k = int(k)
    if k > ntotal:
        raise RecvecError(f"k={k} is larger than the {ntotal} items in the index")
    if excl is not None and len(excl) == 1:  # one query: the common service call
        if ntotal - excl[0].size < k:
            raise RecvecError(f"k={k} is larger than the {ntotal - excl[0].size} items left for query 0 "
                              f"after excluding {excl[0].size} of {ntotal}")
    elif excl is not None:
        sizes = np.fromiter((a.size for a in excl), dtype=np.int64, count=len(excl))
        over = np.flatnonzero(ntotal - sizes < k)
        if over.size:
            i = int(over[0])
            raise RecvecError(f"k={k} is larger than the {ntotal - int(sizes[i])} items left for query {i} "
                              f"after excluding {int(sizes[i])} of {ntotal}")
    return k
