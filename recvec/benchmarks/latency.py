"""Latency benchmark (``recvec bench latency``): run -> store -> metrics, per catalogue.

Catalogues: a MovieLens dataset (its ALS item factors; users' train histories, user vectors folded
in at query time) and synthetic structured catalogues (:mod:`recvec.benchmarks.catalogs`).

For every index kind (exact flat and each approximate kind, FAISS and optionally Milvus Lite) the
index is built once (build time, serialised bytes, resident-memory growth) and each query-time
setting (efSearch, nprobe) is measured on it:

- batch: all queries in one ``search`` call with their histories excluded (best of ``repeats``);
  the returned ids are stored and give the filtered recall@k against the exact flat index;
- single: one query per call, the bare exclusion-aware index search for a ready query vector;
- full path: one query per call as a service sees it -- history ids -> user vector -> search with
  the history excluded -> external ids (``Recommender.recommend``).

Baselines measured in the same run on the same vectors and users: raw ``faiss.IndexFlatIP.search``
(no exclusion), implicit's exact ``recommend`` (batch and single calls, its user factors set to our
query vectors), ``recommend(..., recalculate_user=True)`` (its own fold-in, fold-in catalogues),
implicit's ``FaissAlternatingLeastSquares`` wrapper with its default IVF settings (nlist 400,
nprobe 20), and the GFLOP/s of a large float32 matrix multiply. For MovieLens also artifact size
and load time. implicit runs with its BLAS pool held to one thread (OPENBLAS_NUM_THREADS=1).

Metrics come from the stored results only (:func:`latency_metrics`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from recvec.benchmarks import runner
from recvec.benchmarks.catalogs import CatalogSpec, make_catalogue, structure_summary
from recvec.benchmarks.results import META, ResultStore, Stored, canonical, slug
from recvec.checks import SEED_MAX, check_int
from recvec.errors import RecvecError

INDEX_KINDS = ("flat", "hnsw", "ivf", "ivfsq", "ivfpq")
#: Also accepted by --indexes: the HNSW graph in FAISS's insertion order, to measure what the
#: breadth-first node order of ``hnsw`` (spec.reorder_for_locality) buys on the same catalogue.
INDEX_CHOICES = ("flat", "hnsw", "hnsw-noreorder", "ivf", "ivfsq", "ivfpq")
BACKENDS = ("faiss", "milvus")
BASELINES = ("matmul", "raw-flat", "blas-exact", "implicit-exact", "implicit-recalc", "implicit-faiss")
#: implicit's FaissAlternatingLeastSquares defaults.
IMPLICIT_NLIST, IMPLICIT_NPROBE = 400, 20


@dataclass(frozen=True)
class LatencyConfig:
    k: int = 10
    indexes: tuple[str, ...] = INDEX_KINDS
    queries: int = 1000  # users per catalogue: batch search and recall
    single: int = 300  # of them, timed one query per call
    repeats: int = 2  # batch timings (best kept)
    warmup: int = 5
    ef_search: tuple[int, ...] = runner.EF_SEARCH
    nprobe: tuple[int, ...] | None = None  # None: powers of two up to nlist
    backends: tuple[str, ...] = ("faiss",)
    baselines: bool = True
    artifact: bool = True
    milvus_queries: int = 200
    matmul_n: int = 2048  # size of the float32 matmul that measures the machine's peak
    seed: int = 0

    def __post_init__(self):
        for name in ("k", "queries", "single", "repeats", "milvus_queries", "matmul_n"):
            check_int(name, getattr(self, name))
        check_int("seed", self.seed, 0, SEED_MAX)
        bad = [b for b in self.backends if b not in BACKENDS]
        if bad:
            raise RecvecError(f"--backends: unknown {bad}; choose from {', '.join(BACKENDS)}")
        if "faiss" not in self.backends:
            raise RecvecError("--backends must include faiss (the exact flat index is the reference)")

    def timing(self) -> dict:
        return {"single": self.single, "repeats": self.repeats, "warmup": self.warmup}


QUICK = dict(queries=200, single=60, repeats=1, ef_search=(16, 64, 256), nprobe=None, matmul_n=1024)


@dataclass(frozen=True)
class Source:
    """Where a catalogue comes from: a MovieLens dataset (ALS factors) or a synthetic spec."""

    kind: str  # "movielens" | "synthetic"
    data: str | None = None
    spec: CatalogSpec | None = None
    threshold: float = 4.0
    factors: int = 64

    @property
    def name(self) -> str:
        if self.kind == "synthetic":
            return self.spec.name
        base = Path(str(self.data).rstrip("/")).name or "data"
        return f"{base}-als{self.factors}"

    def params(self) -> dict:
        if self.kind == "synthetic":
            return {"kind": "synthetic", **asdict(self.spec)}
        return {"kind": "movielens", "data": str(self.data), "threshold": self.threshold, "factors": self.factors}


@dataclass
class Prepared:
    name: str
    vectors: np.ndarray
    histories: list[np.ndarray]
    queries: np.ndarray
    encoder: object
    ids: np.ndarray  # external id of each row
    regularization: float
    alpha: float
    info: dict = field(default_factory=dict)
    artifact_inputs: tuple | None = None  # (dataset, ItemModel) for MovieLens


# ------------------------------------------------------------------------------- preparation


def _prepare_movielens(src: Source, cfg: LatencyConfig, store: ResultStore, force: bool, progress: bool) -> Prepared:
    from recvec.engine.data import load_dataset
    from recvec.engine.models.als import ALSConfig, ALSModel, fit_als
    from recvec.engine.models.fit import ModelConfig, assemble_als
    from recvec.engine.split import leave_last_out
    from recvec.engine.users import ALSFoldIn

    ds = load_dataset(str(src.data), progress=progress)
    split = leave_last_out(ds.ratings, src.threshold)
    als_cfg = ALSConfig(factors=src.factors)
    key = {"label": "als", "catalogue": src.params(), "fingerprint": ds.fingerprint, "als": asdict(als_cfg)}
    group = f"latency/{src.name}/model"
    stored = None if force else store.get(group, key)
    if stored is None:
        t0 = time.perf_counter()
        als = fit_als(split.matrix, als_cfg, progress=progress)
        stored = store.save(group, key, {"fit_s": time.perf_counter() - t0, "machine": runner.machine_info()},
                            {"item_factors": als.item_factors, "user_factors": als.user_factors})
    als = ALSModel(als_cfg, stored.array("user_factors"), stored.array("item_factors"))
    hist_all = split.histories()
    rng = np.random.default_rng(cfg.seed)
    users = np.flatnonzero([len(h) > 0 for h in hist_all])
    if cfg.queries < len(users):
        users = np.sort(rng.choice(users, cfg.queries, replace=False))
    hist = [np.unique(hist_all[u]) for u in users]
    enc = ALSFoldIn(als.item_factors, als_cfg.regularization, als_cfg.alpha)
    from recvec.benchmarks.catalogs import user_encoder_queries

    q = user_encoder_queries(enc, hist)
    model_cfg = ModelConfig(kind="als", als=als_cfg)
    return Prepared(src.name, als.item_factors, hist, q, enc, split.items.ids, als_cfg.regularization, als_cfg.alpha,
                    {"source": src.params(), "items": len(split.items), "users_sampled": len(users),
                     "structure": structure_summary(als.item_factors), "encoder": "fold-in",
                     "fingerprint": ds.fingerprint},
                    (ds, lambda: assemble_als(split, model_cfg, als)))


def _prepare_synthetic(src: Source, cfg: LatencyConfig, progress: bool) -> Prepared:
    cat = make_catalogue(src.spec, cfg.queries, progress=progress)
    from recvec.benchmarks.catalogs import user_encoder

    enc = user_encoder(src.spec, cat.vectors)
    return Prepared(src.name, cat.vectors, cat.histories, cat.queries, enc, np.arange(cat.n, dtype=np.int64),
                    src.spec.regularization, 1.0,
                    {"source": src.params(), "items": cat.n, "users_sampled": len(cat.histories),
                     "structure": structure_summary(cat.vectors), "encoder": src.spec.encoder})


def prepare(src: Source, cfg: LatencyConfig, store: ResultStore, *, force: bool = False,
            progress: bool = False) -> Prepared:
    if src.kind == "movielens":
        return _prepare_movielens(src, cfg, store, force, progress)
    return _prepare_synthetic(src, cfg, progress)


# ------------------------------------------------------------------------------- the run


class _Run:
    """One catalogue's units."""

    def __init__(self, src: Source, cfg: LatencyConfig, store: ResultStore, force: bool, progress: bool):
        self.src, self.cfg, self.store, self.force, self.progress = src, cfg, store, force, progress
        self.base = {"catalogue": src.params(), "queries": cfg.queries, "k": cfg.k, "seed": cfg.seed}
        self.p: Prepared | None = None
        self.gt: np.ndarray | None = None

    def group(self, kind: str) -> str:
        return f"latency/{self.src.name}/{kind}"

    # -- keys --------------------------------------------------------------------------------
    def build_key(self, backend: str, spec: str) -> dict:
        return {"label": f"{backend}-{spec}", "base": self.base, "backend": backend, "index": spec}

    def search_key(self, backend: str, spec: str, setting: dict) -> dict:
        q = runner.search_kwargs(setting)
        label = f"{backend}-{spec}-" + ("-".join(f"{k}{v}" for k, v in q.items()) or "exact")
        return {"label": label, "base": self.base, "backend": backend, "index": spec, "query": q,
                "timing": self.cfg.timing(),
                **({"milvus_queries": self.cfg.milvus_queries} if backend == "milvus" else {})}

    def baseline_key(self, name: str) -> dict:
        return {"label": name, "base": self.base, "baseline": name, "timing": self.cfg.timing(),
                **({"matmul_n": self.cfg.matmul_n} if name == "matmul" else {})}

    def artifact_key(self, spec: str) -> dict:
        return {"label": f"artifact-{spec}", "base": self.base, "index": spec}

    def done(self, group: str, key: dict) -> bool:
        return not self.force and self.store.has(group, key)

    # -- plan --------------------------------------------------------------------------------
    def _settings_if_built(self, backend: str, spec: str) -> list[dict] | None:
        b = self.store.get(self.group("build"), self.build_key(backend, spec))
        if b is None:
            return None
        return runner.query_settings(b.meta["describe"], self.cfg.k, ef_search=self.cfg.ef_search, nprobe=self.cfg.nprobe)

    def pending(self) -> list[tuple]:
        """Work items left: ("index", backend, spec) / ("baseline", name) / ("artifact", spec)."""
        out: list[tuple] = []
        for backend in self.cfg.backends:
            for spec in self.specs(backend):
                settings = None if self.force else self._settings_if_built(backend, spec)
                if settings is None or any(not self.done(self.group("search"), self.search_key(backend, spec, s))
                                           for s in settings):
                    out.append(("index", backend, spec))
        if self.cfg.baselines:
            for name in self.baseline_names():
                if not self.done(self.group("baseline"), self.baseline_key(name)):
                    out.append(("baseline", name))
        if self.cfg.artifact and self.src.kind == "movielens":
            for spec in ("flat", "hnsw"):
                if spec in self.cfg.indexes and not self.done(self.group("artifact"), self.artifact_key(spec)):
                    out.append(("artifact", spec))
        return out

    def specs(self, backend: str) -> list[str]:
        if backend == "faiss":
            return ["flat"] + [s for s in self.cfg.indexes if s != "flat"]
        from recvec.indexes.backends.milvus import LITE_KINDS

        return [s for s in self.cfg.indexes if s in LITE_KINDS]

    def baseline_names(self) -> list[str]:
        names = ["matmul", "raw-flat", "blas-exact", "implicit-exact", "implicit-faiss"]
        encoder = "fold-in" if self.src.kind == "movielens" else self.src.spec.encoder
        if encoder == "fold-in":
            names.insert(3, "implicit-recalc")
        return names

    # -- run ---------------------------------------------------------------------------------
    def run(self) -> int:
        todo = self.pending()
        if not todo:
            return 0
        # the exact flat index is the reference for every recall: run it first when anything runs
        if ("index", "faiss", "flat") not in todo and self.store.has(self.group("search"),
                                                                       self.search_key("faiss", "flat", {})):
            self.gt = self.store.load(self.group("search"), self.search_key("faiss", "flat", {})).array("ids")
        self.p = prepare(self.src, self.cfg, self.store, force=self.force, progress=self.progress)
        bar = runner.Progress(len(todo), self.src.name, self.progress)
        try:
            for item in todo:
                bar.step(" ".join(item))
                info = {}
                if item[0] == "index":
                    info = self.run_index(item[1], item[2]) or {}
                elif item[0] == "baseline":
                    self.run_baseline(item[1])
                else:
                    self.run_artifact(item[1])
                bar.done(**info)
        finally:
            bar.close()
        return len(todo)

    def _recall(self, ids: np.ndarray) -> float | None:
        if self.gt is None:
            return None
        from recvec.engine.metrics import overlap_at_k

        n = min(len(ids), len(self.gt))
        return overlap_at_k(ids[:n], self.gt[:n], self.cfg.k)

    # -- indexes -----------------------------------------------------------------------------
    def run_index(self, backend: str, spec_text: str) -> dict:
        from recvec.indexes.spec import IndexSpec

        spec = IndexSpec.parse(spec_text)
        if backend == "milvus":
            return self._run_milvus(spec_text, spec)
        built = runner.build_timed(self.p.vectors, spec, seed=self.cfg.seed)
        self.store.save(self.group("build"), self.build_key(backend, spec_text),
                        {"build_s": built.build_s, "index_bytes": built.index_bytes, "rss_before": built.rss_before,
                         "rss_after": built.rss_after, "describe": built.describe, "n": len(self.p.vectors),
                         "d": int(self.p.vectors.shape[1]), "raw_bytes": int(self.p.vectors.nbytes),
                         "machine": runner.machine_info()})
        settings = runner.query_settings(built.describe, self.cfg.k, ef_search=self.cfg.ef_search, nprobe=self.cfg.nprobe)
        rec = self._recommender(built.index)
        last = {}
        for s in settings:
            key = self.search_key(backend, spec_text, s)
            if self.done(self.group("search"), key):
                continue
            last = self._measure(built.index, rec, s, key)
        return last

    def _recommender(self, index):
        from recvec.engine.recommender import Recommender
        from recvec.engine.vocab import Vocabulary

        return Recommender(index, Vocabulary(self.p.ids, kind="item"), self.p.encoder,
                           np.zeros(len(self.p.ids), np.float32), normalized=False)

    def _measure(self, index, rec, setting: dict, key: dict) -> dict:
        p, cfg = self.p, self.cfg
        kw = runner.search_kwargs(setting)
        q, h, k = p.queries, p.histories, cfg.k
        result: dict = {}

        def batch():
            result["ids"] = index.search(q, k, exclude=h, **kw)[0]

        index.search(q[:8], k, exclude=h[:8], **kw)  # untimed warm-up (thread pools, first-call checks)
        batch_s = runner.time_batch(batch, cfg.repeats)
        ids = result["ids"]
        n1 = min(cfg.single, len(q))
        ext = [p.ids[x] for x in h[:n1]]
        full_ids = np.empty((n1, k), dtype=np.int64)

        def full(i):
            full_ids[i] = rec.recommend(ext[i], k, **kw).ids

        from threadpoolctl import threadpool_limits

        # One query per call, as a service answers requests: BLAS held to one thread (as implicit is).
        # Otherwise OpenBLAS workers woken by the fold-in's solve spin for a while afterwards and take
        # the core the FAISS search needs (measured: +20 ms on a 12 ms flat search at 1M x 64).
        with threadpool_limits(1, "blas"):
            single = runner.time_each(lambda i: index.search(q[i:i + 1], k, exclude=[h[i]], **kw), n1,
                                      warmup=cfg.warmup)
            full_s = runner.time_each(full, n1, warmup=cfg.warmup)
            single_threads = runner.threads()
        full_rows = rec.items.rows(full_ids.ravel()).reshape(full_ids.shape)
        if key["index"] == "flat" and key["backend"] == "faiss":
            self.gt = ids
        recall = self._recall(ids)
        self.store.save(self.group("search"), key,
                        {"batch_s": batch_s, "nq": len(q), "nsingle": n1, "default": bool(setting.get("default")),
                         "recall_at_run": recall, "single_threads": single_threads, "machine": runner.machine_info()},
                        {"ids": ids.astype(np.int32), "single_s": single, "full_s": full_s,
                         "full_ids": full_rows.astype(np.int32)})
        return {"recall": f"{recall:.3f}" if recall is not None else "-", "p50": f"{np.median(single) * 1e3:.2f}ms"}

    def _run_milvus(self, spec_text: str, spec) -> dict:
        from recvec.indexes.backends.milvus import MilvusIndex
        from recvec.indexes.spec import DEFAULT_EF_SEARCH, default_nprobe

        p, cfg = self.p, self.cfg
        folder = self.store.root / "milvus"
        folder.mkdir(parents=True, exist_ok=True)
        uri = folder / f"{slug(self.src.name)}.db"
        coll = slug(f"{self.src.name}_{spec_text}").replace("-", "_").replace(".", "_")
        if not coll[0].isalpha():
            coll = "c_" + coll
        gc_before = runner.rss_bytes()
        t0 = time.perf_counter()
        mi = MilvusIndex.create(str(uri), coll, p.vectors, spec, progress=self.progress)
        build_s = time.perf_counter() - t0
        describe = {"index_type": mi.index_type, **mi.index_params}
        if mi.index_type == "HNSW":
            describe["ef_search"] = DEFAULT_EF_SEARCH
        elif "nlist" in mi.index_params:
            describe["nprobe"] = default_nprobe(int(mi.index_params["nlist"]))
        self.store.save(self.group("build"), self.build_key("milvus", spec_text),
                        {"build_s": build_s, "index_bytes": None, "rss_before": gc_before,
                         "rss_after": runner.rss_bytes(), "describe": describe, "n": len(p.vectors),
                         "d": int(p.vectors.shape[1]), "raw_bytes": int(p.vectors.nbytes),
                         "milvus": mi.describe(), "machine": runner.machine_info()})
        mq = min(cfg.milvus_queries, len(p.queries))
        q, h, k = p.queries[:mq], p.histories[:mq], cfg.k
        info = {}
        try:
            for s in runner.query_settings(describe, k, ef_search=cfg.ef_search, nprobe=cfg.nprobe):
                key = self.search_key("milvus", spec_text, s)
                if self.done(self.group("search"), key):
                    continue
                kw = runner.search_kwargs(s)
                out = {}
                batch_s = runner.time_batch(lambda: out.setdefault("ids", mi.search(q, k, exclude=h, **kw)[0]), 1)
                n1 = min(cfg.single, mq)
                single = runner.time_each(lambda i: mi.search(q[i:i + 1], k, exclude=[h[i]], **kw), n1,
                                          warmup=cfg.warmup)
                recall = self._recall(out["ids"])
                self.store.save(self.group("search"), key,
                                {"batch_s": batch_s, "nq": mq, "nsingle": n1, "default": bool(s.get("default")),
                                 "recall_at_run": recall, "query_batch": mi.query_batch,
                                 "fallbacks": mi.fallbacks, "machine": runner.machine_info()},
                                {"ids": out["ids"].astype(np.int32), "single_s": single})
                info = {"recall": f"{recall:.3f}" if recall is not None else "-",
                        "p50": f"{np.median(single) * 1e3:.2f}ms"}
        finally:
            try:
                mi.drop()
            finally:
                mi.close()
        return info

    # -- baselines ---------------------------------------------------------------------------
    def run_baseline(self, name: str) -> None:
        fn = {"matmul": self._matmul, "raw-flat": self._raw_flat, "blas-exact": self._blas_exact,
              "implicit-exact": self._implicit_exact,
              "implicit-recalc": self._implicit_recalc, "implicit-faiss": self._implicit_faiss}[name]
        meta, arrays = fn()
        self.store.save(self.group("baseline"), self.baseline_key(name),
                        {**meta, "machine": runner.machine_info()}, arrays)

    def _matmul(self):
        return runner.matmul_gflops(self.cfg.matmul_n), {}

    def _raw_flat(self):
        import faiss

        p, cfg = self.p, self.cfg
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

    def _blas_exact(self):
        """Exact filtered top-k the way recvec's evaluation scores: chunks of queries x all items by BLAS
        matmul, history set to -inf, argpartition (``recvec.engine.evaluate.topk_excluding``)."""
        from recvec.engine.evaluate import topk_excluding

        p, cfg = self.p, self.cfg
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

    def _implicit(self):
        from recvec.engine.models.als import ALSConfig, ALSModel, to_implicit

        p = self.p
        cfg = ALSConfig(factors=int(p.vectors.shape[1]), regularization=p.regularization, alpha=p.alpha)
        model = to_implicit(ALSModel(cfg, np.ascontiguousarray(p.queries), np.ascontiguousarray(p.vectors)))
        ui = runner.csr_rows(p.histories, len(p.vectors))
        return model, ui

    def _implicit_exact(self):
        from threadpoolctl import threadpool_limits

        p, cfg = self.p, self.cfg
        model, ui = self._implicit()
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

    def _implicit_recalc(self):
        from threadpoolctl import threadpool_limits

        p, cfg = self.p, self.cfg
        model, ui = self._implicit()
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
            paired = self._paired_with_recvec(one, n1)
        return ({"nsingle": n1, "filtered": True, "threads_in_call": th, "implicit_threads": 1,
                 "default_threads_p50_ms": float(np.median(default_threads) * 1e3) if n0 else None,
                 "default_threads_calls": n0,
                 "what": "implicit recommend(userid, user_items[userid], recalculate_user=True), one call per user, "
                         "num_threads=1"},
                {"ids": ids.astype(np.int32), "single_s": single, **paired})

    def _paired_with_recvec(self, implicit_one, n: int) -> dict:
        """implicit's call and recvec's full path over an exact flat index, timed alternately user by
        user (which goes first alternates too): drifts in machine load -- common on a shared 2-core
        machine, where units minutes apart can differ by 1.5x -- then fall on both sides alike."""
        import faiss

        from recvec.indexes.search import ItemIndex

        p, k = self.p, self.cfg.k
        flat = faiss.IndexFlatIP(p.vectors.shape[1])
        flat.add(np.ascontiguousarray(p.vectors, dtype=np.float32))
        rec = self._recommender(ItemIndex(flat))
        ext = [p.ids[h] for h in p.histories[:n]]

        def ours(i):
            rec.recommend(ext[i], k)

        imp_s, ours_s = np.empty(n), np.empty(n)
        order = ((implicit_one, imp_s), (ours, ours_s))
        with runner.gc_paused():
            for i in range(min(self.cfg.warmup, n)):
                implicit_one(i)
                ours(i)
            clock = time.perf_counter
            for i in range(n):
                for fn, out in (order if i % 2 == 0 else order[::-1]):
                    t0 = clock()
                    fn(i)
                    out[i] = clock() - t0
        return {"paired_implicit_s": imp_s, "paired_recvec_s": ours_s}

    def _implicit_faiss(self):
        from implicit.ann.faiss import FaissModel
        from threadpoolctl import threadpool_limits

        p, cfg = self.p, self.cfg
        if len(p.vectors) < IMPLICIT_NLIST:
            return {"skipped": f"{len(p.vectors)} items < its nlist {IMPLICIT_NLIST}"}, {}
        model, ui = self._implicit()
        model.fit = lambda *a, **kw: None  # keep our factors: FaissModel.fit then only builds its index
        fm = FaissModel(model, approximate_similar_items=False, approximate_recommend=True,
                        nlist=IMPLICIT_NLIST, nprobe=IMPLICIT_NPROBE, use_gpu=False)
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
                 "what": "implicit.approximate_als.FaissAlternatingLeastSquares defaults (IVF nlist 400, nprobe 20): "
                         "over-fetch k + history, then filter"},
                {"ids": ids.astype(np.int32), "single_s": single})

    # -- artifact ----------------------------------------------------------------------------
    def run_artifact(self, spec_text: str) -> None:
        from recvec.indexes.build import build_artifact, open_index
        from recvec.indexes.spec import IndexSpec

        ds, model_fn = self.p.artifact_inputs
        dest = self.store.root / "artifacts" / f"{slug(self.src.name)}-{slug(spec_text)}"
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        build_artifact(ds, model_fn(), IndexSpec.parse(spec_text), str(dest), seed=self.cfg.seed)
        files = {str(f.relative_to(dest)): f.stat().st_size for f in sorted(dest.rglob("*")) if f.is_file()}
        from threadpoolctl import threadpool_limits

        open_index(str(dest))  # warm the page cache: the timings are of loading, not of the disk
        # A service loads with BLAS at one thread (OPENBLAS_NUM_THREADS=1, as `make` sets): the fold-in's
        # Gram matrix is a small DGEMM that takes ~130 ms with 2 OpenBLAS threads on this busy 2-core
        # machine and ~3 ms with one. Both are recorded; the target is read on the one-thread loads.
        with threadpool_limits(1, "blas"):
            load_s = runner.time_batch(lambda: open_index(str(dest)), 7)
        load_default = runner.time_batch(lambda: open_index(str(dest)), 3)
        self.store.save(self.group("artifact"), self.artifact_key(spec_text),
                        {"files": files, "bytes": sum(files.values()), "raw_bytes": int(self.p.vectors.nbytes),
                         "load_s": load_s, "load_blas_threads": 1, "load_default_threads_s": load_default,
                         "path": str(dest), "machine": runner.machine_info()})


