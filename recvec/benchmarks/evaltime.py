"""Evaluation-time benchmark (``recvec bench evaltime``): recvec's batched evaluation against
implicit's batch ``recommend``.

Both score the same fitted ALS model for the same evaluable users, in one process, best of
``repeats``. recvec computes the held-out item's rank for every user (Recall/NDCG for any K);
implicit returns the top-K lists. BLAS and implicit thread counts are reported.
"""

from __future__ import annotations

import os
import time

from recvec.engine.data import load_dataset
from recvec.engine.evaluate import evaluate_scorer, scorer_from_vectors
from recvec.engine.metrics import hit_ranks, recall_at_k
from recvec.engine.models.als import ALSConfig, fit_als, to_implicit
from recvec.engine.split import leave_last_out


def benchmark_evaluation(data: str, *, k: int = 10, repeats: int = 3) -> dict:
    """Fit the default ALS on ``data``'s leave-last-out split, then time recvec's evaluation and
    implicit's batch recommend (BLAS at one thread) of the same users, best of ``repeats``.
    Returns seconds (``recvec_s``, ``implicit_recommend_s``), Recall@k of both, ``speedup``
    (implicit / recvec) and thread counts. Dataset errors propagate as RecvecError/DataError."""
    from threadpoolctl import threadpool_info, threadpool_limits

    split = leave_last_out(load_dataset(data).ratings)
    model = fit_als(split.matrix, ALSConfig())
    users, targets = split.evaluable()
    imp = to_implicit(model)
    scorer = scorer_from_vectors(model.user_factors, model.item_factors)
    ours, theirs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ev = evaluate_scorer(scorer, split, model="als", k=k)
        ours.append(time.perf_counter() - t0)
        with threadpool_limits(1, "blas"):
            t0 = time.perf_counter()
            ids, _ = imp.recommend(users, split.matrix[users], N=k)
            theirs.append(time.perf_counter() - t0)
    imp_recall = recall_at_k(hit_ranks(ids, targets), k)
    return {
        "data": data,
        "users": int(len(users)),
        "k": k,
        "recvec_s": min(ours),
        "recvec_recall": ev.recall,
        "implicit_recommend_s": min(theirs),
        "implicit_recall": imp_recall,
        "speedup": min(theirs) / min(ours),
        "blas": [{"api": i["internal_api"], "threads": i["num_threads"]} for i in threadpool_info()],
        "implicit_threads": imp.num_threads or os.cpu_count(),
        "cpus": os.cpu_count(),
    }
