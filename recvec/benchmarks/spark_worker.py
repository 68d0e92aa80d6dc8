"""One measurement of ``recvec bench spark``, run in a fresh process (so its peak memory, the JVM's
included, is its own): ``python -m recvec.benchmarks.spark_worker JSON`` prints one JSON line.

Tasks (``task`` in the JSON):

- ``fit``: the ALS fit on an interactions table, ``side`` ``implicit`` (recvec's loader, the local
  split, implicit's ALS on the thread policy's threads) or ``spark`` (Spark reads the table, splits
  it with window functions and fits its ALS); ``prep_s`` (read + split) and ``fit_s`` (the fit, item
  factors in numpy) timed apart.
- ``encode``: ``n`` generated item texts through the packaged MiniLM, locally (torch on the thread
  policy's threads) or on Spark (``mapInPandas``, one torch thread per task); the vectors' sha256
  and a sample are returned for the comparison.
- ``accuracy``: a MovieLens dataset split on Spark and locally (rows compared), ALS fitted by
  both with the same configuration, each evaluated by its engine (Recall/NDCG@10).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def _engine(spec: dict):
    from recvec.engine.engines import EngineOptions, get_engine

    return get_engine(EngineOptions("spark", spec["master"], tuple(tuple(kv) for kv in spec.get("conf", ()))))


def _fit(spec: dict) -> dict:
    from recvec.engine.models.als import ALSConfig
    from recvec.engine.models.fit import ModelConfig

    cfg = ModelConfig("als", als=ALSConfig(factors=spec["factors"], iterations=spec["iterations"], seed=spec["seed"]))
    t0 = time.perf_counter()
    if spec["side"] == "implicit":
        from recvec.engine.engines.local import LocalEngine

        eng = LocalEngine()
        prep = eng.split(spec["path"])
        t1 = time.perf_counter()
        als = eng.fit_als(prep, cfg)
        factors = als.item_factors
    else:
        eng = _engine(spec)
        _ = eng.session  # the JVM's start is timed apart
        t0 = time.perf_counter()
        prep = eng.split(spec["path"])
        t1 = time.perf_counter()
        factors, _ = eng.fit_factors(prep, cfg, False)
    t2 = time.perf_counter()
    out = {"prep_s": t1 - t0, "fit_s": t2 - t1, "train_rows": prep.train_rows, "test_rows": prep.test_rows,
           "items": len(prep.items), "factors_finite": bool(np.isfinite(factors).all())}
    eng.close()
    return out


def texts(n: int, seed: int = 0) -> list[str]:
    """``n`` seeded MovieLens-like item texts, 'Title Words (year) [SEP] Genre|Genre'."""
    from recvec.engine.synthetic import _FILLERS, _WORDS, GENRES

    rng = np.random.default_rng(seed)
    words = [w for ws in _WORDS for w in ws] + list(_FILLERS)
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 5))
        title = " ".join(words[j] for j in rng.integers(0, len(words), k))
        genres = "|".join(sorted({GENRES[j] for j in rng.integers(0, len(GENRES), int(rng.integers(1, 4)))}))
        out.append(f"{title} ({int(rng.integers(1920, 2025))}) [SEP] {genres}")
    return out


def _encode(spec: dict) -> dict:
    from recvec.engine.models.text import get_embedder
    from recvec.threads import threads

    items = texts(spec["n"], spec["seed"])
    if spec["side"] == "local":
        emb = get_embedder("minilm", "cls", num_threads=threads())
        t0 = time.perf_counter()
        vecs = emb.encode(items)
        workers = {"torch_threads": threads()}
    else:
        eng = _engine(spec)
        _ = eng.session
        t0 = time.perf_counter()
        vecs = eng.encode("minilm", "cls", items)
        workers = {"tasks": eng.session.sparkContext.defaultParallelism, "torch_threads_per_task": 1}
        eng.close()
    seconds = time.perf_counter() - t0
    rows = np.random.default_rng(1).choice(len(vecs), min(500, len(vecs)), replace=False)
    return {"seconds": seconds, "texts": len(items), "texts_per_s": len(items) / seconds, **workers,
            "sample_rows": rows.tolist(), "sample": vecs[rows].round(6).tolist()}


def _accuracy(spec: dict) -> dict:
    from recvec.engine.engines.local import LocalEngine
    from recvec.engine.models.als import ALSConfig
    from recvec.engine.models.fit import ModelConfig

    cfg = ModelConfig("als", als=ALSConfig(factors=spec["factors"], iterations=spec["iterations"],
                                           regularization=spec["regularization"], seed=spec["seed"]))
    local = LocalEngine()
    lp = local.split(spec["path"])
    t0 = time.perf_counter()
    lm = local.fit(lp, cfg)
    fit_local = time.perf_counter() - t0
    lev = local.evaluate(lp, lm, k=10)
    eng = _engine(spec)
    _ = eng.session
    t0 = time.perf_counter()
    sp = eng.split(spec["path"])
    split_s = time.perf_counter() - t0
    ls, ll = eng.local_split(sp), lp.handle
    same = all(np.array_equal(getattr(getattr(ll, p), c)(), getattr(getattr(ls, p), c)())
               for p in ("train", "test") for c in ("user_values", "item_values")) and \
        all(np.array_equal(getattr(getattr(ll, p), c), getattr(getattr(ls, p), c))
            for p in ("train", "test") for c in ("ratings", "timestamps")) and \
        np.array_equal(ll.items.ids, ls.items.ids) and np.array_equal(ll.users.ids, ls.users.ids)
    t0 = time.perf_counter()
    sm = eng.fit(sp, cfg)
    fit_spark = time.perf_counter() - t0
    t0 = time.perf_counter()
    sev = eng.evaluate(sp, sm, k=10)
    eval_spark = time.perf_counter() - t0
    eng.close()
    return {"split_identical": bool(same), "train_rows": sp.train_rows, "test_rows": sp.test_rows,
            "spark_split_s": split_s, "implicit_recall": lev.recall, "implicit_ndcg": lev.ndcg,
            "spark_recall": sev.recall, "spark_ndcg": sev.ndcg, "users": sev.users, "implicit_users": lev.users,
            "recall_diff": sev.recall - lev.recall, "implicit_fit_s": fit_local, "spark_fit_s": fit_spark,
            "spark_eval_s": eval_spark, "implicit_eval_s": lev.seconds}


TASKS = {"fit": _fit, "encode": _encode, "accuracy": _accuracy}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    result = TASKS[spec["task"]](spec)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - run by recvec.benchmarks.spark_bench
    sys.exit(main(sys.argv))