def run_latency(sources: list[Source], cfg: LatencyConfig, out: str | Path, *, force: bool = False,
                progress: bool = False) -> dict:
    """Run (or resume) every catalogue; returns {catalogue name: units run}."""
    store = ResultStore(out)
    ran = {}
    for src in sources:
        ran[src.name] = _Run(src, cfg, store, force, progress).run()
    return ran


# ------------------------------------------------------------------------------- metrics


def _p(s: Stored, name: str) -> dict:
    return runner.percentiles_ms(s.array(name)) if s.has_array(name) else runner.percentiles_ms([])


def _qps(s: Stored) -> float | None:
    b = s.meta.get("batch_s")
    return float(s.meta["nq"] / min(b)) if b else None


def _keep_latest(units: dict, key, s: Stored) -> None:
    """units[key] = s unless the stored unit there was measured later."""
    old = units.get(key)
    if old is None or (s.path / META).stat().st_mtime >= (old.path / META).stat().st_mtime:
        units[key] = s


def latency_metrics(out: str | Path) -> dict:
    """Tables' numbers, computed from the stored raw results under ``out`` only."""
    from recvec.engine.metrics import overlap_at_k

    store = ResultStore(out)
    blocks: dict[str, dict] = {}
    for s in store.units():
        if not s.group.startswith("latency/") or s.group.endswith("/model"):
            continue
        base = s.params.get("base")
        key = canonical(base)
        b = blocks.setdefault(key, {"base": base, "name": s.group.split("/")[1], "build": {}, "search": {},
                                    "baseline": {}, "artifact": {}})
        kind = s.group.rsplit("/", 1)[1]
        # a unit measured again with other timing settings (--single, --repeats) is stored beside the
        # old one: the most recently measured of each unit is the one reported
        if kind == "build":
            _keep_latest(b["build"], (s.params["backend"], s.params["index"]), s)
        elif kind == "search":
            _keep_latest(b["search"], (s.params["backend"], s.params["index"], canonical(s.params["query"])), s)
        elif kind == "baseline":
            _keep_latest(b["baseline"], s.params["baseline"], s)
        elif kind == "artifact":
            _keep_latest(b["artifact"], s.params["index"], s)
    catalogues = []
    for b in blocks.values():
        b["search"] = list(b["search"].values())
        base, k = b["base"], b["base"]["k"]
        flat = next((s for s in b["search"] if s.params["backend"] == "faiss" and s.params["index"] == "flat"), None)
        gt = flat.array("ids") if flat is not None else None
        flat_p50 = float(np.median(flat.array("single_s")) * 1e3) if flat is not None and flat.meta["nsingle"] else None

        def recall(ids):
            if gt is None:
                return None
            n = min(len(ids), len(gt))
            return overlap_at_k(ids[:n], gt[:n], k)

        rows = []
        n = d = None
        for s in sorted(b["search"], key=lambda s: (s.params["backend"] != "faiss", _kind_order(s.params["index"]),
                                                     canonical(s.params["query"]))):
            bu = b["build"].get((s.params["backend"], s.params["index"]))
            single, full = _p(s, "single_s"), _p(s, "full_s")
            if bu is not None:
                n, d = bu.meta["n"], bu.meta["d"]
            full_agree = None
            if s.has_array("full_ids"):
                fi = s.array("full_ids")
                full_agree = overlap_at_k(fi, s.array("ids")[:len(fi)], k)
            rows.append({
                "catalogue": b["name"], "backend": s.params["backend"], "index": s.params["index"],
                "kind": _kind(s.params["index"]), "setting": runner.setting_label(s.params["query"]),
                **{f"q_{kk}": v for kk, v in s.params["query"].items()},
                "default": bool(s.meta.get("default")), f"recall@{k}": recall(s.array("ids")),
                **{f"single_{kk}": v for kk, v in single.items()},
                **{f"full_{kk}": v for kk, v in full.items()},
                "qps_batch": _qps(s), "qps_single": (1e3 / single["p50_ms"]) if single["p50_ms"] else None,
                "speedup_p50_vs_flat": (flat_p50 / single["p50_ms"]) if flat_p50 and single["p50_ms"] else None,
                "build_s": bu.meta["build_s"] if bu else None,
                "index_mb": bu.meta["index_bytes"] / 2 ** 20 if bu and bu.meta.get("index_bytes") else None,
                "rss_mb": (bu.meta["rss_after"] - bu.meta["rss_before"]) / 2 ** 20 if bu else None,
                "nq": s.meta["nq"], "nsingle": s.meta["nsingle"], "full_path_agreement": full_agree,
                "load_average": s.meta["machine"]["load_average"],
                "faiss_threads": s.meta["machine"]["threads"].get("faiss_omp"),
            })
        baselines = {}
        for name, s in b["baseline"].items():
            m = dict(s.meta)
            row = {"name": name, "what": m.get("what", ""), "load_average": m["machine"]["load_average"]}
            if name == "matmul":
                row.update(gflops=m["gflops"], n=m["n"])
            elif "skipped" in m:
                row["skipped"] = m["skipped"]
            else:
                row.update(**{f"single_{kk}": v for kk, v in _p(s, "single_s").items()},
                           qps_batch=_qps(s), build_s=m.get("build_s"), filtered=m.get("filtered"),
                           threads=m.get("implicit_threads") or m["machine"]["threads"].get("faiss_omp"))
                if s.has_array("ids") and m.get("filtered"):
                    row[f"recall@{k}"] = recall(s.array("ids"))
                if m.get("default_threads_p50_ms") is not None:
                    row["what"] += (f" (with implicit's default num_threads=0: p50 {m['default_threads_p50_ms']:.2f} ms "
                                    f"over {m['default_threads_calls']} calls)")
                if m.get("index_bytes"):
                    row["index_mb"] = m["index_bytes"] / 2 ** 20
                if s.has_array("paired_recvec_s"):
                    row["paired"] = {"implicit": _p(s, "paired_implicit_s"), "recvec": _p(s, "paired_recvec_s"),
                                     "n": int(s.array("paired_recvec_s").size)}
            baselines[name] = row
        if flat is not None and "matmul" in baselines and _qps(flat):
            flops = 2.0 * (n or 0) * (d or 0)
            baselines["matmul"]["exact_gflops"] = _qps(flat) * flops / 1e9
            if "raw-flat" in baselines and baselines["raw-flat"].get("qps_batch"):
                baselines["matmul"]["raw_flat_gflops"] = baselines["raw-flat"]["qps_batch"] * flops / 1e9
            if "blas-exact" in baselines and baselines["blas-exact"].get("qps_batch"):
                baselines["matmul"]["blas_exact_gflops"] = baselines["blas-exact"]["qps_batch"] * flops / 1e9
        artifacts = []
        for spec, s in sorted(b["artifact"].items()):
            artifacts.append({"index": spec, "bytes": s.meta["bytes"], "raw_bytes": s.meta["raw_bytes"],
                              "size_ratio": s.meta["bytes"] / s.meta["raw_bytes"],
                              "load_p50_ms": float(np.median(s.meta["load_s"]) * 1e3),
                              "load_min_ms": float(min(s.meta["load_s"]) * 1e3), "files": s.meta["files"],
                              "load_default_threads_p50_ms": float(np.median(s.meta["load_default_threads_s"]) * 1e3)
                              if s.meta.get("load_default_threads_s") else None})
        machine = flat.meta["machine"] if flat is not None else None
        commands = []
        for s in [*b["search"], *b["baseline"].values(), *b["build"].values()]:
            cmd = s.meta.get("machine", {}).get("command")
            if cmd and cmd not in commands:
                commands.append(cmd)
        catalogues.append({"name": b["name"], "base": base, "n": n, "d": d, "k": k, "rows": rows,
                           "baselines": baselines, "artifacts": artifacts, "machine": machine, "commands": commands,
                           "load_averages": sorted({tuple(r["load_average"]) for r in rows})})
    catalogues.sort(key=lambda c: (c["base"]["catalogue"]["kind"] != "movielens", c["n"] or 0, c["d"] or 0))
    out_d = {"catalogues": catalogues}
    out_d["targets"] = latency_targets(catalogues)
    return out_d


