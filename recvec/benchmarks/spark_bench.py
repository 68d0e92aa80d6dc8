"""``recvec bench spark``: what Spark costs and buys on this machine, measured side by side.

- **Scale curve**: seeded synthetic interaction sets (:func:`write_interactions`: power-law item
  popularity, users uniform, epoch-second times, every row a positive) of each ``--sizes`` rows,
  written once as Parquet under ``OUT/data``. For each size, implicit's ALS (recvec's loader, the
  local split) and Spark's ALS (Spark reads the Parquet file, splits with window functions, fits)
  run one after the other, each in a fresh process whose peak resident memory — the process and
  its children, the JVM included — is sampled every 0.2 s; a side that runs past ``max_seconds`` is
  stopped and recorded as not finished (so is one that fails, with its error).
- **Encoding**: ``--encode`` generated item texts through the packaged MiniLM locally and on Spark,
  the time ratio and the largest difference between the two encodings of a sample of rows.
- **Accuracy** (``--data``: a MovieLens dataset): the split on Spark against the local split (rows
  identical?), ALS fitted by Spark and by implicit with the same configuration, Recall@10 of each.

Each measurement is a stored unit (:mod:`recvec.benchmarks.results`; a rerun resumes, ``force``
reruns); the report (``OUT/spark.md``, ``OUT/spark.json``) is built from the stored units only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recvec.benchmarks import runner
from recvec.benchmarks.report import markdown_table
from recvec.benchmarks.results import ResultStore
from recvec.checks import check_int
from recvec.errors import RecvecError


@dataclass(frozen=True)
class SparkBenchConfig:
    """What ``bench spark`` measures; ``master``/``conf`` the Spark side's session, ``max_seconds``
    the wall time after which a side is stopped and recorded as not finished."""

    sizes: tuple[int, ...] = (1_000_000, 10_000_000, 50_000_000)
    sides: tuple[str, ...] = ("implicit", "spark")
    factors: int = 64
    iterations: int = 10
    seed: int = 0
    encode: int = 100_000
    master: str = "local[2]"
    conf: tuple[tuple[str, str], ...] = (("spark.driver.memory", "12g"),)
    max_seconds: float = 1800.0
    regularization: float = 0.01
    accuracy_iterations: int = 20


def shape_of(rows: int) -> tuple[int, int]:
    """(users, items) of a synthetic set of ``rows`` rows: 100 rows per user, one item per 500 rows
    (at least 1,000)."""
    return max(100, rows // 100), max(1000, rows // 500)


def write_interactions(path: Path, rows: int, seed: int = 0) -> Path:
    """A seeded Parquet table ``user_id``, ``item_id``, ``timestamp`` of ``rows`` rows: items drawn
    with probability ∝ 1 / rank (power law), users uniformly, times uniform over 2000-2020 (so
    ties and repeated (user, item) pairs occur, as in event logs). Written to a temporary name and
    renamed; returns ``path``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_int("rows", rows, 1, 2**34)
    users, items = shape_of(rows)
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, items + 1))
    cdf /= cdf[-1]
    perm = rng.permutation(items)  # popular items are not simply the small ids
    chunk = 5_000_000
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("timestamp", pa.int64())])
    with pq.ParquetWriter(tmp, schema) as w:
        for s in range(0, rows, chunk):
            n = min(chunk, rows - s)
            item = perm[np.minimum(np.searchsorted(cdf, rng.random(n)), items - 1)] + 1
            w.write_table(pa.table({"user_id": rng.integers(1, users + 1, n), "item_id": item.astype(np.int64),
                                    "timestamp": rng.integers(946_684_800, 1_577_836_800, n)}, schema=schema))
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------ one measurement


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def measure(spec: dict, max_seconds: float) -> dict:
    """Run one worker task (:mod:`recvec.benchmarks.spark_worker`) in a fresh process; its JSON result
    with ``wall_s``, ``peak_rss_mb`` (the process tree's, sampled every 0.2 s), ``finished`` and,
    for a stopped or failed run, ``error``."""
    import psutil

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "recvec.benchmarks.spark_worker", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    ps = psutil.Process(proc.pid)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(ps))
            done.wait(0.2)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        out, err = proc.communicate(timeout=max_seconds)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the worker's session: it and its JVM
        out, err = proc.communicate()
        timed_out = True
    finally:
        done.set()
        watcher.join()
    result: dict = {"wall_s": time.perf_counter() - t0, "peak_rss_mb": peak[0] / 2**20}
    if timed_out:
        return {**result, "finished": False, "error": f"stopped after {max_seconds:.0f} s"}
    if proc.returncode != 0:
        tail = [ln for ln in (err or "").strip().splitlines() if ln.strip()][-3:]
        return {**result, "finished": False, "error": f"exit {proc.returncode}: {' | '.join(tail)[-400:]}"}
    return {**result, **json.loads(out.strip().splitlines()[-1]), "finished": True}


