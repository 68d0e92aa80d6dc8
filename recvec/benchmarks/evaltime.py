"""Evaluation-time benchmark: recvec's batched evaluation against implicit's batch `recommend`.

    python -m recvec.benchmarks.evaltime --data ../shared/data/ml-1m [--repeats 3] [--json]

Both score the same fitted ALS model for the same evaluable users, in one process, best of
--repeats. recvec computes the held-out item's rank for every user (Recall/NDCG for any K);
implicit returns the top-K lists. BLAS and implicit thread counts are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def benchmark_evaluation(data: str, *, k: int = 10, repeats: int = 3) -> dict:
    from threadpoolctl import threadpool_info, threadpool_limits

    from recvec.engine.data import load_dataset
    from recvec.engine.evaluate import evaluate_scorer, scorer_from_vectors
    from recvec.engine.metrics import hit_ranks, recall_at_k
    from recvec.engine.models.als import ALSConfig, fit_als, to_implicit
    from recvec.engine.split import leave_last_out

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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    r = benchmark_evaluation(a.data, k=a.k, repeats=a.repeats)
    if a.json:
        print(json.dumps(r, indent=2))
        return
    print(f"{r['users']} users, K={r['k']}, cpus={r['cpus']}, blas={r['blas']}, implicit threads={r['implicit_threads']}")
    print(f"recvec batched evaluation : {r['recvec_s'] * 1e3:8.1f} ms  (Recall@{r['k']} {r['recvec_recall']:.4f})")
    print(f"implicit batch recommend  : {r['implicit_recommend_s'] * 1e3:8.1f} ms  (Recall@{r['k']} {r['implicit_recall']:.4f})")
    print(f"ratio (implicit / recvec) : {r['speedup']:.2f}x")


if __name__ == "__main__":
    main()