def _kind(spec: str) -> str:
    import re

    m = re.match(r"^(flat|hnsw-noreorder|hnsw|ivfsq|ivfpq|ivf)", spec)
    return m.group(1) if m else spec


def _kind_order(spec: str) -> int:
    k = _kind(spec)
    return INDEX_CHOICES.index(k) if k in INDEX_CHOICES else len(INDEX_CHOICES)


def _name(row: dict) -> str:
    """'hnsw ef=32', 'flat' (a row's index and query setting)."""
    return row["index"] + ("" if row["setting"] == "-" else f" {row['setting']}")


def operating_point(rows: list[dict], k: int, min_recall: float) -> dict | None:
    """The row with the lowest single-query p50 among those reaching ``min_recall``."""
    ok = [r for r in rows if (r.get(f"recall@{k}") or 0) >= min_recall and r.get("single_p50_ms")]
    return min(ok, key=lambda r: r["single_p50_ms"]) if ok else None


def latency_targets(catalogues: list[dict]) -> list[dict]:
    """The issue's targets, each with the measured numbers and whether it is met."""
    out = []
    for c in catalogues:
        k, rows = c["k"], c["rows"]
        faiss_rows = [r for r in rows if r["backend"] == "faiss"]
        flat = next((r for r in faiss_rows if r["kind"] == "flat"), None)
        hnsw = [r for r in faiss_rows if r["kind"] == "hnsw"]
        bl = c["baselines"]
        if c["n"] and c["n"] >= 1_000_000 and c["d"] == 64 and flat and hnsw:
            op = operating_point(hnsw, k, 0.95)
            out.append({"catalogue": c["name"], "target": f"HNSW single-query p50 >= 30x faster than exact flat at "
                                                           f"filtered recall@{k} >= 0.95",
                        "measured": (f"{op['speedup_p50_vs_flat']:.1f}x at recall {op[f'recall@{k}']:.3f} "
                                     f"({_name(op)}: {op['single_p50_ms']:.3f} ms vs flat "
                                     f"{flat['single_p50_ms']:.2f} ms)") if op else "no HNSW setting reached 0.95",
                        "met": bool(op and op["speedup_p50_vs_flat"] >= 30)})
        if flat and "raw-flat" in bl and bl["raw-flat"].get("qps_batch"):
            mm = bl.get("matmul", {})
            ratio = flat["qps_batch"] / bl["raw-flat"]["qps_batch"]
            peak = (f"; exact search runs at {mm['exact_gflops']:.1f} GFLOP/s = "
                    f"{100 * mm['exact_gflops'] / mm['gflops']:.0f}% of the {mm['gflops']:.0f} GFLOP/s matmul peak "
                    f"(raw IndexFlatIP {mm.get('raw_flat_gflops', 0):.1f})") if mm.get("exact_gflops") else ""
            blas = bl.get("blas-exact", {})
            if blas.get("qps_batch"):
                peak += (f"; numpy BLAS scores + argpartition (exact, history excluded): {blas['qps_batch']:.0f} QPS = "
                         f"{blas['qps_batch'] / bl['raw-flat']['qps_batch']:.2f}x raw"
                         + (f", {mm['blas_exact_gflops']:.1f} GFLOP/s" if mm.get("blas_exact_gflops") else ""))
            out.append({"catalogue": c["name"], "target": "exact batch QPS (history excluded) >= raw IndexFlatIP.search QPS",
                        "measured": f"ItemIndex flat {flat['qps_batch']:.0f} vs {bl['raw-flat']['qps_batch']:.0f} QPS = "
                                    f"{ratio:.2f}x{peak}",
                        "met": ratio >= 1.0})
        if c["base"]["catalogue"]["kind"] == "movielens":
            imp = bl.get("implicit-faiss", {})
            if imp.get("single_p50_ms") is not None:
                # the issue names no index kind here: the fastest recvec index at recall >= 0.99 is judged
                # (on ML-1M's 3.5k items that can be the exact flat index); HNSW is shown beside it
                best, op = operating_point(faiss_rows, k, 0.99), operating_point(hnsw, k, 0.99)
                imp_text = (f"implicit FAISS: recall {imp.get(f'recall@{k}', float('nan')):.3f}, "
                            f"p50 {imp['single_p50_ms']:.3f} ms")
                shown = [best] + ([op] if op is not None and op is not best else [])
                parts = [f"{_name(r)}: recall {r[f'recall@{k}']:.4f}, p50 {r['single_p50_ms']:.3f} ms"
                         for r in shown if r is not None]
                out.append({"catalogue": c["name"],
                            "target": f"filtered recall@{k} >= 0.99 where implicit's FAISS wrapper keeps ~0.6, "
                                      "at equal or lower latency (fastest recvec index reaching 0.99)",
                            "measured": "; ".join(parts + [imp_text]) if best else "no index reached 0.99",
                            "met": bool(best and best["single_p50_ms"] <= imp["single_p50_ms"])})
            rc = bl.get("implicit-recalc", {})
            if rc.get("single_p50_ms") is not None and flat:
                for r in [flat] + ([operating_point(hnsw, k, 0.99)] if operating_point(hnsw, k, 0.99) else []):
                    out.append({"catalogue": c["name"],
                                "target": f"single-user query (history -> vector -> search -> exclusion -> ids), "
                                          f"{_name(r)}: p50 and p99 no slower than implicit "
                                          "recommend(recalculate_user=True)",
                                "measured": f"p50 {r['full_p50_ms']:.3f} vs {rc['single_p50_ms']:.3f} ms, p99 "
                                            f"{r['full_p99_ms']:.3f} vs {rc['single_p99_ms']:.3f} ms",
                                "met": bool(r["full_p50_ms"] <= rc["single_p50_ms"] and r["full_p99_ms"] <= rc["single_p99_ms"])})
            pair = rc.get("paired")
            if pair and pair["n"]:
                ri, ro = pair["implicit"], pair["recvec"]
                out.append({"catalogue": c["name"],
                            "target": "single-user query, flat, timed alternately call by call with implicit "
                                      "recommend(recalculate_user=True): p50 and p99 no slower",
                            "measured": f"p50 {ro['p50_ms']:.3f} vs {ri['p50_ms']:.3f} ms, p99 {ro['p99_ms']:.3f} vs "
                                        f"{ri['p99_ms']:.3f} ms ({pair['n']} users)",
                            "met": bool(ro["p50_ms"] <= ri["p50_ms"] and ro["p99_ms"] <= ri["p99_ms"])})
            for a in c["artifacts"]:
                dflt = (f"; {a['load_default_threads_p50_ms']:.0f} ms with BLAS at its default threads"
                        if a.get("load_default_threads_p50_ms") else "")
                out.append({"catalogue": c["name"], "target": f"artifact ({a['index']}) load <= 100 ms",
                            "measured": f"{a['load_p50_ms']:.1f} ms (p50 of 7 loads, page cache warm, BLAS 1 thread"
                                        f"{dflt})",
                            "met": a["load_p50_ms"] <= 100})
                if a["index"] == "flat":
                    out.append({"catalogue": c["name"], "target": "flat artifact size <= 1.2x the raw float32 vectors",
                                "measured": f"{a['bytes'] / 2 ** 20:.2f} MiB vs {a['raw_bytes'] / 2 ** 20:.2f} MiB = "
                                            f"{a['size_ratio']:.2f}x",
                                "met": a["size_ratio"] <= 1.2})
    return out


