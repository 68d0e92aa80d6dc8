"""``BandedIndex``: norm-ranging HNSW (Yan et al., NeurIPS 2018) -- inner-product search by a few
L2 graphs, one per norm band, each navigable (every node reachable from its entry point).

An inner-product HNSW graph over raw item factors is hub-dominated: pruning by inner product leaves
the small-norm items with no in-links (``faiss_build.link_unreachable``), so no search can find
them. The usual reduction -- append ``sqrt(M^2 - |x|^2)`` to every item (M the largest norm), append
0 to the query, search by L2 -- makes the L2 order the inner-product order and the graph navigable,
but with an ALS-like norm spread M is far above most norms and greedy walks miss (recall@10 ~0.5 at
ef 64 on a 20k synthetic catalogue). So are equal-count norm bands: the top band still spans a wide
norm range. Here each band holds items whose largest norm is at most ``spec.band_ratio`` times its
smallest (split from the top down, ``band_bounds``), is augmented with its own M_b (its largest norm)
and gets its own L2 HNSW graph (repaired by ``link_unreachable``, stored breadth-first by
``reorder_for_locality``, ids = global rows). Bands of at most ``_SCAN_MAX`` items (the sparse top
and bottom of the norm range) are scanned exactly instead; a run of such bands next to each other
in the search order is one *unit*, scanned by one matrix-vector product.

A query searches the units from the largest M_b down, each for k results (a walk's efSearch is the
asked one, at least k, whatever the exclusion: ``walk_ef``), and stops once its k-th best
score so far is at least ``|q| * M_b`` (no item of that unit or any below can score more:
Cauchy-Schwarz), so the units it skips could not have changed the answer. Candidates are merged by
inner product recomputed from the stored vectors (scores are inner products, not L2 distances);
equal scores keep the order they were found in (units from the largest M_b down). Exclusion is
exact (a FAISS ``IDSelector`` over the global rows, masked scores in scanned units; a query still
short of k is answered exactly), and every query's work depends only on that query, so batch and
single calls agree. A single query (what a service sends) takes the same steps on 1-D arrays, its
excluded rows marked in a per-thread mask (set and restored by the query), and walks each band
without a selector for its best ``min(ef, k + the band's excluded rows)`` visited nodes, dropping
the excluded ones afterwards (FAISS's selector only keeps visited nodes out of the results, so the
answers are the selector walk's); a beam left short walks again with the selector, and a band
holding more than ``_SELECT_FIRST * ef - k`` excluded rows walks with it at once.

Stored as one ``.npz`` file (``FILE_NAME``): each band's graph in FAISS's own format as a uint8
array plus the band maxima -- no pickle (``np.load(allow_pickle=False)``).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recvec.errors import RecvecError
from recvec.indexes.backends.base import (
    as_exclusions,
    as_queries,
    check_k,
    check_vectors,
    excluding,
    walk_ef,
)
from recvec.indexes.backends.faiss_build import breadth_first_nodes, link_unreachable, reorder_for_locality
from recvec.indexes.backends.faiss_exact import faiss_vectors
from recvec.indexes.spec import DEFAULT_EF_SEARCH, IndexSpec, QueryParams

#: The artifact file of a banded index (an .npz of uint8 FAISS blobs and float arrays).
FILE_NAME = "index.bands.npz"
#: What ``describe()`` calls the index (``faiss_class``).
CLASS_NAME = "NormBandedHNSW"
#: A FAISS call spreads its queries over the OpenMP team only from this many queries on.
_TEAM_MIN_QUERIES = 8
#: Bands of at most this many items are scanned exactly instead of walked (a walk at ef 64 visits
#: about as many nodes, at several times the cost per node).
_SCAN_MAX = 4096
#: Fewest items in a band (the norm tails would otherwise make bands of a handful of items).
_MIN_BAND = 256
#: A single query walks a band with the selector at once (not an unfiltered walk first) when the
#: band holds more than this many times ef, less k, of its excluded rows: its unfiltered beam would
#: then mostly come back short and walk again (1.5-2 was best in a sweep of 1-3 and never).
_SELECT_FIRST = 2.0
_FORMAT = 1


def band_bounds(norms: np.ndarray, ratio: float, min_size: int = _MIN_BAND) -> np.ndarray:
    """Split points of ``norms`` (n,) sorted ascending into bands, from the top down: a band holds
    the items whose norm is above its largest over ``ratio`` -- but at least ``min_size`` items, and
    the last band takes what is left when less than ``min_size`` would remain. Returns int64
    positions 0 = b_0 < ... < b_B = n (band j is norms[b_j:b_{j+1}])."""
    cuts = [int(norms.shape[0])]
    while cuts[-1] > 0:
        hi = cuts[-1]
        lo = min(int(np.searchsorted(norms, norms[hi - 1] / ratio, side="right")), hi - min_size)
        cuts.append(lo if lo >= min_size else 0)
    return np.asarray(cuts[::-1], dtype=np.int64)


class _Unit:
    """One step of a banded search: a walked band (``bands`` = [b]) or a run of scanned bands
    (``ids`` their rows, ``x`` (size, dim) float32 their vectors); ``top`` the largest M_b in it."""

    __slots__ = ("bands", "top", "scanned", "size", "ids", "x")

    def __init__(self, bands: list[int], top: float, scanned: bool):
        self.bands, self.top, self.scanned = bands, top, scanned
        self.size, self.ids, self.x = 0, None, None


class BandedIndex:
    """Norm-banded L2 HNSW graphs answering the ``SearchBackend`` contract (module doc).

    ``graphs``: one ``faiss.IndexIDMap`` over an ``IndexHNSWFlat`` (L2, dim + 1) per band, ids the
    global rows (together a permutation of 0..n-1); ``max_norms`` (bands,) the M_b each band was
    augmented with; bands of at most ``scan_max`` items are scanned exactly instead of walked.
    RecvecError when the graphs do not fit that description."""

    backend = "faiss"
    file_name = FILE_NAME
    is_exact = False
    stores_exact_vectors = True  # the first dim coordinates of every band are the item vectors as given
    nlist = None

    def __init__(self, graphs: Sequence[Any], max_norms: np.ndarray, scan_max: int = _SCAN_MAX):
        import faiss

        norms = np.asarray(max_norms, dtype=np.float32).ravel()
        if not graphs or len(graphs) != norms.size:
            raise RecvecError(f"a banded index needs one maximum norm per band: {len(graphs)} graphs, "
                              f"{norms.size} norms")
        self._owners = list(graphs)  # the proxies that own the C++ indexes (downcast views do not)
        self._graphs, self._hnsw, self._xb, ids = [], [], [], []
        for b, g in enumerate(self._owners):
            g = faiss.downcast_index(g)
            inner = faiss.downcast_index(g.index) if isinstance(g, faiss.IndexIDMap) else None
            if not isinstance(inner, faiss.IndexHNSWFlat) or g.metric_type != faiss.METRIC_L2:
                raise RecvecError(f"band {b} of a banded index must be an IndexIDMap over an L2 IndexHNSWFlat")
            if b and int(g.d) != int(graphs[0].d):
                raise RecvecError(f"band {b} has dimension {g.d}, band 0 {graphs[0].d}")
            self._graphs.append(g)
            self._hnsw.append(inner.hnsw)
            store = faiss.downcast_index(inner.storage)
            self._xb.append(faiss_vectors(store, int(g.ntotal), int(g.d)))
            ids.append(faiss.vector_to_array(g.id_map).astype(np.int64))
        self.dim = int(self._graphs[0].d) - 1
        self._n = sum(int(g.ntotal) for g in self._graphs)
        rows = np.concatenate(ids)
        if rows.size != self._n or (self._n and (rows.min() < 0 or rows.max() >= self._n
                                                 or np.bincount(rows, minlength=self._n).max() > 1)):
            raise RecvecError(f"the bands' ids must be the rows 0..{self._n - 1}, each in one band")
        self._ids = ids
        self._sizes = [a.size for a in ids]
        self._scan_max = int(scan_max)
        self._band_of = np.repeat(np.arange(len(ids), dtype=np.int32), [a.size for a in ids])[np.argsort(rows)]
        self._pos = np.empty(self._n, dtype=np.int64)  # row -> its position in its band's storage
        for a in ids:
            self._pos[a] = np.arange(a.size)
        for b, xb in enumerate(self._xb):  # every augmented vector has norm M_b: spot-check a few
            sample = np.linalg.norm(xb[:: max(1, xb.shape[0] // 8)].astype(np.float64), axis=1)
            if not np.allclose(sample, float(norms[b]), rtol=1e-3, atol=1e-6):
                raise RecvecError(f"band {b} of the banded index is not augmented to its norm {float(norms[b])}")
        self._max_norms = norms
        self._order = np.argsort(-norms, kind="stable")  # bands searched from the largest M_b down
        self._units, self._unit_of = self._search_units()
        self._described: dict | None = None
        self._walk_params: dict[int, Any] = {}  # efSearch -> SearchParametersHNSW without a selector
        self._lock = threading.Lock()
        self._local = threading.local()  # per thread: the allowed-rows mask of single queries

    def _search_units(self) -> tuple[list[_Unit], np.ndarray]:
        """The bands in search order (largest M_b first) as units: a walked band is a unit of its
        own; a run of consecutive scanned bands is one unit, its items' vectors (first ``dim``
        coordinates) in one matrix, scanned by one matrix-vector product. Returns (units, the unit
        of each row (n,) int32)."""
        units: list[_Unit] = []
        for b in self._order:
            scanned = self._sizes[b] <= self._scan_max
            if scanned and units and units[-1].scanned:
                units[-1].bands.append(int(b))
            else:
                units.append(_Unit([int(b)], float(self._max_norms[b]), scanned))
        unit_of = np.empty(self._n, dtype=np.int32)
        for u, unit in enumerate(units):
            ids = np.concatenate([self._ids[b] for b in unit.bands])
            unit_of[ids] = u
            unit.size = ids.size
            if unit.scanned:
                unit.ids = ids
                unit.x = np.ascontiguousarray(np.concatenate([self._xb[b][:, :self.dim] for b in unit.bands]))
        return units, unit_of

    # -- properties ------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Number of indexed vectors (rows 0..ntotal-1)."""
        return self._n

    @property
    def bands(self) -> int:
        """Number of norm bands (graphs)."""
        return len(self._graphs)

    def describe(self) -> dict[str, Any]:
        """JSON-ready: class, ntotal, dim, bands, M, efConstruction, efSearch, each band's size, M_b,
        whether it is scanned, and its share of nodes reachable from its graph's entry point (1.0 for
        a scanned band), and ``reachable_share`` (all bands' reachable items / ntotal). The
        reachability walk runs once per index (cached)."""
        with self._lock:
            if self._described is None:
                reached = [int(breadth_first_nodes(h).size) if n > self._scan_max else n  # a scan reaches all
                           for h, n in zip(self._hnsw, self._sizes)]
                sizes = [int(g.ntotal) for g in self._graphs]
                h = self._hnsw[0]
                self._described = {
                    "ntotal": self._n, "dim": self.dim, "faiss_class": CLASS_NAME, "bands": self.bands,
                    "M": int(h.nb_neighbors(1)), "ef_construction": int(h.efConstruction),
                    "ef_search": int(h.efSearch), "band_sizes": sizes,
                    "band_max_norms": [float(m) for m in self._max_norms],
                    "band_scanned": [n <= self._scan_max for n in sizes],
                    "band_reachable_share": [r / s if s else 1.0 for r, s in zip(reached, sizes)],
                    "reachable_share": sum(reached) / self._n if self._n else 1.0}
            return dict(self._described)

    def close(self) -> None:
        """Nothing to release: the graphs live in this process."""

    def __repr__(self) -> str:
        return f"BandedIndex(bands={self.bands}, ntotal={self.ntotal}, dim={self.dim})"

    # -- building / persistence ------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, spec: IndexSpec, *, seed: int = 0, scan_max: int = _SCAN_MAX) -> BandedIndex:
        """Bands over ``vectors`` (n, d) float32 as ``spec`` says (``band_ratio``, ``M``,
        ``ef_construction``, ``reorder``); ``seed`` unused (HNSW levels use FAISS's own seed).
        RecvecError for vectors that are not a finite (n, d) array."""
        import faiss

        x = check_vectors(vectors)
        n, d = x.shape
        norms = np.linalg.norm(x.astype(np.float64), axis=1)
        by_norm = np.argsort(norms, kind="stable")
        bounds = band_bounds(norms[by_norm], spec.band_ratio)
        graphs, maxima = [], []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            rows = np.sort(by_norm[lo:hi])  # row order within a band
            m = float(norms[rows].max())
            aug = np.empty((rows.size, d + 1), dtype=np.float32)
            aug[:, :d] = x[rows]
            aug[:, d] = np.sqrt(np.maximum(m * m - norms[rows] ** 2, 0.0))
            g = faiss.IndexHNSWFlat(d + 1, int(spec.M), faiss.METRIC_L2)
            g.hnsw.efConstruction = int(spec.ef_construction)
            g.hnsw.efSearch = DEFAULT_EF_SEARCH
            g.add(aug)
            link_unreachable(g, aug)
            if spec.reorder:
                mapped = reorder_for_locality(g)  # ids: positions in `rows`
                ids = faiss.vector_to_array(mapped.id_map).astype(np.int64)
                faiss.copy_array_to_vector(rows[ids], mapped.id_map)
            else:
                g.ntotal = 0  # IndexIDMap wants an empty index to wrap; the ids are written below
                mapped = faiss.IndexIDMap(g)
                g.ntotal = mapped.ntotal = rows.size
                faiss.copy_array_to_vector(rows, mapped.id_map)
                g.this.disown()
                mapped.own_fields = True
            graphs.append(mapped)
            maxima.append(m)
        return cls(graphs, np.asarray(maxima, dtype=np.float32), scan_max)

    def to_bytes(self) -> bytes:
        """The index as .npz bytes: ``band_<i>`` (uint8, FAISS's format), ``max_norms``, ``scan_max``,
        ``format``."""
        import faiss

        buf = io.BytesIO()
        parts = {f"band_{i}": faiss.serialize_index(g) for i, g in enumerate(self._graphs)}
        np.savez(buf, format=np.int64(_FORMAT), max_norms=self._max_norms, scan_max=np.int64(self._scan_max), **parts)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, dim: int | None = None) -> BandedIndex:
        """A BandedIndex from :meth:`to_bytes` output (never unpickled); RecvecError for anything else,
        a newer format, or a dimension other than ``dim`` (when given)."""
        import faiss

        try:
            z = np.load(io.BytesIO(data), allow_pickle=False)
            fmt, norms, scan_max = int(z["format"]), z["max_norms"], int(z["scan_max"])
            blobs = [z[f"band_{i}"] for i in range(norms.size)]
        except (ValueError, OSError, KeyError, EOFError) as e:
            raise RecvecError(f"not a banded index file: {e}") from None
        if fmt > _FORMAT:
            raise RecvecError(f"banded index format {fmt} is newer than the {_FORMAT} this recvec reads")
        try:
            graphs = [faiss.deserialize_index(np.ascontiguousarray(b, dtype=np.uint8)) for b in blobs]
        except RuntimeError as e:
            raise RecvecError(f"cannot read a band of the banded index: {str(e).strip().splitlines()[-1]}") from None
        ix = cls(graphs, norms, scan_max)
        if dim is not None and ix.dim != int(dim):
            raise RecvecError(f"index dimension {ix.dim} does not match the expected dimension {dim}")
        return ix

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_bytes` to ``path``."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path, dim: int | None = None) -> BandedIndex:
        """Read a file written by :meth:`save` (RecvecError if missing or unreadable)."""
        p = Path(path)
        if not p.is_file():
            raise RecvecError(f"index file not found: {p}")
        return cls.from_bytes(p.read_bytes(), dim)

    def vectors(self) -> np.ndarray:
        """The indexed vectors in row order, (ntotal, dim) float32 (exactly as built)."""
        out = np.empty((self._n, self.dim), dtype=np.float32)
        for xb, ids in zip(self._xb, self._ids):
            out[ids] = xb[:, :self.dim]
        return out

    # -- search ----------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, exclude: Sequence[np.ndarray] | None = None,
               ef_search: int | None = None, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and scores (inner products) per query, (n, k) int64 and float32, best first.

        ``queries`` (n, dim); ``exclude[i]`` rows query i must not get; ``ef_search`` each band's
        efSearch before the exclusion widening (default: the index's, 64). RecvecError for bad
        arguments (the shared checks), ``nprobe`` (no inverted lists) or ef_search < k."""
        q = as_queries(queries, self.dim)
        excl = as_exclusions(exclude, q.shape[0], self._n)
        k = check_k(k, self._n, excl)
        if ef_search is not None or nprobe is not None:
            QueryParams(ef_search=ef_search, nprobe=nprobe).check(k, is_hnsw=True, nlist=None)
        nq = q.shape[0]
        ef = walk_ef(ef_search or int(self._hnsw[0].efSearch), k)
        if nq == 1:  # one query (what a service sends): the same steps on 1-D arrays
            return self._search_single(q, k, ef, excl)
        best_s = np.full((nq, k), -np.inf, dtype=np.float32)
        best_r = np.full((nq, k), -1, dtype=np.int64)
        if nq == 0:
            return best_r, best_s
        qz = np.zeros((nq, self.dim + 1), dtype=np.float32)  # the queries augmented with 0
        qz[:, :self.dim] = q
        qnorm = np.linalg.norm(q, axis=1)
        qunit = qz / np.where(qnorm > 0, qnorm, 1)[:, None]
        groups: dict[bytes, list[int]] = {}  # queries sharing an exclusion set share FAISS calls
        for i in range(nq):
            groups.setdefault(b"" if excl is None else excl[i].tobytes(), []).append(i)
        import faiss

        omp_before = faiss.omp_get_max_threads()
        try:
            for members in groups.values():
                idx = np.asarray(members, dtype=np.int64)
                ex = None if excl is None or not excl[members[0]].size else excl[members[0]]
                faiss.omp_set_num_threads(omp_before if len(members) >= _TEAM_MIN_QUERIES else 1)
                self._search_group(qz, qunit, qnorm, idx, k, ef, ex, best_r, best_s)
        finally:
            faiss.omp_set_num_threads(omp_before)
        return self._complete(q, k, excl, best_r, best_s)

    def _complete(self, q, k, excl, best_r, best_s) -> tuple[np.ndarray, np.ndarray]:
        """Queries that found fewer than k allowed rows in the bands, answered exactly."""
        short = np.flatnonzero((best_r < 0).any(axis=1))
        if short.size:
            from recvec.indexes.backends.faiss import brute_force_search

            r, s = brute_force_search(self.vectors(), q[short], k, None if excl is None else [excl[i] for i in short])
            best_r[short], best_s[short] = r, s
        return best_r, best_s

    def _search_single(self, q, k, ef, excl) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` for one query ``q`` (1, dim): its (1, k) rows and scores."""
        qnorm = np.linalg.norm(q, axis=1)[0]  # as the batch path computes it (the same stop decisions)
        qz = np.zeros(self.dim + 1, dtype=np.float32)
        qz[:self.dim] = q[0]
        qunit = qz / (qnorm if qnorm > 0 else np.float32(1))
        ex = None if excl is None or not excl[0].size else excl[0]
        rows, scores = self._search_one(qz, qunit, qnorm, k, ef, ex)
        if rows.size == k:
            return rows[None, :], scores[None, :]
        best_r = np.full((1, k), -1, dtype=np.int64)
        best_s = np.full((1, k), -np.inf, dtype=np.float32)
        best_r[0, :rows.size], best_s[0, :rows.size] = rows, scores
        return self._complete(q, k, excl, best_r, best_s)

    def _allowed(self) -> np.ndarray:
        """This thread's (n,) bool scratch, True everywhere between searches (a query sets its
        excluded rows False and restores them before it returns)."""
        mask = getattr(self._local, "allowed", None)
        if mask is None:
            mask = self._local.allowed = np.ones(self._n, dtype=bool)
        return mask

    def _search_one(self, qz, qunit, qnorm, k, ef, ex) -> tuple[np.ndarray, np.ndarray]:
        """One query, as :meth:`_search_group` answers it (the same units in the same order, the same
        stop, scores and merge, so batch and single calls agree), in as few numpy calls as it can:
        ``qz`` (dim + 1,) the query augmented with 0, ``qunit`` the same at norm 1, ``qnorm`` its
        norm (float32), ``ex`` sorted excluded rows or None. A walked band is searched without a
        selector for its best ``min(ef, kb + the excluded rows it holds)`` visited nodes, the excluded
        ones then dropped (the selector walk's answers: see ``ItemIndex._filter_beams``); a beam left
        with fewer than kb allowed rows walks again with the selector, and a band holding so many
        excluded rows that its beam would likely come back short (``_SELECT_FIRST``) walks with the
        selector at once. Returns (rows int64, scores float32), best first, k of them, or fewer
        when the bands held fewer than k allowed rows."""
        allowed = self._allowed()
        held = None
        if ex is not None:
            allowed[ex] = False
            held = np.bincount(self._unit_of[ex], minlength=len(self._units))  # excluded rows per unit
        walk = _Walk(ex)
        q = qz[:self.dim]
        br = bs = None
        try:
            for u, unit in enumerate(self._units):
                if bs is not None and bs.size == k and bs[-1] >= qnorm * unit.top:
                    break  # as in _search_group: no unit from here down can beat the k-th best
                ku = min(k, unit.size)
                m = 0 if held is None else int(held[u])
                if unit.scanned:
                    rows, scores = self._scan_one(unit, q, ku, m, allowed)
                else:
                    b = unit.bands[0]
                    rows = self._walk_one(b, qunit * self._max_norms[b], ku, min(ef, unit.size), m, allowed, walk)
                    scores = (self._xb[b][self._pos[rows]] * qz).sum(axis=-1)
                if bs is not None:
                    if bs.size == k and (not scores.size or scores.max() <= bs[-1]):
                        continue  # nothing here beats the k-th best (ties go to the rows found first)
                    rows, scores = np.concatenate([br, rows]), np.concatenate([bs, scores])
                order = np.argsort(-scores, kind="stable")[:k]
                br, bs = rows[order], scores[order]
        finally:
            if ex is not None:
                allowed[ex] = True
        return br, bs

    def _walk_one(self, b, qb, kb, ef, m, allowed, walk) -> np.ndarray:
        """Band ``b``'s walk for one query ``qb`` (dim + 1,) at ``ef`` (<= the band's size): its best
        ``kb`` allowed rows (int64, best first; fewer when the walk met fewer). ``m`` the excluded rows
        the band holds, ``allowed`` the (n,) mask of allowed rows, ``walk`` the query's selector."""
        import faiss

        p = self._walk_params.get(ef)
        if p is None:  # read-only during a search: shared, made once per ef
            p = self._walk_params.setdefault(ef, faiss.SearchParametersHNSW(efSearch=int(ef)))
        g = self._graphs[b]
        if not m or kb + m <= _SELECT_FIRST * ef:
            kk = min(ef, kb + m)
            found = _search_c(g, qb, kk, p)
            if found[-1] < 0:
                found = found[found >= 0]  # the walk met fewer than kk nodes: all it saw
            if not m:
                return found
            mine = found[allowed[found]]
            if mine.size >= kb or found.size < kk:
                return mine[:kb]
        found = _search_c(g, qb, kb, walk.params(ef))
        return found[found >= 0]

    def _search_group(self, qz, qunit, qnorm, idx, k, ef, ex, best_r, best_s) -> None:
        """Search queries ``idx`` (one exclusion set ``ex``, sorted rows or None) unit by unit and
        write their top k into ``best_r`` / ``best_s``. ``qz`` the queries augmented with 0
        (n, dim + 1), ``qunit`` the same scaled to norm 1, ``qnorm`` their norms (n,)."""
        import faiss

        allowed = self._allowed()
        p = faiss.SearchParametersHNSW()
        held = None
        if ex is not None:
            held = np.bincount(self._unit_of[ex], minlength=len(self._units))  # excluded rows per unit
            keep = excluding(ex)  # must outlive the searches
            p.sel = keep[1]
            allowed[ex] = False
        try:
            self._walk_group(qz, qunit, qnorm, idx, k, ef, p, held, allowed, best_r, best_s)
        finally:
            if ex is not None:
                allowed[ex] = True

    def _walk_group(self, qz, qunit, qnorm, idx, k, ef, p, held, allowed, best_r, best_s) -> None:
        """:meth:`_search_group`'s unit loop: ``p`` the walks' parameters (with the group's selector),
        ``held`` the excluded rows per unit (or None), ``allowed`` the (n,) mask of allowed rows."""
        gz, gu, gn = qz[idx], qunit[idx], qnorm[idx]
        br, bs = best_r[idx], best_s[idx]  # this group's top k so far (copies)
        for u, unit in enumerate(self._units):
            # a unit whose largest possible score cannot beat the k-th best so far cannot change the answer
            live = ~(bs[:, -1] >= gn * unit.top)
            if not live.any():
                break  # units come in decreasing M_b: none further down can either
            sub = None if live.all() else np.flatnonzero(live)
            qb = gz if sub is None else gz[sub]
            ku = min(k, unit.size)
            if unit.scanned:  # small bands: every score, exactly (cheaper than a walk)
                rows, scores = self._scan(unit, qb[:, :self.dim], ku, 0 if held is None else int(held[u]), allowed)
            else:
                b = unit.bands[0]
                p.efSearch = int(min(ef, unit.size))
                # the query scaled onto the band's sphere (|q| = M_b): the L2 order is the inner-product
                # order whatever the scale, and float32 distances keep more of its precision
                _, rows = self._graphs[b].search((gu if sub is None else gu[sub]) * self._max_norms[b], ku, params=p)
                ok = rows >= 0
                vec = self._xb[b][self._pos[np.where(ok, rows, 0)]]  # (queries, ku, dim + 1)
                scores = np.where(ok, (vec * qb[:, None, :]).sum(axis=-1), np.float32(-np.inf))  # last term: 0
            cur_r, cur_s = (br, bs) if sub is None else (br[sub], bs[sub])
            all_r = np.concatenate([cur_r, rows], axis=1)
            all_s = np.concatenate([cur_s, scores], axis=1)
            order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]  # best first; (-1, -inf) last
            pick = np.arange(order.shape[0])[:, None]
            if sub is None:
                br, bs = all_r[pick, order], all_s[pick, order]
            else:
                br[sub], bs[sub] = all_r[pick, order], all_s[pick, order]
        best_r[idx], best_s[idx] = br, bs

    def _scan(self, unit: _Unit, q: np.ndarray, ku: int, m: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``ku`` of a scanned unit for queries ``q`` (m, dim): (rows int64, scores float32)
        each (m, ku), -1 / -inf padded, as :meth:`_scan_one` gives them query by query."""
        rows = np.full((q.shape[0], ku), -1, dtype=np.int64)
        scores = np.full((q.shape[0], ku), -np.inf, dtype=np.float32)
        for j in range(q.shape[0]):
            r, s = self._scan_one(unit, q[j], ku, m, allowed)
            rows[j, :r.size], scores[j, :s.size] = r, s
        return rows, scores

    @staticmethod
    def _scan_one(unit: _Unit, q: np.ndarray, ku: int, m: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``ku`` allowed rows of a scanned unit for one query ``q`` (dim,): (rows int64,
        scores float32), in no particular order, fewer when the unit has fewer allowed rows; ``m``
        the unit's excluded rows (False in ``allowed``, the (n,) mask). One matrix-vector product,
        so batch and single calls agree."""
        s = unit.x @ q
        if m:
            s[~allowed[unit.ids]] = -np.inf
        top = np.argpartition(s, s.size - ku)[-ku:] if ku < s.size else np.arange(s.size)
        rows, scores = unit.ids[top], s[top]
        if unit.size - m < ku:  # too few allowed rows to fill ku: drop the excluded
            keep = scores > -np.inf
            rows, scores = rows[keep], scores[keep]
        return rows, scores

class _Walk:
    """One query's selector (its excluded rows kept out of a walk's results), made when first asked
    for: ``params(ef)`` the SearchParametersHNSW that walk with it (the selectors live as long as this)."""

    def __init__(self, ex: np.ndarray | None):
        self._ex, self._keep, self._params = ex, None, {}

    def params(self, ef: int) -> Any:
        import faiss

        if self._keep is None:
            self._keep = excluding(self._ex)
        p = self._params.get(ef)
        if p is None:
            p = self._params[ef] = faiss.SearchParametersHNSW(efSearch=int(ef))
            p.sel = self._keep[1]
        return p


def _search_c(graph: Any, q: np.ndarray, k: int, params: Any) -> np.ndarray:
    """One query's ``graph.search(q[None], k, params=params)`` labels (k,) int64, -1 padded, without
    the Python wrapper's checks and copies (``q`` contiguous float32 of the graph's dimension)."""
    import faiss

    dist = np.empty(k, dtype=np.float32)
    labels = np.empty(k, dtype=np.int64)
    graph.search_c(1, faiss.swig_ptr(q), k, faiss.swig_ptr(dist), faiss.swig_ptr(labels), params)
    return labels
