"""`recvec bench similar`: item-to-item similarity (cosine) at catalogue scale, side by side in one run.

On each synthetic catalogue (``catalogs.CatalogSpec``: ALS-like norm spread, un-normalised) a seeded
sample of items asks ``Recommender.similar`` for its k nearest by cosine, the item itself excluded:

- **exact scan**: the Recommender without a similar index (a normalised table made once, every item
  scored per call) -- what answered before, and the ground truth;
- **similar index**: the same Recommender with the cosine index ``recvec build --similar-index SPEC``
  stores (``indexes/similar.py``), at each efSearch;
- **raw FAISS**: the same index searched directly with ``k + 1`` and the item dropped (the peer that
  shows what the Recommender adds).

Rows carry recall@k against the exact scan, single-call p50/p99 (ms), the speed-up over the exact
scan, and the index's build seconds and ``reachable_share``; the machine record (threads, load)
comes with them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from recvec.benchmarks.catalogs import CatalogSpec, item_vectors
from recvec.benchmarks.metrics import percentiles_ms
from recvec.benchmarks.runner import machine_info, time_each
from recvec.checks import check_int
from recvec.errors import RecvecError


@dataclass(frozen=True)
class SimilarBenchConfig:
    """Catalogues ``sizes`` x ``dims``, ``items`` sampled items per catalogue, cut-off ``k``, the similar
    index kind ``spec`` and the efSearch values ``ef_search`` (graph kinds). RecvecError for sizes
    below 2 or counts below 1."""

    sizes: tuple[int, ...] = (1_000_000,)
    dims: tuple[int, ...] = (64,)
    items: int = 300
    k: int = 10
    spec: str = "hnsw32"
    ef_search: tuple[int, ...] = (16, 32, 64, 128)
    seed: int = 0

    def __post_init__(self):
        for n in self.sizes:
            check_int("size", n, 2, 2_000_000_000)
        for d in self.dims:
            check_int("dim", d, 1, 65_536)
        check_int("items", self.items, 1, 1_000_000)
        check_int("k", self.k, 1, 10_000)
        for ef in self.ef_search:
            check_int("ef_search", ef, 1, 1_000_000)


def bench_similar(cfg: SimilarBenchConfig, *, progress=None, context=None) -> dict:
    """Run every catalogue of ``cfg``; ``{"config", "machine", "rows"}`` (see the module doc).
    ``progress(message)`` hears each step."""
    from recvec.indexes.spec import IndexSpec

    say = progress or (lambda m: None)
    spec = IndexSpec.parse(cfg.spec)
    rows = []
    for n in cfg.sizes:
        for d in cfg.dims:
            if cfg.k >= n:
                raise RecvecError(f"k={cfg.k} needs a catalogue of more than {cfg.k} items (size {n})", params=("k",))
            rows += _catalogue(CatalogSpec(n=n, d=d, seed=cfg.seed), cfg, spec, say)
    return {"config": {**cfg.__dict__, "sizes": list(cfg.sizes), "dims": list(cfg.dims),
                       "ef_search": list(cfg.ef_search)},
            "machine": machine_info(context), "rows": rows}


def _catalogue(cat: CatalogSpec, cfg: SimilarBenchConfig, spec, say) -> list[dict]:
    from recvec.engine.recommender import Recommender
    from recvec.engine.users import MeanEncoder
    from recvec.engine.vocab import Vocabulary
    from recvec.indexes import backends
    from recvec.engine.models.text import l2_normalize
    from recvec.indexes.similar import build_similar, open_similar
    from recvec.indexes.spec import IndexSpec

    say(f"{cat.name}: generating {cat.n:,} x {cat.d} item vectors")
    vectors, _ = item_vectors(cat)
    n, d, k = cat.n, cat.d, cfg.k
    sample = np.random.default_rng(cfg.seed).choice(n, size=min(cfg.items, n), replace=False)
    main = backends.get(backends.DEFAULT).build(vectors, IndexSpec.parse("flat"))
    items = Vocabulary(np.arange(n, dtype=np.int64))
    args = (main, items, MeanEncoder(vectors), np.zeros(n, np.float32))
    exact = Recommender(*args, item_vectors=vectors, normalized=False)
    say(f"{cat.name}: exact scan over {len(sample)} items")
    truth = [exact.similar(int(i), k).ids for i in sample]
    lat = time_each(lambda j: exact.similar(int(sample[j]), k), len(sample), warmup=3)
    base = {"catalogue": cat.name, "n": n, "d": d, "k": k, "items": len(sample)}
    exact_ms = _ms(lat)
    exact_p50 = exact_ms["p50_ms"]
    out = [{**base, "method": "exact scan", "ef_search": None, f"recall@{k}": 1.0, **exact_ms, "x_exact": 1.0}]
    say(f"{cat.name}: building the similar index {spec}")
    t0 = time.perf_counter()
    raw, entry = build_similar(vectors, spec, seed=cfg.seed)
    index = open_similar(entry, raw, n, d)
    build_s = time.perf_counter() - t0
    rec = Recommender(*args, item_vectors=vectors, normalized=False, similar_index=index)
    faiss_index = getattr(index, "faiss_index", None)
    unit = l2_normalize(vectors[sample])
    graph = "ef_search" in index.describe()
    for ef in cfg.ef_search if graph else (None,):
        params = {} if ef is None else {"ef_search": ef}
        got = [rec.similar(int(i), k, **params).ids for i in sample]
        lat = time_each(lambda j: rec.similar(int(sample[j]), k, **params), len(sample), warmup=3)
        row = {**base, "method": f"similar index {spec}", "ef_search": ef, f"recall@{k}": _recall(got, truth),
               **_ms(lat), "build_s": build_s, "reachable_share": entry.get("reachable_share")}
        row["x_exact"] = exact_p50 / row["p50_ms"]
        out.append(row)
        if faiss_index is not None:
            out.append(_raw_faiss(faiss_index, unit, sample, k, ef, base, truth, exact_p50))
        say(f"{cat.name}: ef {ef}: recall@{k} {row[f'recall@{k}']:.3f}, p50 {row['p50_ms']:.3f} ms "
            f"({row['x_exact']:.0f}x the exact scan)")
    return out


def _raw_faiss(index, unit: np.ndarray, sample: np.ndarray, k: int, ef, base: dict, truth, exact_p50) -> dict:
    """The peer: the same FAISS index searched directly for k + 1, the item itself dropped."""
    import faiss

    params = None if ef is None else faiss.SearchParametersHNSW(efSearch=max(ef, k + 1))

    def one(j: int) -> np.ndarray:
        _, ids = index.search(unit[j : j + 1], k + 1, params=params)
        return ids[0][ids[0] != sample[j]][:k]

    got = [one(j) for j in range(len(sample))]
    lat = time_each(one, len(sample), warmup=3)
    p = _ms(lat)
    return {**base, "method": "raw FAISS (same index)", "ef_search": ef, f"recall@{k}": _recall(got, truth), **p,
            "x_exact": exact_p50 / p["p50_ms"]}


def _ms(lat: np.ndarray) -> dict:
    p = percentiles_ms(lat)
    return {"p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"]}


def _recall(got: list[np.ndarray], truth: list[np.ndarray]) -> float:
    return float(np.mean([len(set(g.tolist()) & set(t.tolist())) / len(t) for g, t in zip(got, truth)]))