# ------------------------------------------------------------------------------ the run


def run_spark_bench(cfg: SparkBenchConfig, out: str | Path, *, data: str | None = None, force: bool = False,
                    say=None, command: str | None = None) -> int:
    """Run (or resume) every unit under ``out``; returns the number run. ``say``: a function taking
    one progress line (None: silent)."""
    out = Path(out)
    store = ResultStore(out)
    say = say or (lambda msg: None)
    context = runner.RunContext(command=command)
    spark = {"master": cfg.master, "conf": [list(kv) for kv in cfg.conf]}
    ran = 0

    def unit(group: str, params: dict, spec: dict, label: str) -> None:
        nonlocal ran
        if not force and store.has(group, params):
            return
        load_before = runner.load_average()
        say(f"{label}: running (load average {load_before})")
        r = measure(spec, cfg.max_seconds)
        r.update(load_before=load_before, load_after=runner.load_average(), machine=runner.machine_info(context))
        store.save(group, params, r)
        ran += 1
        took = f"{r['fit_s']:.1f} s fit" if "fit_s" in r else f"{r['wall_s']:.1f} s wall"
        say(f"{label}: {took}, "
            f"peak {r['peak_rss_mb']:,.0f} MB{'' if r['finished'] else ' — ' + r['error']}")

    if data:
        params = {"label": "accuracy", "data": str(data), "factors": cfg.factors, "iterations": cfg.accuracy_iterations,
                  "regularization": cfg.regularization, "seed": cfg.seed, **spark}
        unit("spark/accuracy", params, {"task": "accuracy", "path": str(data), **params}, "ML accuracy")
    for rows in cfg.sizes:
        path = out / "data" / f"interactions-{rows}-s{cfg.seed}.parquet"
        if not path.is_file() and any(force or not store.has("spark/scale", _scale_key(cfg, rows, s, spark))
                                      for s in cfg.sides):
            say(f"writing {path.name}")
            write_interactions(path, rows, cfg.seed)
        for side in cfg.sides:
            params = _scale_key(cfg, rows, side, spark)
            unit("spark/scale", params, {"task": "fit", "path": str(path), **params}, f"{rows:,} rows {side}")
    if cfg.encode:
        for side in ("local", "spark"):
            params = {"label": f"encode-{side}", "n": cfg.encode, "seed": cfg.seed, "side": side,
                      **(spark if side == "spark" else {})}
            unit("spark/encode", params, {"task": "encode", **params}, f"encode {cfg.encode:,} texts {side}")
    return ran


def _scale_key(cfg: SparkBenchConfig, rows: int, side: str, spark: dict) -> dict:
    return {"label": f"{rows}-{side}", "rows": rows, "side": side, "factors": cfg.factors,
            "iterations": cfg.iterations, "seed": cfg.seed, **(spark if side == "spark" else {})}


# ------------------------------------------------------------------------------ stored -> report


def spark_metrics(out: str | Path) -> dict:
    """The summary tables from the units stored under ``out``: ``scale`` (one row per size and side),
    ``encode`` (local vs Spark, time ratio, largest difference), ``accuracy``."""
    store = ResultStore(out)
    scale = []
    for s in store.units("spark/scale"):
        p, m = s.params, s.meta
        users, items = shape_of(p["rows"])
        scale.append({"rows": p["rows"], "users": users, "items": items, "side": p["side"],
                      "where": p.get("master", "local (implicit)"), "finished": m.get("finished"),
                      "prep_s": m.get("prep_s"), "fit_s": m.get("fit_s"), "peak_rss_mb": m.get("peak_rss_mb"),
                      "train_rows": m.get("train_rows"), "error": m.get("error"),
                      "threads": m["machine"]["threads"].get("cpus_available"),
                      "load": f"{m['load_before'][0]:.1f}-{m['load_after'][0]:.1f}" if m.get("load_before") else None})
    scale.sort(key=lambda r: (r["rows"], r["side"]))
    by = {(r["rows"], r["side"]): r for r in scale}
    for r in scale:
        other = by.get((r["rows"], "implicit"))
        if r["side"] == "spark" and other and r.get("fit_s") and other.get("fit_s"):
            r["fit_vs_implicit"] = r["fit_s"] / other["fit_s"]
    enc = {s.params["side"]: s.meta for s in store.units("spark/encode")}
    encode = None
    if {"local", "spark"} <= set(enc) and enc["local"].get("finished") and enc["spark"].get("finished"):
        a, b = enc["local"], enc["spark"]
        diff = float(np.max(np.abs(np.asarray(a["sample"]) - np.asarray(b["sample"])))) \
            if a["sample_rows"] == b["sample_rows"] else None
        encode = {"texts": a["texts"], "local_s": a["seconds"], "spark_s": b["seconds"],
                  "spark_vs_local": b["seconds"] / a["seconds"], "max_abs_diff": diff,
                  "local_peak_mb": a["peak_rss_mb"], "spark_peak_mb": b["peak_rss_mb"],
                  "local_threads": a.get("torch_threads"), "spark_tasks": b.get("tasks"),
                  "load": f"{a['load_before'][0]:.1f}-{b['load_after'][0]:.1f}"}
    accuracy = [{**s.params, **{k: v for k, v in s.meta.items() if k not in ("machine", "params", "group")}}
                for s in store.units("spark/accuracy")]
    largest = {side: max([r["rows"] for r in scale if r["side"] == side and r["finished"]], default=None)
               for side in ("implicit", "spark")}
    return {"scale": scale, "encode": encode, "accuracy": accuracy, "largest_finished": largest}


