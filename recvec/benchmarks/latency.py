"""Latency benchmark (``recvec bench latency``): run -> store -> metrics -> report, per catalogue.

Catalogues (:mod:`recvec.benchmarks.datasets`): a MovieLens dataset (its ALS item factors; users'
train histories, user vectors folded in at query time) and synthetic structured catalogues
(:mod:`recvec.benchmarks.catalogs`).

For every index kind (exact flat and each approximate kind) on every backend (FAISS in process;
any served backend -- Milvus Lite or server, PostgreSQL + pgvector -- through :mod:`recvec.benchmarks.served`)
the index is built once (build time, serialised bytes, resident-memory growth; for a served
backend the load time and rows/s) and each query-time setting (efSearch, nprobe;
:mod:`recvec.benchmarks.sweep`) is measured on it:

- batch: all queries in one ``search`` call with their histories excluded (best of ``repeats``);
  the returned ids are stored and give the filtered recall@k against the exact flat index;
- single: one query per call, the bare exclusion-aware index search for a ready query vector;
- full path: one query per call as a service sees it -- history ids -> user vector -> search with
  the history excluded -> external ids (``Recommender.recommend``);
- concurrent: ``clients`` threads (8) each sending one query per call at once (FAISS: sharing the
  in-process index; a served backend: a connection each), per-call p50/p99 and queries/s.

The baselines (:mod:`recvec.benchmarks.baselines`: raw FAISS, implicit, numpy BLAS, the matmul
peak) run in the same run on the same vectors and users; for MovieLens also artifact size and load
time. Each unit is stored through :mod:`recvec.benchmarks.results` (a rerun resumes); the metrics
(:func:`latency_metrics`) and the report are computed from the stored results only.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recvec.benchmarks import runner, served
from recvec.benchmarks.baselines import measure_latency_baseline
from recvec.benchmarks.datasets import Prepared, Source, prepare
from recvec.benchmarks.metrics import (
    compute_latency_metrics,
    operating_rows,
    recall_against,
)
from recvec.benchmarks.report import latency_report
from recvec.benchmarks.results import ResultStore, Stored, canonical, slug
from recvec.benchmarks.sweep import (
    EF_SEARCH,
    INDEX_KINDS,
    query_settings,
    search_kwargs,
)
from recvec.checks import SEED_MAX, check_int
from recvec.errors import RecvecError
from recvec.indexes import backends
from recvec.indexes.build import build_artifact, open_index
from recvec.indexes.spec import IndexSpec


@dataclass(frozen=True)
class LatencyConfig:
    """What ``bench latency`` measures per catalogue: ``k`` results per query; ``queries`` users
    (batch search, recall), ``single`` of them timed one query per call after ``warmup`` untimed
    calls; batch timings best of ``repeats``; the swept ``ef_search`` / ``nprobe`` (None: powers of
    two up to nlist); ``matmul_n`` the size of the matmul measuring the machine's peak. RecvecError
    for out-of-range values or backends without faiss."""

    k: int = 10
    indexes: tuple[str, ...] = INDEX_KINDS
    queries: int = 1000  # users per catalogue: batch search and recall
    single: int = 300  # of them, timed one query per call
    repeats: int = 2  # batch timings (best kept)
    warmup: int = 5
    ef_search: tuple[int, ...] = EF_SEARCH
    nprobe: tuple[int, ...] | None = None  # None: powers of two up to nlist
    backends: tuple[str, ...] = ("faiss",)
    baselines: bool = True
    artifact: bool = True
    milvus_queries: int = 200  # users searched on each served backend (Milvus, pgvector)
    matmul_n: int = 2048  # size of the float32 matmul that measures the machine's peak
    seed: int = 0
    clients: int = 8  # concurrent clients (threads; a connection each on a served backend)
    uris: tuple[tuple[str, str], ...] = ()  # (backend, URI) of served backends
    local_servers: bool = False  # start a local server for each served backend given no URI

    def __post_init__(self):
        for name in ("k", "queries", "single", "repeats", "milvus_queries", "matmul_n", "clients"):
            check_int(name, getattr(self, name))
        check_int("seed", self.seed, 0, SEED_MAX)
        bad = [b for b in self.backends if b not in backends.NAMES]
        if bad:
            raise RecvecError(f"backends: unknown {bad}; choose from {', '.join(backends.NAMES)}", params=("backends",))
        if backends.DEFAULT not in self.backends:
            raise RecvecError(f"backends must include {backends.DEFAULT} (the exact flat index is the reference)",
                              params=("backends",))

    def timing(self) -> dict:
        """The timing settings, as stored in each timed unit's params."""
        return {"single": self.single, "repeats": self.repeats, "warmup": self.warmup}


QUICK = dict(queries=200, single=60, repeats=1, ef_search=(16, 64, 256), nprobe=None, matmul_n=1024)


# ------------------------------------------------------------------------------- the run


