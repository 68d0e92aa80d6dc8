"""Exact inner-product top-k outside FAISS's own search: the blocked batch path of flat indexes
(``search_blocked``) and the numpy reference (``brute_force_search``).

``search_blocked`` is what ``IndexFlatIP.search`` does internally for batches -- scores of (query
chunk x item block) by one BLAS matmul, FAISS's C++ top-k heaps updated per block -- with each
query's excluded rows set to -inf in the block, so the exclusion is free. The matmul is numpy's;
when numpy's BLAS runs on one thread (the batch-search stage of the thread policy gives it one,
as the query-time user vectors are many small solves), the queries are split over ``threads()``
Python threads instead, each with its own chunks and heaps (numpy's matmul and FAISS's heaps
release the GIL), so the matmul still uses every core.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recvec.engine.recommender import top_k_row
from recvec.errors import RecvecError
from recvec.indexes.backends.base import as_exclusions, as_queries, check_k

#: Items per block and the bound on one block of scores (queries x items floats). Chosen by
#: measurement: blocks of this size, and a range of sizes around it, beat both raw
#: IndexFlatIP.search and the selector path on batch throughput.
_BLOCK_ITEMS = 16_384
_BLOCK_FLOATS = 1 << 24
#: Below this many multiply-adds (queries x items x dims) a batch stays on the calling thread
#: (a thread pool's start and hand-offs cost more than they save).
_SPLIT_MIN_MACS = 1 << 26

_numpy_blas: list = []  # threadpoolctl's controller of numpy's own BLAS (None: not found), made once


def faiss_vectors(index, ntotal: int, dim: int) -> np.ndarray:
    """The stored vectors of a flat FAISS index as a (ntotal, dim) float32 view (no copy)."""
    import faiss

    return faiss.rev_swig_ptr(index.get_xb(), ntotal * dim).reshape(ntotal, dim)


def _numpy_blas_threads() -> int:
    """The thread count numpy's BLAS runs a matmul on now (1 when it cannot be told)."""
    if not _numpy_blas:
        from threadpoolctl import ThreadpoolController

        libs = [c for c in ThreadpoolController().lib_controllers
                if c.user_api == "blas" and "numpy" in str(c.filepath)]
        _numpy_blas.append(libs[0] if libs else None)
    lib = _numpy_blas[0]
    return max(1, int(lib.num_threads)) if lib is not None else 1


def exact_parallelism() -> int:
    """Python threads a large exact batch is split over: ``threads()`` when numpy's BLAS runs on one
    thread, else 1 (its matmul is threaded already)."""
    from recvec.threads import threads

    return threads() if _numpy_blas_threads() == 1 else 1


def search_blocked(x: np.ndarray, q: np.ndarray, k: int, excl: Sequence[np.ndarray] | None,
                   rows: np.ndarray, scores: np.ndarray) -> None:
    """Exact top-k of queries ``q`` (nq, d) float32 over items ``x`` (n, d) float32, ``excl[i]``
    (item rows, or None) never returned to query i, written into ``rows`` (nq, k) int64 and
    ``scores`` (nq, k) float32, best first. Every score is computed; only the masked ones drop."""
    nq = q.shape[0]
    if excl is not None:
        sizes = np.fromiter((a.size for a in excl), dtype=np.int64, count=nq)
        ex = (np.repeat(np.arange(nq, dtype=np.int64), sizes), np.concatenate(excl),
              np.concatenate([[0], np.cumsum(sizes)]))
    else:
        ex = None
    parts = min(exact_parallelism(), nq) if nq * x.shape[0] * x.shape[1] >= _SPLIT_MIN_MACS else 1
    if parts <= 1:
        _blocked_range(x, q, k, ex, rows, scores, 0, nq)
    else:
        from concurrent.futures import ThreadPoolExecutor

        cuts = np.linspace(0, nq, parts + 1).astype(np.int64)
        with ThreadPoolExecutor(parts, thread_name_prefix="recvec-exact") as pool:
            futures = [pool.submit(_blocked_range, x, q, k, ex, rows, scores, int(cuts[i]), int(cuts[i + 1]))
                       for i in range(parts)]
            for f in futures:
                f.result()
    # a -inf never enters a heap, so a query short of k allowed rows would show -1 (k is checked
    # against the exclusion sizes, so only non-finite scores could cause it): answer those exactly
    short = np.flatnonzero((rows < 0).any(axis=1))
    if short.size:
        r, s_ = brute_force_search(x, q[short], k, None if excl is None else [excl[i] for i in short])
        rows[short], scores[short] = r, s_


