"""Every baseline recvec is measured against, for the latency and the accuracy benchmarks.

Latency (:func:`measure_latency_baseline`, on a :class:`~recvec.benchmarks.datasets.Prepared`
catalogue: the same vectors and users as recvec's indexes):

- ``matmul``: GFLOP/s of a large float32 matrix multiply (numpy's BLAS), the machine's peak;
- ``raw-flat``: raw ``faiss.IndexFlatIP.search``, no exclusion;
- ``blas-exact``: numpy BLAS scores + argpartition with the history excluded (recvec's evaluation path);
- ``implicit-exact``: implicit's exact ``recommend`` (batch and single calls), its user factors set
  to our query vectors;
- ``implicit-recalc``: ``recommend(..., recalculate_user=True)`` (its own fold-in), timed also
  alternately, user by user, with recvec's full path;
- ``implicit-faiss``: implicit's ``FaissAlternatingLeastSquares`` wrapper at its default IVF
  settings (IMPLICIT_NLIST, IMPLICIT_NPROBE).

Accuracy (:func:`implicit_exact_topk`, :func:`implicit_faiss_topk`): implicit's exact
``recommend`` and the same FAISS wrapper for a fitted ALS model.

implicit runs with its BLAS pool held to one thread. Each latency baseline returns ``(meta,
arrays)`` to store: ``meta`` JSON-able scalars (seconds, counts, a ``what`` description),
``arrays`` numpy arrays (ids, per-call seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from recvec.benchmarks import runner
from recvec.benchmarks.datasets import Prepared
from recvec.engine.evaluate import topk_excluding
from recvec.engine.models.als import ALSConfig, ALSModel, to_implicit
from recvec.indexes.backends.faiss import ItemIndex

#: implicit's FaissAlternatingLeastSquares defaults.
IMPLICIT_NLIST, IMPLICIT_NPROBE = 400, 20
#: The latency baselines, in the order they run.
LATENCY_BASELINES = ("matmul", "raw-flat", "blas-exact", "implicit-exact", "implicit-recalc", "implicit-faiss")


class Timing(Protocol):
    """How a latency baseline is timed (``LatencyConfig`` is one): ``k`` results per query, batch
    calls best of ``repeats``, ``single`` queries one per call after ``warmup`` untimed calls."""

    k: int
    single: int
    repeats: int
    warmup: int


# ------------------------------------------------------------------------------- building blocks


def matmul_gflops(n: int = 2048, repeats: int = 3, seed: int = 0) -> dict:
    """GFLOP/s of an n x n x n float32 matrix multiply (numpy's BLAS), best of ``repeats``:
    ``{"n", "seconds", "gflops", "threads"}``. When the exact path splits its batches over Python
    threads (numpy's BLAS on one thread: ``faiss_exact.exact_parallelism``), as many matmuls also run
    at once on as many threads (``gflops_split``, ``split_threads``; ``gflops_one_call``: the single
    call) and ``gflops`` is the larger: the peak the exact path can reach."""
    from recvec.indexes.backends.faiss_exact import exact_parallelism

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up (thread pool start, page faults)
    best = min(runner.time_batch(lambda: a @ b, repeats))
    out = {"n": n, "seconds": best, "gflops": 2.0 * n ** 3 / best / 1e9, "threads": runner.threads()}
    parts = exact_parallelism()
    if parts > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(parts) as pool:
            def split():
                list(pool.map(lambda _: a @ b, range(parts)))

            split()
            split_s = min(runner.time_batch(split, repeats))
        out.update(gflops_one_call=out["gflops"], split_threads=parts, gflops_split=parts * 2.0 * n ** 3 / split_s / 1e9)
        out["gflops"] = max(out["gflops_one_call"], out["gflops_split"])
    return out


def csr_rows(histories: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Histories (item rows per user) as a binary users x n_items CSR matrix (float32), rows in order."""
    rows = [np.unique(np.asarray(h, dtype=np.int64)) for h in histories]
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])].astype(np.int64)
    indices = np.concatenate(rows).astype(np.int32) if rows else np.empty(0, np.int32)
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(histories), n_items))