class _Run:
    """One catalogue's units."""

    def __init__(self, src: Source, cfg: LatencyConfig, store: ResultStore, force: bool, progress: bool,
                 context: runner.RunContext, targets: dict[str, served.Target] | None = None):
        self.src, self.cfg, self.store, self.force, self.progress = src, cfg, store, force, progress
        self.context = context
        self.targets = targets or {}
        self.base = {"catalogue": src.params(), "queries": cfg.queries, "k": cfg.k, "seed": cfg.seed}
        self.p: Prepared | None = None
        self.gt: np.ndarray | None = None

    def label(self, backend: str) -> str:
        """The name results are stored and shown under: the backend, or e.g. "milvus-lite"."""
        return self.targets[backend].label if backend in self.targets else backend

    def group(self, kind: str) -> str:
        return f"latency/{self.src.name}/{kind}"

    def machine(self) -> dict:
        return runner.machine_info(self.context)

    # -- keys --------------------------------------------------------------------------------
    def build_key(self, backend: str, spec: str) -> dict:
        return {"label": f"{backend}-{spec}", "base": self.base, "backend": backend, "index": spec}

    def search_key(self, backend: str, spec: str, setting: dict) -> dict:
        q = search_kwargs(setting)
        label = f"{backend}-{spec}-" + ("-".join(f"{k}{v}" for k, v in q.items()) or "exact")
        return {"label": label, "base": self.base, "backend": backend, "index": spec, "query": q,
                "timing": self.cfg.timing(), "clients": self.cfg.clients,
                **({"milvus_queries": self.cfg.milvus_queries} if backend != backends.DEFAULT else {})}

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
        return query_settings(b.meta["describe"], self.cfg.k, ef_search=self.cfg.ef_search, nprobe=self.cfg.nprobe)

    def pending(self) -> list[tuple]:
        """Work items left: ("index", backend, spec) / ("baseline", name) / ("artifact", spec)."""
        out: list[tuple] = []
        for backend in self.cfg.backends:
            label = self.label(backend)
            for spec in self.specs(backend):
                settings = None if self.force else self._settings_if_built(label, spec)
                if settings is None or any(not self.done(self.group("search"), self.search_key(label, spec, s))
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
        return [s for s in self.cfg.indexes if served.supports(self.targets[backend], s)]

    def baseline_names(self) -> list[str]:
        names = ["matmul", "raw-flat", "blas-exact", "implicit-exact", "implicit-faiss"]
        encoder = self.src.encoder
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
        self.p = prepare(self.src, queries=self.cfg.queries, seed=self.cfg.seed, store=self.store, force=self.force,
                         progress=self.progress, context=self.context)
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
        return recall_against(ids, self.gt, self.cfg.k)

    # -- indexes -----------------------------------------------------------------------------
    def run_index(self, backend: str, spec_text: str) -> dict:
        if backend != backends.DEFAULT:
            return served.run_served(self, self.targets[backend], spec_text)
        spec = IndexSpec.parse(spec_text)
        built = runner.build_timed(self.p.vectors, spec, seed=self.cfg.seed)
        self.store.save(self.group("build"), self.build_key(backend, spec_text),
                        {"build_s": built.build_s, "index_bytes": built.index_bytes, "rss_before": built.rss_before,
                         "rss_after": built.rss_after, "describe": built.describe, "n": len(self.p.vectors),
                         "d": int(self.p.vectors.shape[1]), "raw_bytes": int(self.p.vectors.nbytes),
                         "machine": self.machine()})
        settings = query_settings(built.describe, self.cfg.k, ef_search=self.cfg.ef_search, nprobe=self.cfg.nprobe)
        rec = self.p.recommender(built.index)
        last = {}
        for s in settings:
            key = self.search_key(backend, spec_text, s)
            if self.done(self.group("search"), key):
                continue
            last = self._measure(built.index, rec, s, key)
        return last

    def _measure(self, index, rec, setting: dict, key: dict) -> dict:
        p, cfg = self.p, self.cfg
        kw = search_kwargs(setting)
        q, h, k = p.queries, p.histories, cfg.k
        result: dict = {}

        def batch():
            result["ids"] = index.search(q, k, exclude=h, **kw)[0]

        index.search(q[:8], k, exclude=h[:8], **kw)  # untimed warm-up (thread pools, first-call checks)
        batch_s = runner.time_batch(batch, cfg.repeats)
        ids = result["ids"]
        n1 = min(cfg.single, len(q))
        ext = [p.ids[x] for x in h[:n1]]
        full_ids = np.empty((n1, k), dtype=p.ids.dtype)  # int64, or strings for brought vectors with string ids

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
            # cfg.clients threads sharing the in-process index, one query per call each
            calls = [lambda i: index.search(q[i:i + 1], k, exclude=[h[i]], **kw)] * cfg.clients
            conc, wall = runner.time_concurrent(calls, n1)
        full_rows = rec.items.rows(full_ids.ravel()).reshape(full_ids.shape)
        if key["index"] == "flat" and key["backend"] == "faiss":
            self.gt = ids
        recall = self._recall(ids)
        self.store.save(self.group("search"), key,
                        {"batch_s": batch_s, "nq": len(q), "nsingle": n1, "default": bool(setting.get("default")),
                         "recall_at_run": recall, "single_threads": single_threads, "clients": cfg.clients,
                         "conc_wall_s": wall, "machine": self.machine()},
                        {"ids": ids.astype(np.int32), "single_s": single, "full_s": full_s,
                         "full_ids": full_rows.astype(np.int32), "conc_s": conc})
        return {"recall": f"{recall:.3f}" if recall is not None else "-", "p50": f"{np.median(single) * 1e3:.2f}ms"}

    # -- baselines ---------------------------------------------------------------------------
    def run_baseline(self, name: str) -> None:
        meta, arrays = measure_latency_baseline(name, self.p, self.cfg, matmul_n=self.cfg.matmul_n)
        self.store.save(self.group("baseline"), self.baseline_key(name), {**meta, "machine": self.machine()}, arrays)

    # -- artifact ----------------------------------------------------------------------------
    def run_artifact(self, spec_text: str) -> None:
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
                         "path": str(dest), "machine": self.machine()})