SCALE_COLUMNS = [("rows", "rows", ","), ("users", "users", ","), ("items", "items", ","), ("side", "side", ""),
                 ("where", "where", ""), ("finished", "finished", "yn"), ("prep_s", "read+split s", ".1f"),
                 ("fit_s", "fit s", ".1f"), ("fit_vs_implicit", "fit vs implicit", "x"),
                 ("peak_rss_mb", "peak MB", ",.0f"), ("load", "load avg", ""), ("error", "note", "")]


def spark_report(metrics: dict, out: str | Path, command: str | None = None) -> list[Path]:
    """``spark.md`` and ``spark.json`` under ``out``; returns their paths."""
    out = Path(out)
    lines = ["# recvec bench spark", ""]
    if command:
        lines += [f"Reproduce: `{command}`", ""]
    lines += ["## ALS fit: implicit (local) vs Spark", "", markdown_table(metrics["scale"], SCALE_COLUMNS), "",
              f"Largest size finished: {json.dumps(metrics['largest_finished'])}", ""]
    if metrics["encode"]:
        e = metrics["encode"]
        lines += ["## Item-text encoding (MiniLM, [CLS])", "",
                  markdown_table([e], [("texts", "texts", ","), ("local_s", "local s", ".1f"),
                                       ("spark_s", "Spark s", ".1f"), ("spark_vs_local", "Spark / local", "x"),
                                       ("max_abs_diff", "max |diff|", ".2e"), ("local_peak_mb", "local MB", ",.0f"),
                                       ("spark_peak_mb", "Spark MB", ",.0f"), ("load", "load avg", "")]), ""]
    for a in metrics["accuracy"]:
        lines += ["## Accuracy on MovieLens", "",
                  markdown_table([a], [("data", "data", ""), ("split_identical", "split identical", "yn"),
                                       ("train_rows", "train", ","), ("test_rows", "test", ","),
                                       ("implicit_recall", "implicit Recall@10", ".4f"),
                                       ("spark_recall", "Spark Recall@10", ".4f"), ("recall_diff", "diff", "+.4f"),
                                       ("implicit_fit_s", "implicit fit s", ".1f"),
                                       ("spark_fit_s", "Spark fit s", ".1f")]), ""]
    md = out / "spark.md"
    out.mkdir(parents=True, exist_ok=True)
    md.write_text("\n".join(lines))
    js = out / "spark.json"
    js.write_text(json.dumps(metrics, indent=1, default=str) + "\n")
    return [md, js]


def bench_spark(cfg: SparkBenchConfig, out: str | Path, *, data: str | None = None, force: bool = False,
                say=None, report_only: bool = False, command: str | None = None) -> dict:
    """Run (unless ``report_only``), then the report; returns the metrics, ``ran`` and ``files``.
    RecvecError when nothing is stored."""
    ran = 0 if report_only else run_spark_bench(cfg, out, data=data, force=force, say=say, command=command)
    metrics = spark_metrics(out)
    if not metrics["scale"] and not metrics["encode"] and not metrics["accuracy"]:
        raise RecvecError(f"no stored spark results under {out}; run without report_only first",
                          params=("report_only",))
    files = spark_report(metrics, out, command)
    return {**metrics, "ran": ran, "files": [str(f) for f in files], "config": asdict(cfg)}