def implicit_faiss_wrapper(model):
    """implicit's FaissAlternatingLeastSquares wrapper (``implicit.ann.faiss.FaissModel``) around a
    fitted implicit ALS ``model``, at its defaults (IVF nlist IMPLICIT_NLIST, nprobe
    IMPLICIT_NPROBE, CPU). ``model.fit`` is disabled so the wrapper's ``fit`` keeps the model's
    factors and only builds its index (call it with any user-items matrix). The catalogue needs
    at least IMPLICIT_NLIST items."""
    from implicit.ann.faiss import FaissModel

    model.fit = lambda *a, **kw: None  # keep the fitted factors; FaissModel.fit then builds its index
    return FaissModel(model, approximate_similar_items=False, approximate_recommend=True,
                      nlist=IMPLICIT_NLIST, nprobe=IMPLICIT_NPROBE, use_gpu=False)


def _implicit(p: Prepared):
    """implicit's ALS model with our item vectors and our query vectors as its user factors, and the
    histories as its user-items matrix."""
    cfg = ALSConfig(factors=int(p.vectors.shape[1]), regularization=p.regularization, alpha=p.alpha)
    model = to_implicit(ALSModel(cfg, np.ascontiguousarray(p.queries), np.ascontiguousarray(p.vectors)))
    return model, csr_rows(p.histories, len(p.vectors))


# ------------------------------------------------------------------------------- latency


def raw_flat(p: Prepared, cfg: Timing) -> tuple[dict, dict]:
    """Raw ``faiss.IndexFlatIP.search`` over the vectors (no exclusion): batch and single queries
    (single: the faster of FAISS's OpenMP threads and one thread)."""
    import faiss

    t0 = time.perf_counter()
    index = faiss.IndexFlatIP(p.vectors.shape[1])
    index.add(p.vectors)
    build_s = time.perf_counter() - t0
    out = {}
    index.search(p.queries[:8], cfg.k)  # untimed warm-up
    batch_s = runner.time_batch(lambda: out.setdefault("ids", index.search(p.queries, cfg.k)[1]), cfg.repeats)
    n1 = min(cfg.single, len(p.queries))
    one = lambda i: index.search(p.queries[i:i + 1], cfg.k)  # noqa: E731
    single_default = runner.time_each(one, n1, warmup=cfg.warmup)
    # one query per call: FAISS's OpenMP team can cost more than it brings (measured 4x slower on a busy
    # 2-core machine at 100k x 384); time it with one thread too and keep the faster
    threads_before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        single_one = runner.time_each(one, n1, warmup=cfg.warmup)
    finally:
        faiss.omp_set_num_threads(threads_before)
    best_one = n1 and np.median(single_one) < np.median(single_default)
    single = single_one if best_one else single_default
    return ({"batch_s": batch_s, "nq": len(p.queries), "nsingle": n1, "build_s": build_s, "filtered": False,
             "single_threads": 1 if best_one else threads_before,
             "single_p50_ms_by_threads": {str(threads_before): float(np.median(single_default) * 1e3) if n1 else None,
                                          "1": float(np.median(single_one) * 1e3) if n1 else None},
             "what": f"faiss.IndexFlatIP.search, no exclusion (single queries: the faster of "
                     f"{threads_before} and 1 OpenMP threads, here {1 if best_one else threads_before})"},
            {"ids": out["ids"].astype(np.int32), "single_s": single, "single_default_s": single_default,
             "single_1thread_s": single_one})