def sources_for(data: str | None, synthetic: tuple[int, ...] | None, dims: tuple[int, ...], *, seed: int = 0,
                threshold: float = 4.0) -> list[Source]:
    """The catalogues of one ``bench latency`` run: the dataset's ALS factors, then each synthetic
    size x dimension, smallest first."""
    out = []
    if data:
        out.append(Source("movielens", data=str(data), threshold=threshold))
    for n in sorted(synthetic or ()):
        for d in sorted(dims):
            out.append(Source("synthetic", spec=CatalogSpec(n=int(n), d=int(d), seed=seed)))
    if not out:
        raise RecvecError("nothing to measure: give --data PATH and/or --synthetic N")
    return out


def bench_latency(sources: list[Source], cfg: LatencyConfig, out: str | Path, *, force: bool = False,
                  progress: bool = False, report_only: bool = False, command: str | None = None) -> dict:
    """Run (unless ``report_only``), then metrics and report from everything stored under ``out``."""
    from recvec.benchmarks.report import latency_report, operating_rows

    out = Path(out)
    runner.RUN_CONTEXT["command"] = command
    ran = {} if report_only else run_latency(sources, cfg, out, force=force, progress=progress)
    metrics = latency_metrics(out)
    if not metrics["catalogues"]:
        raise RecvecError(f"no stored latency results under {out}; run without --report-only first")
    files = latency_report(metrics, out, command=command)
    summary = []
    for c in metrics["catalogues"]:
        for r in operating_rows(c["rows"], c["k"]):
            summary.append({kk: r.get(kk) for kk in ("catalogue", "backend", "index", "setting", "why",
                                                     f"recall@{c['k']}", "single_p50_ms", "single_p95_ms",
                                                     "single_p99_ms", "full_p50_ms", "full_p99_ms", "qps_batch",
                                                     "speedup_p50_vs_flat", "build_s", "index_mb", "rss_mb")})
    baselines = [{"catalogue": c["name"], **b} for c in metrics["catalogues"] for b in c["baselines"].values()]
    return {"summary": summary, "baselines": baselines, "targets": metrics["targets"], "ran": ran,
            "files": [str(f) for f in files]}