def _blocked_range(x, q, k: int, ex, rows, scores, begin: int, end: int) -> None:
    """Queries ``begin:end`` of ``search_blocked``, in chunks, on this thread (FAISS's heaps on this
    thread alone: its OpenMP team waking between BLAS calls fights the BLAS threads for the cores;
    measured at 100k x 64, 2 cores: 163 vs 184 ms per 1,000 queries. omp_set_num_threads sets the
    calling thread's own OpenMP setting, so other threads' searches are unaffected)."""
    import faiss

    ntotal = x.shape[0]
    bx = min(ntotal, _BLOCK_ITEMS)
    bq = max(1, min(end - begin, _BLOCK_FLOATS // bx))
    nblocks = -(-ntotal // bx)
    omp_before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for qs in range(begin, end, bq):
            qe = min(end, qs + bq)
            heaps = faiss.float_minheap_array_t()  # a min-heap per query keeps the k largest scores
            heaps.k, heaps.nh = k, qe - qs
            heaps.val, heaps.ids = faiss.swig_ptr(scores[qs:qe]), faiss.swig_ptr(rows[qs:qe])
            heaps.heapify()
            if ex is not None:  # this chunk's (query, row) exclusions, grouped by item block
                ex_q, ex_row, starts = ex
                lo, hi = starts[qs], starts[qe]
                cq, cr = ex_q[lo:hi] - qs, ex_row[lo:hi]
                if nblocks > 1:
                    block_of = (cr // bx).astype(np.uint16 if nblocks < 1 << 16 else np.int64)
                    order = np.argsort(block_of, kind="stable")  # a radix sort for uint16
                    cq, cr = cq[order], cr[order]
                    bounds = np.searchsorted(block_of[order], np.arange(nblocks + 1))
                else:
                    bounds = np.array([0, cr.size])
            for b in range(nblocks):
                xs, xe = b * bx, min(ntotal, (b + 1) * bx)
                block = q[qs:qe] @ x[xs:xe].T
                if ex is not None and bounds[b + 1] > bounds[b]:
                    sl = slice(bounds[b], bounds[b + 1])
                    block.ravel()[cq[sl] * (xe - xs) + (cr[sl] - xs)] = -np.inf
                heaps.addn(xe - xs, faiss.swig_ptr(block), xs)
            heaps.reorder()
    finally:
        faiss.omp_set_num_threads(omp_before)


def brute_force_search(item_vectors: np.ndarray, queries: np.ndarray, k: int,
                       exclude: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reference exact top-k by inner product in numpy (float64 scores, ties broken by lower row)."""
    v = np.asarray(item_vectors, dtype=np.float64)
    if v.ndim != 2:
        raise RecvecError(f"item vectors must be (n, d), got shape {v.shape}")
    q = as_queries(queries, v.shape[1]).astype(np.float64)
    excl = as_exclusions(exclude, q.shape[0], v.shape[0])
    k = check_k(k, v.shape[0], excl)
    rows = np.empty((q.shape[0], k), dtype=np.int64)
    scores = np.empty((q.shape[0], k), dtype=np.float32)
    for start in range(0, q.shape[0], 1024):
        s = q[start:start + 1024] @ v.T
        if excl is not None:
            for j in range(s.shape[0]):
                s[j, excl[start + j]] = -np.inf
        for j in range(s.shape[0]):
            top = top_k_row(s[j], k)
            rows[start + j], scores[start + j] = top, s[j][top]
    return rows, scores
