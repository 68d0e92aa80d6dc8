"""The thread-policy benchmark (``recvec bench busy``): the same units of work run on a quiet
machine and beside a bounded CPU-burning neighbour on every core, with recvec's default thread
policy and with the alternatives (one thread, all cores, the libraries' own defaults), so that the
defaults can be judged against the best setting found in each condition.

Each measurement runs in a fresh subprocess (thread settings must be in place before the OpenMP
runtimes load): ``child`` runs one unit and prints its seconds. Settings, conditions and repeats
are interleaved (setting by setting within a repeat), so machine drift spreads over all of them;
the median of the repeats is reported. Raw results are stored with ``ResultStore`` (resumable);
``busy_metrics`` and ``busy_report`` compute and write the tables from them.

Units (on the dataset given, default the embedded synthetic one):
  als_fit     implicit ALS fit, the lab's configuration (stage "fit")
  eval_exact  batched evaluation of the lab ALS model, dense scores (stage "score"; median of 5 in the child)
  eval_flat   evaluation through an exact flat index, query-time user vectors (stage "search_batch"; median of 5)
  eval_hnsw   the same through HNSW32 with recency-weighted fold-in (stage "search_batch")
  single      one recommendation per call through HNSW32, 300 users (stage "search_single")
  seq_train   one epoch of the sequence encoder on the first users (stage "train")
  encode      MiniLM encoding of catalogue titles (stage "encode")
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recvec.benchmarks import runner
from recvec.benchmarks.report import machine_markdown, markdown_table
from recvec.benchmarks.results import ResultStore, slug
from recvec.errors import RecvecError
from recvec.threads import available_cores

UNITS = ("als_fit", "eval_exact", "eval_flat", "eval_hnsw", "single", "seq_train", "encode")
#: Setting name -> environment for the child ("default": recvec as installed, nothing set).
SETTINGS = {
    "default": {},
    "threads=1": {"RECVEC_THREADS": "1"},
    "threads=all": {"RECVEC_THREADS": "{cores}"},
    "library defaults": {"RECVEC_THREAD_POLICY": "off"},
}
CONDITIONS = ("quiet", "busy")
#: Units short enough (well under a second) that one timing is mostly noise: run this many times in
#: the child, the median kept.
INNER = {"eval_exact": 5, "eval_flat": 5}
#: The defaults may be at most this much slower than the best setting of a condition.
TARGET_RATIO = 1.5
#: Environment variables that would pin thread counts for every setting: removed for the children.
_PINNING = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "RECVEC_THREADS",
            "RECVEC_THREAD_POLICY", "GOMP_SPINCOUNT")


@dataclass(frozen=True)
class BusyConfig:
    """What ``bench_busy`` runs: units, settings, conditions, repeats, the neighbour's processes
    (default one per core) and the unit sizes."""

    units: tuple[str, ...] = UNITS
    settings: tuple[str, ...] = tuple(SETTINGS)
    conditions: tuple[str, ...] = CONDITIONS
    repeats: int = 2
    burners: int | None = None
    single_users: int = 300
    seq_users: int = 1500
    encode_texts: int = 1000
    timeout_s: float = 900.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for name, values, allowed in (("units", self.units, UNITS), ("settings", self.settings, tuple(SETTINGS)),
                                      ("conditions", self.conditions, CONDITIONS)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise RecvecError(f"{name}: unknown {bad}; choose from {', '.join(allowed)}", params=(name,))
        if "default" not in self.settings:
            raise RecvecError("settings must include default (the setting being judged)", params=("settings",))
        runner_check = [("repeats", self.repeats), ("single_users", self.single_users),
                        ("seq_users", self.seq_users), ("encode_texts", self.encode_texts)]
        for name, v in runner_check:
            if not isinstance(v, int) or v < 1:
                raise RecvecError(f"{name} must be a positive integer, got {v!r}", params=(name,))


# ------------------------------------------------------------------------------------ the child


def child(args: dict) -> dict:
    """Run one unit in this (fresh) process and return {"seconds": ..., ...}; called by ``_run_child``
    through ``python -c``. ``args``: unit, data, sizes."""
    from recvec import threads
    from recvec.engine.data import load_dataset
    from recvec.engine.split import leave_last_out

    unit = args["unit"]
    ds = load_dataset(args["data"])
    split = leave_last_out(ds.ratings)
    out: dict = {"unit": unit}
    if unit in ("als_fit", "eval_exact", "eval_flat", "eval_hnsw", "single"):
        from recvec.engine.models.fit import ModelConfig, evaluate_model, fit_model

        if unit == "als_fit":
            t0 = time.perf_counter()
            fit_model(split, ds.catalog, ModelConfig("als"))
            out["seconds"] = time.perf_counter() - t0
        else:
            from recvec.engine.evaluate import evaluate_served
            from recvec.engine.weighting import RecencyWeighting
            from recvec.indexes.build import recommender_for
            from recvec.indexes.spec import IndexSpec

            cfg = ModelConfig("als")
            if unit in ("eval_hnsw", "single"):  # the recency-als preset's query-time fold-in
                cfg = ModelConfig("als", weighting=RecencyWeighting(half_life=1.5, scale=4.0))
            model = fit_model(split, ds.catalog, cfg)
            if unit in ("eval_exact", "eval_flat", "eval_hnsw"):
                if unit == "eval_exact":
                    run = lambda: evaluate_model(model, split)  # noqa: E731
                else:
                    rec = recommender_for(model, IndexSpec.parse("flat" if unit == "eval_flat" else "hnsw32"))
                    run = lambda: evaluate_served(rec, split, k=10)  # noqa: E731
                secs = []
                for _ in range(INNER.get(unit, 1)):
                    t0 = time.perf_counter()
                    ev = run()
                    secs.append(time.perf_counter() - t0)
                out.update(seconds=float(np.median(secs)), inner=secs, recall=ev.recall)
            else:
                rec = recommender_for(model, IndexSpec.parse("hnsw32"))
                hist = split.histories()
                users = np.random.default_rng(0).choice(len(hist), min(args["single_users"], len(hist)),
                                                        replace=False)
                ids = [split.items.id_of(hist[u]) for u in users]
                with threads.stage("search_single"):
                    rec.recommend(ids[0], 10)
                    times = []
                    for h in ids:
                        t0 = time.perf_counter()
                        rec.recommend(h, 10)
                        times.append(time.perf_counter() - t0)
                out.update(seconds=float(np.sum(times)), p50_ms=float(np.median(times) * 1e3))
    elif unit == "seq_train":
        from recvec.engine.models.sequence import SequenceConfig, train_sequence_encoder

        hist = split.histories()[: args["seq_users"]]
        t0 = time.perf_counter()
        train_sequence_encoder(hist, len(split.items), SequenceConfig(epochs=1))
        out["seconds"] = time.perf_counter() - t0
    elif unit == "encode":
        from recvec.engine.models.text import catalog_texts, get_embedder

        emb = get_embedder("minilm")
        texts = catalog_texts(ds.catalog.titles, ds.catalog.genres, emb.sep_token)[: args["encode_texts"]]
        emb.encode(texts[:8])  # warm
        t0 = time.perf_counter()
        emb.encode(texts)
        out["seconds"] = time.perf_counter() - t0
    else:
        raise RecvecError(f"unknown unit {unit!r}")
    out["runtime"] = threads.runtime_report()
    return out


def _child_env(setting: str, cores: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _PINNING}
    env.update({k: v.format(cores=cores) for k, v in SETTINGS[setting].items()})
    env["PYTHONWARNINGS"] = "ignore"
    return env


def _run_child(args: dict, setting: str, cores: int, timeout_s: float) -> dict:
    code = "import json, sys; from recvec.benchmarks.busy import child; print(json.dumps(child(json.loads(sys.argv[1]))))"
    try:
        res = subprocess.run([sys.executable, "-c", code, json.dumps(args)], env=_child_env(setting, cores),
                             capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RecvecError(f"bench busy: unit {args['unit']} ({setting}) ran over {timeout_s:.0f} s") from None
    if res.returncode != 0:
        raise RecvecError(f"bench busy: unit {args['unit']} ({setting}) failed: {res.stderr.strip()[-800:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ the neighbour


_BURN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nx = 0\nwhile time.monotonic() < end:\n    x += 1\n"


class Neighbour:
    """``n`` CPU-burning processes (each a bounded busy loop that ends by itself after ``limit_s``),
    started on enter and killed on exit."""

    def __init__(self, n: int, limit_s: float):
        self.n, self.limit_s = n, limit_s
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Neighbour:
        self.procs = [subprocess.Popen([sys.executable, "-c", _BURN, str(self.limit_s)]) for _ in range(self.n)]
        time.sleep(0.2)  # let them reach their loop
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait(timeout=10)


# ------------------------------------------------------------------------------------ run / metrics / report


def bench_busy(cfg: BusyConfig, out: str | Path, *, data: str = "synthetic", force: bool = False,
               progress: bool = True, report_only: bool = False, command: str | None = None) -> dict:
    """Run (or resume) every unit x condition x setting x repeat, store them under ``out``, and
    return the summary (rows, targets, files written)."""
    store = ResultStore(out)
    cores = available_cores()
    burners = cfg.burners or cores
    context = runner.RunContext(command)
    name = "synthetic-default" if data == "synthetic" else Path(str(data).rstrip("/")).name
    # the settings' order rotates with the repeat, so none is always the first after a busy cell
    todo = [(rep, cond, unit, setting) for rep in range(cfg.repeats) for unit in cfg.units
            for cond in cfg.conditions
            for setting in cfg.settings[rep % len(cfg.settings):] + cfg.settings[:rep % len(cfg.settings)]]
    if not report_only:
        bar = runner.Progress(len(todo), "bench busy", progress)
        try:
            for rep, cond, unit, setting in todo:
                group, params = _unit_key(cfg, name, unit, cond, setting, rep, burners)
                bar.step(f"{unit} {cond} {setting} #{rep + 1}")
                if force or not store.has(group, params):
                    args = {"unit": unit, "data": str(data), **_sizes(cfg)}
                    if cond == "busy":
                        with Neighbour(burners, cfg.timeout_s):
                            res = _run_child(args, setting, cores, cfg.timeout_s)
                    else:
                        res = _run_child(args, setting, cores, cfg.timeout_s)
                    store.save(group, params, {"result": res, "load_average": list(os.getloadavg()),
                                               "machine": runner.machine_info(context)})
                bar.done()
        finally:
            bar.close()
    metrics = busy_metrics(store, name, cfg, burners)
    files = busy_report(metrics, Path(out), command=command)
    return {**metrics, "files": [str(f) for f in files]}


def _unit_key(cfg: BusyConfig, name: str, unit: str, cond: str, setting: str, rep: int,
              burners: int) -> tuple[str, dict]:
    return f"busy/{slug(name)}/{unit}", {"unit": unit, "condition": cond, "setting": setting, "repeat": rep,
                                         "data": name, "burners": burners if cond == "busy" else 0,
                                         "sizes": _sizes(cfg), **({"inner": INNER[unit]} if unit in INNER else {})}


def _sizes(cfg: BusyConfig) -> dict:
    return {"single_users": cfg.single_users, "seq_users": cfg.seq_users, "encode_texts": cfg.encode_texts}


def busy_metrics(store: ResultStore, name: str, cfg: BusyConfig, burners: int) -> dict:
    """Median seconds per unit x condition x setting over the stored repeats, the best setting of each
    unit and condition, and whether the default is within TARGET_RATIO of it."""
    rows, targets, loads, machine = [], [], [], None
    for unit in cfg.units:
        for cond in cfg.conditions:
            cell: dict[str, float] = {}
            for setting in cfg.settings:
                secs = []
                for rep in range(cfg.repeats):
                    stored = store.get(*_unit_key(cfg, name, unit, cond, setting, rep, burners))
                    if stored is None:
                        continue
                    secs.append(float(stored.meta["result"]["seconds"]))
                    loads.append(stored.meta.get("load_average") or [])
                    machine = machine or stored.meta.get("machine")
                if secs:
                    cell[setting] = float(np.median(secs))
            if "default" not in cell:
                continue
            best_setting = min(cell, key=cell.get)
            ratio = cell["default"] / cell[best_setting]
            rows.append({"unit": unit, "condition": cond, **{f"{s} s": v for s, v in cell.items()},
                         "best": best_setting, "default / best": ratio})
            targets.append({"catalogue": name, "target": f"{unit} ({cond}): default within {TARGET_RATIO}x of "
                                                        f"the best setting", "met": ratio <= TARGET_RATIO,
                            "measured": f"default {cell['default']:.2f} s, best {best_setting} "
                                        f"{cell[best_setting]:.2f} s ({ratio:.2f}x)"})
    return {"summary": rows, "targets": targets, "settings": list(cfg.settings), "machine": machine,
            "load_averages": loads}


def busy_report(metrics: dict, out: Path, *, command: str | None = None) -> list[Path]:
    """busy.md (table, targets, machine, command) and busy.json under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    cols = [("unit", "unit", ""), ("condition", "condition", "")] + \
        [(f"{s} s", f"{s} s", ".2f") for s in metrics["settings"]] + \
        [("best", "best", ""), ("default / best", "default / best", ".2f")]
    md = ["# Thread policy on a quiet and a busy machine", "",
          "Median seconds per unit (fresh process each; a busy machine runs a CPU-burning process on every core).",
          "", markdown_table(metrics["summary"], cols), ""]
    md += [f"- [{'met' if t['met'] else 'NOT met'}] {t['target']}: {t['measured']}" for t in metrics["targets"]]
    md += ["", machine_markdown(metrics.get("machine"), metrics.get("load_averages", []))]
    if command:
        md += ["", f"Reproduce: `{command}`"]
    path = out / "busy.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    jpath = out / "busy.json"
    jpath.write_text(json.dumps({k: v for k, v in metrics.items() if k != "load_averages"}, indent=1, default=str)
                     + "\n", encoding="utf-8")
    return [path, jpath]


