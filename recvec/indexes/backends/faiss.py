"""``ItemIndex``: exclusion-aware top-k inner-product search over item rows (FAISS today).

Results are item rows (0..n-1) and scores; mapping rows to external ids happens elsewhere.

Exclusion (a user's history) is exact for every index kind: a query never gets an excluded row,
never gets ``-1`` padding, and gets k results whenever k <= ntotal - len(its exclusion):

* exact (flat) batches of ``_BLOCKED_MIN_QUERIES`` or more queries (``faiss_exact.py``): blocked
  BLAS matmul with the excluded scores set to -inf and FAISS's C++ top-k heaps (several times
  faster than ``IndexFlatIP.search`` itself, which excludes nothing, at d = 64; about even at
  d = 384, where the matmul dominates).
* HNSW: one walk per query without a selector, returning its best ``min(ef, k + len(exclude))``
  visited rows, the excluded ones then dropped (``_filter_beams``: FAISS's selector changes only
  which visited nodes enter the results, so the answers are the same); a query left with fewer
  than k allowed rows walks again with the selector, as below.
* otherwise flat, scalar-quantiser, HNSW and IVF indexes: FAISS ``IDSelector`` search parameters
  (a bitmap for the exhaustive kinds, a negated ``IDSelectorBatch`` for HNSW/IVF, which test only
  the items they visit), one call per distinct exclusion set (queries sharing a set are
  batched). For a single exact query this measured faster than searching ``k + len(exclude)``
  and filtering, on small and million-item catalogues alike. For HNSW the search width is the
  asked efSearch (at least k) whatever the exclusion (``walk_ef``: the walk passes over excluded
  nodes without keeping them, and only the few that outscore the results take beam slots). If a
  query still comes back short (IVF lists emptied by the exclusion, an HNSW region cut off), its
  efSearch/nprobe is doubled until it is complete, and as a last resort it is answered exactly
  from reconstructed vectors.
* other kinds (PQ refuses a selector, refine wrappers ignore it): over-fetch ``k + len(exclude)``
  in batched chunks (queries sorted by exclusion size) and filter.

Every query's parameters depend only on that query, so batch and single calls agree.

Thread safety: searches never change the shared FAISS index -- efSearch, nprobe and the exclusion
selector travel in ``SearchParameters`` (per call, or made once per efSearch and only read) -- so
one ItemIndex serves many threads at once (FAISS releases the GIL while searching);
tests/test_concurrency.py checks 8 threads against sequential calls. The only lazily built state
(the exact fallback's reconstructed vectors, which on IVF needs ``make_direct_map``) is built under
a lock; the all-ones bitmap and the one-off selector check are idempotent.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recvec.errors import RecvecError
from recvec.indexes import backends
from recvec.indexes.backends.base import (
    BackendOptions,
    as_exclusions,
    as_queries,
    check_k,
    excluding,
    first_allowed,
    walk_ef,
)
from recvec.indexes.backends.faiss_exact import brute_force_search, faiss_vectors, search_blocked
from recvec.indexes.backends.faiss_build import (
    build_index,
    check_metric,
    describe_index,
    link_unreachable,
)
from recvec.indexes.spec import IndexSpec, QueryParams

if TYPE_CHECKING:  # pragma: no cover
    import faiss

#: Exact (flat) batches of at least this many queries are scored by blocked BLAS matmul
#: (``faiss_exact.search_blocked``); fewer go through FAISS's own search (with the selector).
_BLOCKED_MIN_QUERIES = 20
#: A FAISS call spreads its queries over the OpenMP team only from this many queries on.
_TEAM_MIN_QUERIES = 8
#: Queries per chunk in the batched exact path (bounds the over-fetch buffer: chunk x (k + excl)).
_FLAT_CHUNK = 256
#: Up to this many items the exclusion bitmap is built from a bool mask, beyond it by clearing bits
#: in a copied all-ones bitmap (measured several times faster than the mask on large catalogues).
_SMALL_BITMAP = 65_536
#: Index kinds built and stored by a module of their own: spec kind -> "module:class". The class
#: answers ItemIndex's search contract and has ``build(vectors, spec, seed=)``, ``file_name`` (its
#: artifact file), ``to_bytes()``, ``from_bytes(data)`` and ``stores_exact_vectors``.
_OWN_KINDS = {"hnsw-bands": "recvec.indexes.backends.faiss_banded:BandedIndex"}


class ItemIndex:
    """A FAISS inner-product index over item rows with exclusion-aware search (a ``SearchBackend``)."""

    backend = "faiss"
    file_name = "index.faiss"

    def __init__(self, index: faiss.Index, dim: int | None = None):
        import faiss

        if dim is not None and int(index.d) != int(dim):
            raise RecvecError(f"index dimension {index.d} does not match the expected dimension {dim}")
        check_metric(index)
        self._index = index
        self.dim = int(index.d)
        core = faiss.downcast_index(index)
        # A reordered HNSW graph (spec.reorder_for_locality) is an IndexIDMap whose ids are the rows:
        # FAISS translates the selector and the results; only its direct vector access needs the map.
        self._id_mapped = isinstance(core, faiss.IndexIDMap)
        if self._id_mapped:
            _check_row_permutation(core)
            core = faiss.downcast_index(core.index)
        self._inner_index = core
        self._pretransform = isinstance(core, faiss.IndexPreTransform)
        inner = faiss.downcast_index(core.index) if self._pretransform else core
        self._exact = isinstance(core, faiss.IndexFlat) and not self._id_mapped
        self._hnsw = inner.hnsw if isinstance(inner, faiss.IndexHNSW) else None
        self._ivf = inner if isinstance(inner, faiss.IndexIVF) else None
        # Flat, scalar-quantiser, HNSW and IVF indexes (possibly behind a pre-transform) honour an
        # IDSelector in their search parameters; others (PQ refuses it, refine ignores it, ...) get
        # exclusion by over-fetching k + len(exclude) and filtering.
        self._selector = (self._hnsw is not None or self._ivf is not None
                          or isinstance(inner, (faiss.IndexFlat, faiss.IndexScalarQuantizer)))
        self._bitmap_ones: np.ndarray | None = None
        self._walk_params: dict[int, Any] = {}  # efSearch -> SearchParametersHNSW without a selector
        self._selector_checked = False  # the guard below runs on this index's first filtered search
        self._reconstructed: np.ndarray | None = None
        self._described: dict[str, Any] | None = None  # describe() walks an HNSW graph: once
        self._lock = threading.Lock()  # guards the lazy exact-fallback state (_all_vectors)

    # -- properties ------------------------------------------------------------------------------
    @property
    def faiss_index(self) -> faiss.Index:
        """The wrapped ``faiss.Index``."""
        return self._index

    @property
    def ntotal(self) -> int:
        """Number of indexed vectors (rows 0..ntotal-1)."""
        return int(self._index.ntotal)

    @property
    def is_exact(self) -> bool:
        """Whether the index is a plain flat index (exact search)."""
        return self._exact

    @property
    def nlist(self) -> int | None:
        """Number of IVF lists; None for an index that is not IVF."""
        return int(self._ivf.nlist) if self._ivf is not None else None

    @property
    def stores_exact_vectors(self) -> bool:
        """Whether the index holds the item vectors bit-exactly (flat, HNSW-flat)."""
        return self._exact or self.describe()["faiss_class"] == "IndexHNSWFlat"

    def describe(self) -> dict[str, Any]:
        """The index's resolved parameters (``describe_index``; HNSW: with ``reachable_share``),
        JSON-ready for the manifest and reports; computed once (again after :meth:`add`)."""
        with self._lock:
            if self._described is None:
                self._described = describe_index(self._index)
            return dict(self._described)

    def close(self) -> None:
        """Nothing to release: the index lives in this process."""

    def __repr__(self) -> str:
        return f"ItemIndex({type(self._index).__name__}, ntotal={self.ntotal}, dim={self.dim})"

    # -- building / persistence ------------------------------------------------------------------
    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append vectors; returns their rows (ntotal .. ntotal + m - 1). Building step: not while
        other threads search this index."""
        x = as_queries(vectors, self.dim)
        start = self.ntotal
        rows = np.arange(start, start + x.shape[0], dtype=np.int64)
        if self._id_mapped:  # appended after the reordered block: position == row for these
            self._index.add_with_ids(x, rows)
        else:
            self._index.add(x)
        if self._hnsw is not None:
            link_unreachable(self._inner_index)  # works on graph positions, not rows
        self._bitmap_ones = None
        self._reconstructed = None
        self._described = None
        return rows

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` in FAISS's own format."""
        import faiss

        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: str | Path, dim: int | None = None) -> ItemIndex:
        """Read an index file written by :meth:`save`; RecvecError if the file is missing or unreadable, its
        dimension is not ``dim`` (when given) or its metric is not inner product."""
        import faiss

        p = Path(path)
        if not p.is_file():
            raise RecvecError(f"index file not found: {p}")
        try:
            index = faiss.read_index(str(p))
        except RuntimeError as e:
            raise RecvecError(f"cannot read FAISS index {p}: {str(e).strip().splitlines()[-1]}") from None
        return cls(index, dim)

    def to_bytes(self) -> bytes:
        """The index serialised in FAISS's own format."""
        import faiss

        return faiss.serialize_index(self._index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, dim: int | None = None) -> ItemIndex:
        """An ItemIndex from :meth:`to_bytes` output; RecvecError if FAISS cannot read it, its dimension is
        not ``dim`` (when given) or its metric is not inner product."""
        import faiss

        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as e:
            raise RecvecError(f"cannot read FAISS index: {str(e).strip().splitlines()[-1]}") from None
        return cls(index, dim)

    # -- search ----------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, exclude: Sequence[np.ndarray] | None = None,
               ef_search: int | None = None, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and scores per query, (n, k) int64 and float32, best first.

        ``exclude[i]`` holds item rows query i must not get. ``ef_search`` (HNSW) and ``nprobe``
        (IVF) override the index's defaults for this call.
        """
        q = as_queries(queries, self.dim)
        ntotal = self.ntotal
        excl = as_exclusions(exclude, q.shape[0], ntotal)
        k = check_k(k, ntotal, excl)
        if ef_search is not None or nprobe is not None:
            QueryParams(ef_search=ef_search, nprobe=nprobe).check(k, is_hnsw=self._hnsw is not None,
                                                                  nlist=self.nlist)
        rows = np.empty((q.shape[0], k), dtype=np.int64)
        scores = np.empty((q.shape[0], k), dtype=np.float32)
        if q.shape[0] == 0:
            return rows, scores
        # a beam wider than the catalogue finds nothing more
        ef = min(walk_ef(ef_search or int(self._hnsw.efSearch), k), ntotal) if self._hnsw is not None else None
        probe = (nprobe or int(self._ivf.nprobe)) if self._ivf is not None else None
        if q.shape[0] == 1 and excl is not None and self._selector:
            # one query with an exclusion (what a service sends): HNSW filters its beam, and only a
            # query whose beam held fewer than k allowed rows walks again with the selector
            ex = excl[0]
            if self._hnsw is None or self._filter_beams(q, k, excl, ef, rows, scores).size:
                self._faiss_search(q, k, ef=ef, nprobe=probe, excluded=ex, out=(scores, rows))
                self._check_allowed(rows, ex)
                if (rows < 0).any():
                    self._complete(q, k, rows, scores, ex, np.zeros(1, dtype=np.int64), ef, probe)
        elif self._exact and q.shape[0] >= _BLOCKED_MIN_QUERIES:
            x = faiss_vectors(self._index, self.ntotal, self.dim)
            search_blocked(x, q, k, excl, rows, scores)
        elif excl is None:
            d, i = self._faiss_search(q, k, ef=ef, nprobe=probe)
            rows[:], scores[:] = i, d
            self._complete(q, k, rows, scores, None, np.arange(q.shape[0]), ef, probe)
        elif self._selector:
            self._search_selected(q, k, excl, rows, scores, ef, probe)
        else:
            self._search_overfetch(q, k, excl, rows, scores)
        return rows, scores

    def _faiss_search(self, q: np.ndarray, k: int, *, ef: int | None, nprobe: int | None,
                      excluded: np.ndarray | None = None,
                      out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One FAISS search; ``excluded`` (sorted unique rows) travels as an IDSelector.

        Graph and inverted-list indexes test only the items they visit, so they get a hash-set
        selector built from the excluded rows alone (IDSelectorBatch, negated); the exhaustive
        kinds test every row and get a bitmap. At 200k x 64 HNSW this cut a single query from
        0.33 to 0.26 ms (no 25 kB bitmap to build per call). ``ef`` (HNSW) is at most ntotal: the
        callers clamp it."""
        import faiss

        if self._hnsw is not None and excluded is None:  # read-only during a search: shared, made once
            p = self._walk_params.get(ef)
            if p is None:
                p = self._walk_params.setdefault(ef, faiss.SearchParametersHNSW(efSearch=int(ef)))
        elif self._hnsw is not None:
            p = faiss.SearchParametersHNSW(efSearch=int(ef))
        elif self._ivf is not None:
            p = faiss.SearchParametersIVF(nprobe=int(min(nprobe, self.nlist)))
        elif self._selector and excluded is not None:
            p = faiss.SearchParameters()
        else:
            p = None  # e.g. IndexPQ refuses plain SearchParameters; no selector here (over-fetch path)
        keep: tuple = ()  # the selector objects (and the bitmap) must outlive the search
        if p is not None and excluded is not None:
            if self._hnsw is not None or self._ivf is not None:
                keep = excluding(excluded)
            else:
                bitmap = self._allowed_bitmap(excluded)
                keep = (bitmap, faiss.IDSelectorBitmap(bitmap))
            p.sel = keep[1]
        if p is not None and self._pretransform:
            p = faiss.SearchParametersPreTransform(index_params=p)
        try:
            if out is not None:  # (distances, labels) written in place
                return self._index.search(q, k, params=p, D=out[0], I=out[1])
            return self._index.search(q, k, params=p)
        except RuntimeError as e:
            raise RecvecError(f"FAISS index {type(faiss.downcast_index(self._index)).__name__} cannot run this "
                              f"search: {str(e).strip().splitlines()[-1]}") from None
        finally:
            del keep

    def _allowed_bitmap(self, excluded: np.ndarray) -> np.ndarray:
        """FAISS bitmap (bit i of byte i>>3, little-endian bits) with 1 for every row not excluded."""
        ntotal = self.ntotal
        if ntotal <= _SMALL_BITMAP:  # a bool mask + packbits is cheapest for small indexes
            mask = np.ones(ntotal, dtype=bool)
            mask[excluded] = False
            return np.packbits(mask, bitorder="little")
        if self._bitmap_ones is None:
            self._bitmap_ones = np.packbits(np.ones(ntotal, dtype=bool), bitorder="little")
        bm = self._bitmap_ones.copy()
        np.bitwise_and.at(bm, excluded >> 3, ~(np.uint8(1) << (excluded & 7).astype(np.uint8)))
        return bm

    def _check_allowed(self, rows: np.ndarray, excluded: np.ndarray) -> None:
        """Guard: FAISS must not have returned an excluded row (a selector it silently ignored).

        Whether an index class honours the selector does not change between calls, so the check
        runs on the first filtered search of each ItemIndex only (it costs ~15 us per call)."""
        if self._selector_checked:
            return
        self._selector_checked = True
        r = rows[rows >= 0]
        if r.size and np.isin(r, excluded).any():
            import faiss

            raise RecvecError(f"FAISS index {type(faiss.downcast_index(self._index)).__name__} ignored the "
                              "exclusion selector; this index type cannot be searched with exclusions")

    def _search_overfetch(self, q, k, excl, rows, scores) -> None:
        """Exhaustive kinds: search k + len(exclude) (chunks sorted by exclusion size) and filter."""
        sizes = np.fromiter((a.size for a in excl), dtype=np.int64, count=len(excl))
        order = np.argsort(sizes, kind="stable")
        for start in range(0, len(order), _FLAT_CHUNK):
            chunk = order[start:start + _FLAT_CHUNK]
            kk = min(self.ntotal, k + int(sizes[chunk].max()))
            d, i = self._faiss_search(q[chunk], kk, ef=None, nprobe=None)
            short = []
            for j, qi in enumerate(chunk):
                keep = i[j] >= 0
                if excl[qi].size:
                    keep &= ~np.isin(i[j], excl[qi])
                sel = np.flatnonzero(keep)[:k]
                if sel.size < k:
                    short.append(qi)
                    continue
                rows[qi], scores[qi] = i[j, sel], d[j, sel]
            for qi in short:  # an index that pads with -1 even when scanning: answer exactly
                r, s_ = brute_force_search(self._all_vectors(), q[qi:qi + 1], k, [excl[qi]])
                rows[qi], scores[qi] = r[0], s_[0]

    def _filter_beams(self, q, k, excl, ef, rows, scores) -> np.ndarray:
        """HNSW with exclusions, without a selector: one walk per query at ``ef`` (at most ntotal)
        returning its best ``min(ef, k + longest exclusion)`` visited rows, the excluded ones then
        dropped. Writes the queries left with at least k rows into ``rows`` / ``scores`` and returns
        the indices of the others (int64), which the caller searches with the selector.

        FAISS's walk does not depend on the selector (it only keeps excluded nodes out of the
        results heap, testing every node whose distance it computes), nor on k while k <= efSearch,
        so the answers are the selector's: the best k allowed rows among the nodes visited, without
        a selector test per distance (README, "Filtered HNSW search", for what it saves)."""
        n = q.shape[0]
        kk = min(ef, k + (excl[0].size if n == 1 else max(a.size for a in excl)))  # ef <= ntotal
        d, i = self._faiss_search(q, kk, ef=ef, nprobe=None)
        if n == 1:  # the service call, in as few numpy steps as possible
            ex, found = excl[0], i[0]
            if found[-1] < 0:  # FAISS pads at the end: the walk met fewer than kk nodes
                return np.zeros(1, dtype=np.int64)
            allowed = first_allowed(found, ex, k)
            if allowed.size < k:
                return np.zeros(1, dtype=np.int64)
            rows[0], scores[0] = found[allowed], d[0][allowed]
            return np.empty(0, dtype=np.int64)
        # a batch: one sorted key per (query, excluded row), query * (ntotal + 1) + row
        offset = np.arange(n, dtype=np.int64) * (self.ntotal + 1)
        keys = np.concatenate(excl) + np.repeat(offset, [a.size for a in excl])
        keep = i >= 0
        if keys.size:
            cand = i + offset[:, None]
            keep &= keys[np.minimum(np.searchsorted(keys, cand), keys.size - 1)] != cand
        count = np.cumsum(keep, axis=1)
        full = count[:, -1] >= k
        take = keep[full] & (count[full] <= k)  # row-major: each query's first k kept, in order
        done = np.flatnonzero(full)
        rows[done] = i[full][take].reshape(-1, k)
        scores[done] = d[full][take].reshape(-1, k)
        return np.flatnonzero(~full)

    def _search_selected(self, q, k, excl, rows, scores, ef, probe) -> None:
        import faiss

        todo = range(len(excl)) if self._hnsw is None else self._filter_beams(q, k, excl, ef, rows, scores)
        groups: dict[bytes, list[int]] = {}
        for qi in todo:
            groups.setdefault(excl[qi].tobytes(), []).append(int(qi))
        if not groups:
            return
        # Each distinct exclusion set is one FAISS call; FAISS spreads a call's queries over its
        # OpenMP team, which for a handful of queries only adds a wake-up and a barrier per call
        # (users' histories differ, so a batch of users is mostly calls of one query): such calls
        # run on this thread alone (omp_set_num_threads is per calling thread).
        omp_before = faiss.omp_get_max_threads()
        try:
            self._search_groups(q, k, excl, rows, scores, ef, probe, groups, omp_before)
        finally:
            faiss.omp_set_num_threads(omp_before)

    def _search_groups(self, q, k, excl, rows, scores, ef, probe, groups, omp_team) -> None:
        import faiss

        for members in groups.values():
            faiss.omp_set_num_threads(omp_team if len(members) >= _TEAM_MIN_QUERIES else 1)
            idx = np.asarray(members, dtype=np.int64)
            ex = excl[members[0]]
            ex_sel = ex if ex.size else None
            whole = len(members) == len(excl)
            d, i = self._faiss_search(q if whole else q[idx], k, ef=ef, nprobe=probe, excluded=ex_sel)
            if ex_sel is not None:
                self._check_allowed(i, ex_sel)
            if whole:
                rows[:], scores[:] = i, d
            else:
                rows[idx], scores[idx] = i, d
            if (i < 0).any():
                self._complete(q, k, rows, scores, ex_sel, idx, ef, probe)

    def _complete(self, q, k, rows, scores, ex, idx, ef, probe) -> None:
        """Re-search rows that came back with -1 padding, widening efSearch / nprobe, then exactly."""
        short = idx[(rows[idx] < 0).any(axis=1)]
        while short.size and (ef is not None and ef < self.ntotal or probe is not None and probe < self.nlist):
            ef = min(self.ntotal, ef * 2) if ef is not None else None
            probe = min(self.nlist, probe * 2) if probe is not None else None
            d, i = self._faiss_search(q[short], k, ef=ef, nprobe=probe, excluded=ex)
            if ex is not None:
                self._check_allowed(i, ex)
            rows[short], scores[short] = i, d
            short = short[(rows[short] < 0).any(axis=1)]
        if short.size:  # e.g. HNSW nodes unreachable from the entry point: answer exactly
            vectors = self._all_vectors()
            r, s = brute_force_search(vectors, q[short], k, None if ex is None or not ex.size else [ex] * short.size)
            rows[short], scores[short] = r, s

    def vectors(self) -> np.ndarray:
        """The stored vectors in row order, (ntotal, dim) float32 (quantised kinds: as decoded).
        Raises RuntimeError where the index cannot reconstruct (IVF without a direct map, ...)."""
        import faiss

        x = self._inner_index.reconstruct_n(0, self.ntotal)
        if not self._id_mapped:
            return x
        out = np.empty_like(x)
        out[faiss.vector_to_array(faiss.downcast_index(self._index).id_map)] = x
        return out

    def _all_vectors(self) -> np.ndarray:
        with self._lock:  # make_direct_map changes the shared IVF index: once, by one thread
            if self._reconstructed is None:
                try:
                    if self._ivf is not None:
                        self._ivf.make_direct_map()
                    self._reconstructed = self.vectors()
                except RuntimeError as e:
                    raise RecvecError("the index returned fewer than k results and cannot reconstruct its "
                                      f"vectors for an exact fallback: {str(e).strip().splitlines()[-1]}") from None
            return self._reconstructed


def _check_row_permutation(idmap: Any) -> None:
    """Refuse an IndexIDMap whose ids are not the rows 0..ntotal-1 in some order (results are rows)."""
    import faiss

    ids = faiss.vector_to_array(idmap.id_map).astype(np.int64, copy=False)
    n = int(idmap.ntotal)
    if ids.shape != (n,) or (n and (ids.min() < 0 or ids.max() >= n or np.bincount(ids, minlength=n).max() > 1)):
        raise RecvecError(f"IndexIDMap ids must be the rows 0..{n - 1} in some order (recvec results are item rows); "
                          "this index maps its vectors to other ids")


def _own_kind(target: str) -> Any:
    """The class a ``_OWN_KINDS`` entry ("module:class") names, imported when first asked for."""
    import importlib

    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


class FaissBackend:
    """FAISS in process (the default): the index is a file of the artifact, ``index.faiss`` in
    FAISS's own format; flat and HNSW-flat indexes hold the item vectors themselves, so an artifact
    needs not store them twice."""

    name = "faiss"
    label = "FAISS"
    index_file = "index.faiss"

    def adopt(self, index: Any) -> ItemIndex:
        """An ItemIndex over a raw ``faiss.Index`` (inner product, ids = rows)."""
        return index if isinstance(index, ItemIndex) else ItemIndex(index)

    def check(self, spec: IndexSpec, options: BackendOptions, dest=None) -> BackendOptions:
        """Refuses ``uri`` and ``collection`` (RecvecError): a FAISS index is a file of the artifact."""
        given = [p for p in ("uri", "collection") if getattr(options, p)]
        if given:
            served = "|".join(n for n in backends.NAMES if n != self.name)
            raise RecvecError(f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} to backend "
                              f"{served} only (this build writes a FAISS index into the artifact)",
                              params=(*given, "backend"))
        return options

    def build(self, vectors: np.ndarray, spec: IndexSpec, options: BackendOptions = BackendOptions(), *,
              seed: int = 0) -> Any:
        """An in-process ItemIndex from ``build_index``, or the index of a kind with a module of its own
        (``_OWN_KINDS``: ``hnsw-bands``); RecvecError if FAISS cannot build ``spec`` for the vectors."""
        if spec.kind in _OWN_KINDS:
            return _own_kind(_OWN_KINDS[spec.kind]).build(vectors, spec, seed=seed)
        return ItemIndex(build_index(vectors, spec, seed=seed))

    def manifest_entry(self, index: ItemIndex, dest=None) -> None:
        """None: the index is the artifact's ``index.faiss``."""
        return None

    def files(self, index: Any) -> dict[str, bytes]:
        """``{"index.faiss": the serialised index}`` (a kind of its own: ``{its file_name: its bytes}``)."""
        return {index.file_name: index.to_bytes()}

    def reproduces(self, index: Any, vectors: np.ndarray) -> bool:
        """True for an index holding exact vectors (flat, HNSW-flat, banded) equal to ``vectors``."""
        if not index.stores_exact_vectors:
            return False
        try:
            return bool(np.array_equal(index.vectors(), vectors))
        except RuntimeError:
            return False

    def open(self, entry: dict | None, files: dict[str, bytes], vectors: np.ndarray | None, *,
             verify: bool = True) -> Any:
        """The index deserialised from the artifact's ``index.faiss`` (an ItemIndex) or the file of a
        kind of its own (``entry``, ``vectors`` and ``verify`` unused); RecvecError if unreadable."""
        for name, data in files.items():
            for target in _OWN_KINDS.values():
                cls = _own_kind(target)
                if name == cls.file_name:
                    return cls.from_bytes(data)
        if self.index_file not in files:
            raise RecvecError(f"a FAISS artifact needs {self.index_file} or the file of a kind of its own, "
                              f"got {sorted(files)}")
        return ItemIndex.from_bytes(files[self.index_file])

    def check_entry(self, entry: dict, where: str) -> dict:
        """Any entry is returned unchanged: a FAISS artifact has none to check."""
        return entry

    def discard(self, index: ItemIndex) -> None:
        """Nothing outside the artifact to remove."""

    def retire(self, entry: dict, keep: dict | None) -> str | None:
        """Nothing: a FAISS index is a file of the artifact it belongs to (never a manifest entry)."""
        return None
