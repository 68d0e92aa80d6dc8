"""Read benchmark (``recvec bench read``): loading a large interactions table with recvec against
pyarrow's reader alone, in the same run, with peak memory; integer ids against string ids.

A seeded generator writes an ML-25M-sized file (default 25,000,095 rows: 162,541 users, 59,047
items, half-star ratings, epoch-second times; users in id order, items Zipf-distributed) as CSV
and Parquet, once with integer ids and once with string ids (users 'u' + 12 hex digits, items
ASIN-like 'B0' + 8 characters), into a temporary directory that is removed afterwards.

Each measurement runs in a fresh process (spawned; imports done before the clock starts), so
its peak resident memory is its own: ``peak_mb`` is the process's peak RSS, ``read_mb`` that minus
the RSS after the imports. recvec is ``load_dataset(path)`` (the file read, ids to int64 or
codes + labels, ratings and times checked, the catalogue of items with events); the baseline is
``pyarrow.csv.read_csv(path)`` / ``pyarrow.parquet.read_table(path)``. Both use pyarrow's thread
pool (its size is recorded). Measurements alternate baseline and recvec; the best of ``repeats``
is kept. The fingerprint recvec computes on first use (build, tune) is timed separately.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recvec.benchmarks.readproc import read_once
from recvec.benchmarks.runner import cpus_available, load_average
from recvec.checks import check_int

ML25M = {"rows": 25_000_095, "users": 162_541, "items": 59_047}


def _labels(rng: np.random.Generator, n: int, prefix: str, width: int, alphabet: str) -> np.ndarray:
    """n distinct random ids: prefix + width characters of alphabet (seeded), in random order."""
    chars = np.array(list(alphabet))
    out: set[str] = set()
    while len(out) < n:
        draw = rng.integers(0, len(chars), size=(n, width))
        out.update(prefix + "".join(r) for r in chars[draw])
    return rng.permutation(np.array(sorted(out)[:n]))


def write_interactions(directory: str | Path, *, rows: int = ML25M["rows"], users: int = ML25M["users"],
                       items: int = ML25M["items"], seed: int = 0, string_ids: bool = False,
                       formats: tuple[str, ...] = ("csv", "parquet")) -> dict[str, Path]:
    """Write a synthetic interactions table (columns user_id, item_id, rating, timestamp) of ``rows``
    rows into ``directory`` as each of ``formats``; returns format -> path. Seeded: the same
    arguments give the same files."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    check_int("rows", rows, 1, 2**40)
    rng = np.random.default_rng(seed)
    u = np.sort(rng.integers(0, users, rows))
    i = ((rng.zipf(1.3, rows) - 1) % items).astype(np.int64)
    r = rng.integers(1, 11, rows).astype(np.float64) / 2
    t = rng.integers(789_652_009, 1_574_327_703, rows)
    if string_ids:
        ul = _labels(rng, users, "u", 12, "0123456789abcdef")
        il = _labels(rng, items, "B0", 8, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        ucol = pa.DictionaryArray.from_arrays(pa.array(u.astype(np.int32)), pa.array(ul)).cast(pa.string())
        icol = pa.DictionaryArray.from_arrays(pa.array(i.astype(np.int32)), pa.array(il)).cast(pa.string())
    else:
        ucol, icol = pa.array(u + 1), pa.array(i + 1)
    table = pa.table({"user_id": ucol, "item_id": icol, "rating": r, "timestamp": t})
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kind = "str" if string_ids else "int"
    out = {}
    for fmt in formats:
        path = directory / f"interactions-{kind}.{fmt}"
        if fmt == "csv":
            pacsv.write_csv(table, path)
        else:
            pq.write_table(table, path)
        out[fmt] = path
    return out


# ------------------------------------------------------------------------------ one measurement


def _measure(path: Path, which: str) -> dict:
    import multiprocessing as mp
    import queue as queues

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=read_once, args=(str(path), which, queue))
    proc.start()
    try:
        while True:  # until the child answers, or dies without answering (its traceback is on stderr)
            try:
                seconds, peak_kb, base_kb, extra = queue.get(timeout=1.0)
                break
            except queues.Empty:
                if not proc.is_alive() and queue.empty():
                    proc.join()
                    raise RuntimeError(f"the {which} read of {path.name} failed (exit code {proc.exitcode})") from None
    finally:
        proc.join()
    if proc.exitcode:
        raise RuntimeError(f"the {which} read of {path.name} failed (exit code {proc.exitcode})")
    return {"seconds": seconds, "peak_mb": peak_kb / 1024, "read_mb": (peak_kb - base_kb) / 1024, **extra}


