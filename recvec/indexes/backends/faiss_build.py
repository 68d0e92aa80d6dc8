"""Building FAISS indexes from an IndexSpec, and the HNSW graph work around them.

- ``build_index``: an inner-product FAISS index over (n, d) float32 vectors, trained when needed,
  ids = rows 0..n-1; HNSW graphs get cosine links in their free level-0 slots
  (``link_cosine_neighbours``, unless the spec says ``-plain``), are repaired (``link_unreachable``)
  and stored in breadth-first order (``reorder_for_locality``, an ``IndexIDMap`` over the permuted
  graph) unless the spec says ``-noreorder`` or ``-plain``.
- ``describe_index``: the manifest's description of a built index (class, parameters).
- the level-0 graph helpers: ``breadth_first_nodes``, ``unreachable_nodes``, ``link_cosine_neighbours``,
  ``link_unreachable``.

FAISS is imported inside the functions (``recvec --help`` must not load it).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from recvec.engine.models.text import l2_normalize
from recvec.errors import RecvecError, shown
from recvec.indexes.backends.base import check_vectors
from recvec.indexes.spec import (
    _POINTS_PER_CENTROID,
    DEFAULT_EF_SEARCH,
    IndexSpec,
    default_nprobe,
)

if TYPE_CHECKING:  # pragma: no cover
    import faiss


def check_metric(index: faiss.Index, what: str = "index") -> None:
    """Refuse anything that is not inner product (never silently L2)."""
    import faiss

    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise RecvecError(f"{what} uses FAISS metric {index.metric_type}, not inner product "
                          f"({faiss.METRIC_INNER_PRODUCT}); recvec only serves inner-product indexes")


def build_index(vectors: np.ndarray, spec: IndexSpec, *, seed: int = 0) -> faiss.Index:
    """An inner-product FAISS index over ``vectors`` (n, d), trained if needed; ids are rows 0..n-1."""
    import faiss

    if spec.kind == "hnsw-bands":
        raise RecvecError(f"index {shown(str(spec))} is built by its backend (FaissBackend.build), not as one "
                          "FAISS index")
    x = check_vectors(vectors)
    n, d = x.shape
    text = spec.factory_string(n, d)
    try:
        index = faiss.index_factory(d, text, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise RecvecError(f"FAISS cannot build index {shown(str(spec))} for dimension {d}: "
                          f"{_faiss_message(e)}") from None
    check_metric(index, f"index {shown(str(spec))}")
    hnsw = _find_hnsw(index)
    if hnsw is not None:
        if spec.kind == "hnsw":
            hnsw.efConstruction = spec.ef_construction
        hnsw.efSearch = max(hnsw.efSearch, DEFAULT_EF_SEARCH)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = default_nprobe(ivf.nlist)
        if ivf.nlist > n:
            raise RecvecError(f"index {shown(str(spec))} has {ivf.nlist} lists but only {n} vectors to train "
                              f"them; use fewer lists (e.g. IVF{max(1, n // _POINTS_PER_CENTROID)})")
    try:
        if not index.is_trained:
            _configure_trainers(index, seed)
            index.train(x)
        index.add(x)
    except RuntimeError as e:
        raise RecvecError(f"FAISS cannot train/fill index {shown(str(spec))} with {n} vectors: "
                          f"{_faiss_message(e)}") from None
    if index.ntotal != n:
        raise RecvecError(f"index {shown(str(spec))} holds {index.ntotal} vectors after adding {n}")
    if hnsw is not None:
        if spec.kind == "hnsw" and spec.cosine_links:
            link_cosine_neighbours(index, x, seed=seed)
        link_unreachable(index, x)
        if spec.kind == "hnsw" and spec.reorder:
            index = reorder_for_locality(index)
    return index


def reorder_for_locality(index: Any) -> Any:
    """The same HNSW graph with its nodes stored in breadth-first order from the entry point, as an
    ``IndexIDMap`` whose ids are the original rows (searches return rows as before).

    A graph walk reads a few hundred scattered vectors and neighbour lists; stored in FAISS's
    insertion order they sit all over a large index, so at 1M x 64 the walk is bound by memory
    latency. In breadth-first order (Coleman et al., "Graph Reordering for Cache-Efficient Near
    Neighbor Search", 2022) nodes linked in the graph sit near each other; where inner-product
    pruning leaves many nodes no walk reaches (small norms, see ``link_unreachable``: 79% of a
    1M x 64 synthetic build after the bounded repair), the reachable ones become one compact block.
    The graph, hence every answer, is unchanged. Measured at 1M x 64, filtered single queries, ef 32:
    ``recvec bench latency --synthetic 1000000 --dims 64 --indexes flat,hnsw,hnsw-noreorder`` 0.419
    -> 0.275 ms through ItemIndex (README); raw FAISS calls on one graph 0.34 -> 0.18 ms, where
    k-means cluster order gave 0.27 and reverse Cuthill-McKee 0.30.
    """
    import faiss

    inner = faiss.downcast_index(index)
    if not isinstance(inner, faiss.IndexHNSW):
        raise RecvecError(f"only a plain HNSW index can be reordered, not {type(inner).__name__}")
    hnsw = inner.hnsw
    n = int(inner.ntotal)
    order = np.arange(n, dtype=np.int64)
    if n > 1 and hnsw.entry_point >= 0:
        reached = breadth_first_nodes(hnsw)
        seen = np.zeros(n, dtype=bool)
        seen[reached] = True
        order = np.concatenate([reached, np.flatnonzero(~seen)])  # the unreachable rows last
        inner.permute_entries(order)  # new position i holds old row order[i]
    inner.ntotal = 0  # IndexIDMap wants an empty index to wrap; the ids are written below
    try:
        wrapped = faiss.IndexIDMap(inner)
    finally:
        inner.ntotal = n
    wrapped.ntotal = n
    faiss.copy_array_to_vector(order, wrapped.id_map)
    index.this.disown()  # the wrapper owns (and frees) the graph from now on, as read_index builds it
    wrapped.own_fields = True
    return wrapped


def _level0(hnsw: Any) -> tuple[np.ndarray, np.ndarray]:
    """A writable view of the graph's neighbour table and each node's level-0 slot positions."""
    import faiss

    table = faiss.rev_swig_ptr(hnsw.neighbors.data(), hnsw.neighbors.size())
    offsets = faiss.vector_to_array(hnsw.offsets).astype(np.int64)
    width = int(faiss.vector_to_array(hnsw.cum_nneighbor_per_level)[1])
    return table, offsets[:-1, None] + np.arange(width)


def breadth_first_nodes(hnsw: Any) -> np.ndarray:
    """The nodes a level-0 walk from the entry point can reach, in breadth-first order (int64)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import breadth_first_order

    table, slots = _level0(hnsw)
    n = slots.shape[0]
    if n == 0 or hnsw.entry_point < 0:
        return np.empty(0, dtype=np.int64)
    adj = table[slots]
    keep = adj >= 0
    indptr = np.r_[0, np.cumsum(keep.sum(axis=1))]
    graph = sp.csr_matrix((np.ones(indptr[-1], dtype=np.int8), adj[keep], indptr), shape=(n, n))
    order = breadth_first_order(graph, int(hnsw.entry_point), directed=True, return_predecessors=False)
    return order.astype(np.int64)


def unreachable_nodes(hnsw: Any) -> np.ndarray:
    """Nodes a level-0 walk from the entry point can never reach (no path of links to them)."""
    n = int(hnsw.levels.size())
    if n == 0 or hnsw.entry_point < 0:
        return np.empty(0, dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    seen[breadth_first_nodes(hnsw)] = True
    return np.flatnonzero(~seen)


#: Cosine neighbours written into each node's free level-0 slots by ``link_cosine_neighbours``.
COSINE_LINKS = 24
#: Rows of cosine neighbours searched at once (bounds the memory: rows x (COSINE_LINKS + 16) ids).
_COSINE_CHUNK = 65536


def link_cosine_neighbours(index: Any, vectors: np.ndarray, *, links: int = COSINE_LINKS, seed: int = 0) -> int:
    """Write each node's nearest cosine neighbours into its free level-0 slots; returns how many
    nodes stay unreachable.

    Under inner product HNSW's pruning keeps few links (a median of 4 of the 2*M slots on a 200k x 64
    ALS-like catalogue) and they point at large norms: half the nodes have no path from the entry
    point. A cosine k-NN graph has no hubs, so adding up to ``links`` of a node's nearest cosine
    neighbours (approximate: ``_cosine_knn_index`` over the normalised ``vectors``, (n, d) float32)
    to its free slots links every direction to its neighbourhood, whatever the norms; an orphan left
    after that is written into the free slots of its 5 nearest cosine neighbours (itself excluded). Existing links are
    kept, so the walk still climbs to large norms; scores stay inner products. What it bought and
    cost (reachable share, recall, coverage, build seconds) is measured by ``recvec bench latency``
    (README). ``seed`` seeds the cosine index's sample and k-means. Deterministic up to FAISS's
    multi-threaded graph builds.
    """
    hnsw = _find_hnsw(index)
    if hnsw is None or links <= 0:
        return 0
    unit = l2_normalize(vectors)
    n = unit.shape[0]
    knn = _cosine_knn_index(unit, seed)
    want = min(n, links + 16)  # a few more than needed: some are already linked
    table, slots = _level0(hnsw)
    for s in range(0, n, _COSINE_CHUNK):
        rows = np.arange(s, min(n, s + _COSINE_CHUNK))
        _, nb = knn.search(unit[rows], want)
        _append_new(table, slots, rows, nb, links)
    orphans = unreachable_nodes(hnsw)
    if orphans.size:  # the reverse: each orphan into the free slots of its nearest cosine neighbours
        _, nb = knn.search(unit[orphans], 5)
        hosts = np.where(nb == orphans[:, None], -1, nb)
        ok = hosts >= 0
        adj = table[slots]
        _fill_free_slots(table, slots, adj, hosts[ok], np.broadcast_to(orphans[:, None], hosts.shape)[ok])
        orphans = unreachable_nodes(hnsw)
    return int(orphans.size)


def _cosine_knn_index(unit: np.ndarray, seed: int) -> Any:
    """A coarse, fast index for approximate cosine neighbours of unit rows (n, d): IVF-Flat with
    ~2*sqrt(n) lists trained (``seed``) on a sample, 8 lists probed; linking needs near neighbours,
    not exact ones, and this is several times cheaper than a second HNSW build."""
    import faiss

    n, d = unit.shape
    nlist = max(1, min(int(2 * np.sqrt(n)), n // _POINTS_PER_CENTROID))
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = int(seed)
    rng = np.random.default_rng(seed)
    sample = unit if n <= 64 * nlist else unit[np.sort(rng.choice(n, 64 * nlist, replace=False))]
    ivf.train(sample)
    ivf.add(unit)
    ivf.nprobe = min(nlist, 8)
    return ivf  # FAISS's Python wrapper keeps the quantizer alive with it


def _append_new(table: np.ndarray, slots: np.ndarray, rows: np.ndarray, nb: np.ndarray, links: int) -> None:
    """Append up to ``links`` of ``nb[i]`` (neighbour rows, -1 padded) to node ``rows[i]``'s level-0
    list, skipping itself and nodes it lists already, while free slots last."""
    adj = table[slots[rows]]
    lens = (adj >= 0).sum(axis=1)
    drop = (nb < 0) | (nb == rows[:, None])
    for j in range(int(lens.max(initial=0))):
        has = np.flatnonzero(lens > j)
        drop[has] |= nb[has] == adj[has, j:j + 1]
    nb = np.take_along_axis(nb, np.argsort(drop, axis=1, kind="stable"), axis=1)  # kept ones first
    count = np.minimum((~drop).sum(axis=1), np.minimum(slots.shape[1] - lens, links))
    r, c = np.nonzero(np.arange(nb.shape[1])[None, :] < count[:, None])
    table[slots[rows[r], lens[r] + c]] = nb[r, c]


def link_unreachable(index: Any, vectors: np.ndarray | None = None, *, max_links: int = 3,
                     max_rounds: int = 8) -> int:
    """Give every unreachable node of an HNSW index in-links; returns how many stay unreachable.

    HNSW's neighbour pruning under inner product leaves some nodes with no in-links at all (small
    norm vectors are never anyone's best neighbour): 3.8% of ML-1M ALS items, 4.5% of the test
    data. No efSearch can return them, which matters once a user's history is excluded and the
    answer lies deeper. Each such node is written into free level-0 slots (FAISS keeps 2*M, mostly
    empty) of up to ``max_links`` reachable nodes: first its own out-neighbours, then (for nodes
    whose only neighbour is a full hub) the reachable nodes an HNSW search for its vector
    (``vectors``, all n rows; else reconstructed from the index) returns, at most max(1000, n/50)
    searches per round. The graph is saved with the index: this runs once per build (and after
    ``ItemIndex.add``). On hub-dominated data (tens of % unreachable) some nodes may remain.
    """
    hnsw = _find_hnsw(index)
    if hnsw is None:
        return 0
    table, slots = _level0(hnsw)
    orphans = unreachable_nodes(hnsw)
    for _ in range(max_rounds):
        if orphans.size == 0:
            break
        adj = table[slots]
        reachable = np.ones(slots.shape[0], dtype=bool)
        reachable[orphans] = False
        reachable &= adj[:, -1] < 0  # usable sources: reachable and with a free slot
        cand = adj[orphans]
        ok = (cand >= 0) & reachable[np.maximum(cand, 0)]
        ok &= np.cumsum(ok, axis=1) <= max_links
        rows, cols = np.nonzero(ok)
        linked = _fill_free_slots(table, slots, adj, cand[rows, cols], orphans[rows])
        stuck = np.setdiff1d(orphans, linked)[: max(1000, slots.shape[0] // 50)]  # bounds the searches
        if stuck.size:
            import faiss

            try:
                q = vectors[stuck] if vectors is not None else index.reconstruct_batch(stuck)
            except RuntimeError:  # storage that cannot reconstruct: keep what the first pass did
                q = None
            if q is not None:
                params = _hnsw_params(index, faiss.SearchParametersHNSW(efSearch=128))
                _, found = index.search(np.ascontiguousarray(q, dtype=np.float32), 32, params=params)
                ok = (found >= 0) & reachable[np.maximum(found, 0)]
                ok &= np.cumsum(ok, axis=1) <= max_links
                rows, cols = np.nonzero(ok)
                adj = table[slots]
                linked = np.union1d(linked, _fill_free_slots(table, slots, adj, found[rows, cols], stuck[rows]))
        if linked.size == 0:
            break
        orphans = unreachable_nodes(hnsw)
    return int(orphans.size)


def _fill_free_slots(table: np.ndarray, slots: np.ndarray, adj: np.ndarray, sources: np.ndarray,
                     targets: np.ndarray) -> np.ndarray:
    """Add links sources[i] -> targets[i] into the sources' free level-0 slots (in order, while
    slots last); returns the targets that got at least one link."""
    if sources.size == 0:
        return np.empty(0, dtype=np.int64)
    order = np.argsort(sources, kind="stable")
    src, dst = sources[order], targets[order]
    starts = np.r_[0, np.flatnonzero(np.diff(src)) + 1]
    rank = np.arange(src.size) - np.repeat(starts, np.diff(np.r_[starts, src.size]))
    pos = (adj[src] >= 0).sum(axis=1) + rank  # lists are contiguous, -1 padded at the end
    fits = pos < slots.shape[1]
    table[slots[src[fits], pos[fits]]] = dst[fits]
    return np.unique(dst[fits])


def _hnsw_params(index: Any, params: Any) -> Any:
    import faiss

    if isinstance(faiss.downcast_index(index), faiss.IndexPreTransform):
        return faiss.SearchParametersPreTransform(index_params=params)
    return params


def _configure_trainers(index: Any, seed: int) -> None:
    """Seed every k-means FAISS exposes (IVF lists, PQ codebooks), silence its small-n warnings and
    skip polysemous training.

    FAISS prints one warning per k-means run when n < 39 points per centroid (hundreds of lines for
    PQ); small catalogues are a normal use here, so that threshold is lowered (n >= k still holds).
    index_factory turns on polysemous training for PQ codes, which only serves Hamming-threshold
    search (off by default) and takes ~50 s for 5,000 vectors; it is switched off.
    """
    import faiss

    parts = [faiss.downcast_index(index)]
    if isinstance(parts[0], faiss.IndexPreTransform):
        parts.append(faiss.downcast_index(parts[0].index))
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        parts.append(ivf)
    for part in parts:
        if hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False
        for cp in (getattr(part, "cp", None), getattr(getattr(part, "pq", None), "cp", None)):
            if cp is not None:
                cp.seed = int(seed)
                cp.min_points_per_centroid = 1


def _find_hnsw(index: Any) -> Any:
    """The HNSW graph object of an HNSW index (also inside an IndexIDMap or IndexPreTransform), else None."""
    import faiss

    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexIDMap):
        idx = faiss.downcast_index(idx.index)
    if isinstance(idx, faiss.IndexPreTransform):
        idx = faiss.downcast_index(idx.index)
    return idx.hnsw if isinstance(idx, faiss.IndexHNSW) else None


def _faiss_message(e: Exception) -> str:
    """The useful line of a FAISS C++ exception (drops the file/line noise)."""
    text = str(e)
    m = re.search(r"Error: '(.*?)' failed(?:: (.*))?", text, re.S)
    if m:
        return (m.group(2) or m.group(1)).strip().splitlines()[0]
    return text.strip().splitlines()[-1] if text.strip() else type(e).__name__


def describe_index(index: Any) -> dict[str, Any]:
    """Resolved parameters of a built index (kind, ntotal, M, efSearch, nlist, nprobe, ...); an HNSW
    index also gets ``reachable_share``: the share of its nodes a level-0 walk from the entry point
    can reach (``breadth_first_nodes``; the rest no search returns)."""
    import faiss

    core = faiss.downcast_index(index)
    reordered = isinstance(core, faiss.IndexIDMap)  # rows stored in graph order (reorder_for_locality)
    if reordered:
        core = faiss.downcast_index(core.index)
    out: dict[str, Any] = {"ntotal": int(index.ntotal), "dim": int(index.d), "faiss_class": type(core).__name__}
    if reordered:
        out["reordered"] = True
    hnsw = _find_hnsw(index)
    if hnsw is not None:
        n = int(hnsw.levels.size())
        out.update(M=int(hnsw.nb_neighbors(1)), ef_construction=int(hnsw.efConstruction),
                   ef_search=int(hnsw.efSearch),
                   reachable_share=breadth_first_nodes(hnsw).size / n if n else 1.0)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        out.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe))
    return out