def blas_exact(p: Prepared, cfg: Timing) -> tuple[dict, dict]:
    """Exact filtered top-k the way recvec's evaluation scores: chunks of queries x all items by BLAS
    matmul, history set to -inf, argpartition (``recvec.engine.evaluate.topk_excluding``)."""
    x_t = p.vectors.T  # a transposed view: BLAS reads it without a copy
    nq = len(p.queries)
    chunk = max(1, min(nq, (1 << 26) // max(1, len(p.vectors))))
    out = np.empty((nq, cfg.k), dtype=np.int64)

    def scores_top(s, e):
        sc = p.queries[s:e] @ x_t
        for j, hist in enumerate(p.histories[s:e]):
            sc[j, hist] = -np.inf
        return topk_excluding(sc, cfg.k)[0]

    def batch():
        for s in range(0, nq, chunk):
            out[s:s + chunk] = scores_top(s, min(nq, s + chunk))

    scores_top(0, min(nq, 8))  # untimed warm-up
    batch_s = runner.time_batch(batch, cfg.repeats)
    n1 = min(cfg.single, nq)
    single = runner.time_each(lambda i: scores_top(i, i + 1), n1, warmup=cfg.warmup)
    return ({"batch_s": batch_s, "nq": nq, "nsingle": n1, "filtered": True, "chunk": chunk,
             "what": f"numpy BLAS scores of {chunk}-query chunks x all items, history -inf, argpartition "
                     "(recvec.engine.evaluate's exact path)"},
            {"ids": out.astype(np.int32), "single_s": single})


def implicit_exact(p: Prepared, cfg: Timing) -> tuple[dict, dict]:
    """implicit's exact ``recommend`` with our query vectors as user factors, history filtered:
    batch calls (its default threads) and one user per call (num_threads=1)."""
    from threadpoolctl import threadpool_limits

    model, ui = _implicit(p)
    users = np.arange(len(p.queries))
    chunk = max(1, min(len(users), (1 << 26) // max(1, len(p.vectors))))
    rows = [ui[i] for i in range(len(users))]
    out = np.empty((len(users), cfg.k), dtype=np.int64)

    def batch():
        for s in range(0, len(users), chunk):
            out[s:s + chunk] = model.recommend(users[s:s + chunk], ui[s:s + chunk], N=cfg.k,
                                               filter_already_liked_items=True)[0]

    n1 = min(cfg.single, len(users))
    with threadpool_limits(1, "blas"):
        batch_s = runner.time_batch(batch, cfg.repeats)  # implicit's default: all cores
        model.num_threads = 1  # its fastest setting for one query per call
        single = runner.time_each(lambda i: model.recommend(int(i), rows[i], N=cfg.k), n1, warmup=cfg.warmup)
        th = runner.threads()
    return ({"batch_s": batch_s, "nq": len(users), "nsingle": n1, "filtered": True, "chunk": chunk,
             "implicit_threads": f"batch {runner.cpus_available()}, single 1", "threads_in_call": th,
             "what": "implicit AlternatingLeastSquares.recommend (exact), user factors = our query vectors"},
            {"ids": out.astype(np.int32), "single_s": single})


def implicit_recalc(p: Prepared, cfg: Timing) -> tuple[dict, dict]:
    """implicit's ``recommend(userid, user_items[userid], recalculate_user=True)``, one call per
    user (at its default num_threads=0 for a few calls, then num_threads=1), and alternately with
    recvec's full path (arrays ``paired_implicit_s``, ``paired_recvec_s``)."""
    from threadpoolctl import threadpool_limits

    model, ui = _implicit(p)
    rows = [ui[i] for i in range(len(p.queries))]
    n1 = min(cfg.single, len(rows))
    ids = np.empty((n1, cfg.k), dtype=np.int64)

    def one(i):
        ids[i] = model.recommend(int(i), rows[i], N=cfg.k, recalculate_user=True)[0]

    with threadpool_limits(1, "blas"):
        # implicit's default num_threads=0 starts an OpenMP team for every call (16 ms per call on
        # ML-1M on a 2-core machine); num_threads=1 is its fastest single-call setting: compare to that
        n0 = min(n1, 30)
        default_threads = runner.time_each(one, n0, warmup=min(cfg.warmup, n0))
        model.num_threads = 1
        single = runner.time_each(one, n1, warmup=cfg.warmup)
        th = runner.threads()
        paired = paired_with_recvec(p, cfg, one, n1)
    return ({"nsingle": n1, "filtered": True, "threads_in_call": th, "implicit_threads": 1,
             "default_threads_p50_ms": float(np.median(default_threads) * 1e3) if n0 else None,
             "default_threads_calls": n0,
             "what": "implicit recommend(userid, user_items[userid], recalculate_user=True), one call per user, "
                     "num_threads=1"},
            {"ids": ids.astype(np.int32), "single_s": single, **paired})


def paired_with_recvec(p: Prepared, cfg: Timing, implicit_one: Callable[[int], object], n: int) -> dict:
    """implicit's call ``implicit_one(i)`` and recvec's full path over an exact flat index, timed
    alternately user by user for the first ``n`` users (which goes first alternates too): drifts
    in machine load -- common on a shared 2-core machine, where units minutes apart can differ by
    1.5x -- then fall on both sides alike. Returns per-call seconds, arrays of shape (n,)."""
    import faiss

    k = cfg.k
    flat = faiss.IndexFlatIP(p.vectors.shape[1])
    flat.add(np.ascontiguousarray(p.vectors, dtype=np.float32))
    rec = p.recommender(ItemIndex(flat))
    ext = [p.ids[h] for h in p.histories[:n]]

    def ours(i):
        rec.recommend(ext[i], k)

    imp_s, ours_s = np.empty(n), np.empty(n)
    order = ((implicit_one, imp_s), (ours, ours_s))
    with runner.gc_paused():
        for i in range(min(cfg.warmup, n)):
            implicit_one(i)
            ours(i)
        clock = time.perf_counter
        for i in range(n):
            for fn, out in (order if i % 2 == 0 else order[::-1]):
                t0 = clock()
                fn(i)
                out[i] = clock() - t0
    return {"paired_implicit_s": imp_s, "paired_recvec_s": ours_s}


def implicit_faiss(p: Prepared, cfg: Timing) -> tuple[dict, dict]:
    """implicit's FAISS wrapper (:func:`implicit_faiss_wrapper`) over our vectors: its build time and
    size, batch and single-call recommend (it over-fetches k + history, then filters). Skipped
    (``meta["skipped"]``) for catalogues of fewer than IMPLICIT_NLIST items."""
    from threadpoolctl import threadpool_limits

    if len(p.vectors) < IMPLICIT_NLIST:
        return {"skipped": f"{len(p.vectors)} items < its nlist {IMPLICIT_NLIST}"}, {}
    model, ui = _implicit(p)
    fm = implicit_faiss_wrapper(model)
    rows = [ui[i] for i in range(len(p.queries))]
    users = np.arange(len(p.queries))
    out = {}
    with threadpool_limits(1, "blas"):
        t0 = time.perf_counter()
        fm.fit(ui, show_progress=False)
        build_s = time.perf_counter() - t0
        batch_s = runner.time_batch(lambda: out.setdefault("ids", fm.recommend(users, ui, N=cfg.k)[0]), cfg.repeats)
        n1 = min(cfg.single, len(users))
        single = runner.time_each(lambda i: fm.recommend(int(i), rows[i], N=cfg.k), n1, warmup=cfg.warmup)
        th = runner.threads()
    ids = np.asarray(out["ids"], dtype=np.int64)
    import faiss

    return ({"batch_s": batch_s, "nq": len(users), "nsingle": n1, "build_s": build_s, "filtered": True,
             "nlist": IMPLICIT_NLIST, "nprobe": IMPLICIT_NPROBE, "threads_in_call": th,
             "index_bytes": int(faiss.serialize_index(fm.recommend_index).size),
             "what": f"implicit.approximate_als.FaissAlternatingLeastSquares defaults (IVF nlist {IMPLICIT_NLIST}, "
                     f"nprobe {IMPLICIT_NPROBE}): over-fetch k + history, then filter"},
            {"ids": ids.astype(np.int32), "single_s": single})


_LATENCY = {"raw-flat": raw_flat, "blas-exact": blas_exact, "implicit-exact": implicit_exact,
            "implicit-recalc": implicit_recalc, "implicit-faiss": implicit_faiss}


def measure_latency_baseline(name: str, p: Prepared, cfg: Timing, *, matmul_n: int = 2048) -> tuple[dict, dict]:
    """Measure the latency baseline ``name`` (one of LATENCY_BASELINES) on ``p``: ``(meta, arrays)``
    to store. ``matmul_n`` is the matrix size of ``matmul``. KeyError for an unknown name."""
    if name == "matmul":
        return matmul_gflops(matmul_n), {}
    return _LATENCY[name](p, cfg)


# ------------------------------------------------------------------------------- accuracy


def implicit_exact_topk(als: ALSModel, users: np.ndarray, user_items: sp.csr_matrix, k: int) -> tuple[np.ndarray, float]:
    """implicit's exact ``recommend`` of a fitted ALS model for ``users`` (rows of its user factors),
    ``user_items`` (len(users) x items) filtered: ids (users, k) and the call's seconds."""
    imp = to_implicit(als)
    t0 = time.perf_counter()
    ids, _ = imp.recommend(users, user_items, N=k, filter_already_liked_items=True)
    return ids, time.perf_counter() - t0


def implicit_faiss_topk(als: ALSModel, users: np.ndarray, user_items: sp.csr_matrix, train: sp.csr_matrix,
                        k: int) -> tuple[np.ndarray, float]:
    """implicit's FAISS wrapper (:func:`implicit_faiss_wrapper`) around a fitted ALS model, built
    with ``train`` (its users x items matrix), then ``recommend`` for ``users`` with their
    ``user_items`` filtered: ids (users, k) and the recommend call's seconds (the build untimed)."""
    fm = implicit_faiss_wrapper(to_implicit(als))
    fm.fit(train, show_progress=False)
    t0 = time.perf_counter()
    ids, _ = fm.recommend(users, user_items, N=k)
    return ids, time.perf_counter() - t0