def benchmark_read(*, rows: int = ML25M["rows"], repeats: int = 3, seed: int = 0, tmp: str | None = None,
                   formats: tuple[str, ...] = ("csv", "parquet"), keep: bool = False, progress=None) -> dict:
    """Generate the tables (integer and string ids) in a temporary directory under ``tmp`` and time
    recvec's load against pyarrow's read of each (for CSV also pyarrow's read on the system
    allocator, the pool recvec reads CSV with), ``repeats`` times alternately in fresh processes.
    Returns the rows (one per format x id kind: best seconds, peak and read memory of each side,
    the ratio recvec / pyarrow, the string-id cost), the machine's load average before and after,
    the CPUs and pyarrow's thread counts. The directory is removed unless ``keep``."""
    import pyarrow as pa

    check_int("repeats", repeats, 1, 1000)
    root = Path(tempfile.mkdtemp(prefix="recvec-bench-read-", dir=tmp))
    say = progress or (lambda msg: None)
    load_before = load_average()
    results = []
    try:
        for string_ids in (False, True):
            t0 = time.perf_counter()
            paths = write_interactions(root, rows=rows, seed=seed, string_ids=string_ids, formats=formats)
            say(f"wrote {', '.join(p.name for p in paths.values())} ({time.perf_counter() - t0:.0f} s)")
            for fmt, path in paths.items():
                sides = ("pyarrow", "pyarrow-system", "recvec") if fmt == "csv" else ("pyarrow", "recvec")
                runs: dict[str, list[dict]] = {w: [] for w in sides}
                for _ in range(repeats):
                    for which in sides:
                        runs[which].append(_measure(path, which))
                        say(f"{path.name} {which}: {runs[which][-1]['seconds']:.2f} s")
                best = {w: min(r, key=lambda x: x["seconds"]) for w, r in runs.items()}
                ours, base = best["recvec"], best["pyarrow"]
                if ours["rows"] != base["rows"]:
                    raise RuntimeError(f"{path.name}: recvec read {ours['rows']} rows, pyarrow {base['rows']}")
                results.append({
                    "format": fmt, "ids": "string" if string_ids else "integer", "rows": ours["rows"],
                    "bytes": path.stat().st_size, "pyarrow": "pyarrow.parquet.read_table" if fmt == "parquet"
                    else "pyarrow.csv.read_csv",
                    "pyarrow_s": base["seconds"], "recvec_s": ours["seconds"], "ratio": ours["seconds"] / base["seconds"],
                    "pyarrow_runs_s": [r["seconds"] for r in runs["pyarrow"]],
                    "recvec_runs_s": [r["seconds"] for r in runs["recvec"]],
                    "pyarrow_peak_mb": max(r["peak_mb"] for r in runs["pyarrow"]),
                    "recvec_peak_mb": max(r["peak_mb"] for r in runs["recvec"]),
                    "pyarrow_read_mb": max(r["read_mb"] for r in runs["pyarrow"]),
                    "recvec_read_mb": max(r["read_mb"] for r in runs["recvec"]),
                    "fingerprint_s": min(r["fingerprint_s"] for r in runs["recvec"]),
                    "pyarrow_cpu_count": base["pyarrow_cpu_count"], "pyarrow_io_threads": base["pyarrow_io_threads"],
                })
                if "pyarrow-system" in best:  # recvec reads CSV on the system allocator: that baseline too
                    results[-1].update({
                        "pyarrow_system_s": best["pyarrow-system"]["seconds"],
                        "ratio_vs_system": ours["seconds"] / best["pyarrow-system"]["seconds"],
                        "pyarrow_system_runs_s": [r["seconds"] for r in runs["pyarrow-system"]]})
            if not keep:
                for path in paths.values():
                    path.unlink()
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    by = {(r["format"], r["ids"]): r for r in results}
    for r in results:
        other = by.get((r["format"], "integer"))
        if r["ids"] == "string" and other:
            r["string_cost_vs_integer"] = r["recvec_s"] / other["recvec_s"]
    return {"rows": results, "load_average_before": load_before, "load_average_after": load_average(),
            "cpus_available": cpus_available(), "pyarrow": pa.__version__, "python": sys.version.split()[0],
            "numpy": np.__version__, "kept": str(root) if keep else None, "pid": os.getpid()}