def run_latency(sources: list[Source], cfg: LatencyConfig, out: str | Path, *, force: bool = False,
                progress: bool = False, context: runner.RunContext | None = None) -> dict:
    """Run (or resume) every catalogue, storing each unit under ``out``; returns {catalogue name:
    units run}. ``force`` reruns stored units; ``context`` is recorded with each unit."""
    store = ResultStore(out)
    context = context or runner.RunContext()
    ran = {}
    targets = served.resolve_targets(cfg.backends, dict(cfg.uris), cfg.local_servers, Path(out), progress) \
        if sources else {}
    try:
        for src in sources:
            ran[src.name] = _Run(src, cfg, store, force, progress, context, targets).run()
    finally:
        served.stop_targets(targets)
    return ran


# ------------------------------------------------------------------------------- stored -> metrics


def _keep_latest(units: dict, key, s: Stored) -> None:
    """units[key] = s unless the stored unit there was measured later."""
    old = units.get(key)
    if old is None or s.measured_at >= old.measured_at:
        units[key] = s


def stored_catalogues(out: str | Path) -> list[dict]:
    """The latency units stored under ``out``, per catalogue (first seen first): ``name``, ``base``
    and the latest unit of each build / search / baseline / artifact, read into memory -- the input
    of :func:`recvec.benchmarks.metrics.compute_latency_metrics`."""
    blocks: dict[str, dict] = {}
    for s in ResultStore(out).units():
        if not s.group.startswith("latency/") or s.group.endswith("/model"):
            continue
        base = s.params.get("base")
        b = blocks.setdefault(canonical(base), {"base": base, "name": s.group.split("/")[1], "build": {},
                                                "search": {}, "baseline": {}, "artifact": {}})
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
    for b in blocks.values():
        for kind in ("build", "baseline", "artifact"):
            b[kind] = {key: s.loaded() for key, s in b[kind].items()}
        b["search"] = [s.loaded() for s in b["search"].values()]
    return list(blocks.values())


def latency_metrics(out: str | Path) -> dict:
    """The tables' numbers (``{"catalogues", "targets"}``, see
    :func:`recvec.benchmarks.metrics.compute_latency_metrics`) from the results stored under ``out``."""
    return compute_latency_metrics(stored_catalogues(out))


def bench_latency(sources: list[Source], cfg: LatencyConfig, out: str | Path, *, force: bool = False,
                  progress: bool = False, report_only: bool = False, command: str | None = None) -> dict:
    """Run (unless ``report_only``), then metrics and report from everything stored under ``out``.

    Returns ``summary`` (operating rows per catalogue), ``baselines``, ``targets``, ``ran`` (units
    run per catalogue) and ``files`` (the report's paths). RecvecError when nothing is stored."""
    out = Path(out)
    context = runner.RunContext(command=command)
    ran = {} if report_only else run_latency(sources, cfg, out, force=force, progress=progress, context=context)
    metrics = latency_metrics(out)
    if not metrics["catalogues"]:
        raise RecvecError(f"no stored latency results under {out}; run without report_only first",
                          params=("report_only",))
    files = latency_report(metrics, out, command=command)
    summary = []
    for c in metrics["catalogues"]:
        for r in operating_rows(c["rows"], c["k"]):
            summary.append({kk: r.get(kk) for kk in ("catalogue", "backend", "index", "setting", "why",
                                                     f"recall@{c['k']}", "coverage", "reachable_share",
                                                     "single_p50_ms", "single_p95_ms",
                                                     "single_p99_ms", "full_p50_ms", "full_p99_ms", "qps_batch",
                                                     "speedup_p50_vs_flat", "build_s", "index_mb", "rss_mb", "clients",
                                                     "conc_p50_ms", "conc_p99_ms", "conc_qps", "load_s", "rows_per_s",
                                                     "index_s", "fallbacks")})
    baselines = [{"catalogue": c["name"], **b} for c in metrics["catalogues"] for b in c["baselines"].values()]
    return {"summary": summary, "baselines": baselines, "targets": metrics["targets"], "ran": ran,
            "files": [str(f) for f in files]}
