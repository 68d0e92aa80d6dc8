"""Parse-time benchmark (``recvec bench parse``): our ratings.dat reader against its peers, in the
same process: pyarrow's CSV reader alone (what recvec's fast path is built on: delimiter ':', the
doubled colon's empty columns skipped, one thread) and the lab's pandas python-engine read.

All run after pandas and pyarrow are imported (import time is not parse time). Ours and
pyarrow's are the best of ``repeats`` runs (ours: file read + parse + every check, and the
line-numbered scan only if a check fails); the lab's, which is slow, runs ``baseline_repeats``
times. All are single-threaded; the result also names the CPUs the process may use.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from recvec.benchmarks.runner import cpus_available
from recvec.engine.data import parse_ratings
from recvec.errors import DataError


def _lab_read(path: Path):
    """The lab's reader, verbatim in spirit."""
    import pandas as pd

    return pd.read_csv(path, sep="::", engine="python", names=["user_id", "movie_id", "rating", "timestamp"])


def _pyarrow_read(path: Path):
    """pyarrow's CSV reader alone on a '::' file, one thread: the four value columns as numpy."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    names = ["u", "_a", "i", "_b", "r", "_c", "t"]
    table = pacsv.read_csv(
        str(path), read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=":", quote_char=False),
        convert_options=pacsv.ConvertOptions(include_columns=["u", "i", "r", "t"],
                                             column_types={"u": pa.int64(), "i": pa.int64(), "r": pa.float64(),
                                                           "t": pa.int64()}))
    return [table.column(c).to_numpy() for c in ("u", "i", "r", "t")]


def benchmark_parse(data_dir, *, repeats: int = 3, baseline_repeats: int = 1) -> dict:
    """Time recvec's ratings parser, pyarrow's CSV reader alone and the lab's pandas python-engine
    read of ``data_dir``'s ratings.dat. Returns the rows, bytes, best and per-run seconds of each
    (``recvec_s``, ``pyarrow_s``, ``baseline_s``, ...), ``speedup`` (lab / ours), ``vs_pyarrow``
    (ours / pyarrow alone) and the versions. DataError if there is no ratings.dat; RuntimeError if
    the reads count different rows."""
    import pandas as pd  # noqa: F401 - imported before timing on purpose
    import pyarrow  # noqa: F401 - likewise

    path = Path(data_dir) / "ratings.dat"
    if not path.is_file():
        raise DataError(f"ratings.dat not found in {data_dir} (the parse benchmark needs an ML-1M '::' directory)")

    ours = []
    n = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        r = parse_ratings(path.read_bytes(), sep=b"::", fname="ratings.dat")
        ours.append(time.perf_counter() - t0)
        n = len(r)

    arrow = []
    n_arrow = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        cols = _pyarrow_read(path)
        arrow.append(time.perf_counter() - t0)
        n_arrow = len(cols[0])

    base = []
    n_base = None
    for _ in range(max(1, baseline_repeats)):
        t0 = time.perf_counter()
        df = _lab_read(path)
        base.append(time.perf_counter() - t0)
        n_base = len(df)

    if not n == n_base == n_arrow:
        raise RuntimeError(f"row counts differ: recvec {n}, pyarrow {n_arrow}, pandas python engine {n_base}")
    best_ours, best_base, best_arrow = min(ours), min(base), min(arrow)
    return {
        "file": str(path),
        "rows": n,
        "bytes": path.stat().st_size,
        "recvec_s": best_ours,
        "recvec_runs_s": ours,
        "recvec_threads": 1,
        "pyarrow_alone": "pyarrow.csv.read_csv(delimiter=':', 7 columns, 4 kept, use_threads=False)",
        "pyarrow_s": best_arrow,
        "pyarrow_runs_s": arrow,
        "pyarrow_threads": 1,
        "vs_pyarrow": best_ours / best_arrow,
        "baseline": 'pandas.read_csv(sep="::", engine="python")',
        "baseline_s": best_base,
        "baseline_runs_s": base,
        "baseline_threads": 1,
        "speedup": best_base / best_ours,
        "cpus_available": cpus_available(),
        "python": sys.version.split()[0],
        "pandas": __import__("pandas").__version__,
        "pyarrow": __import__("pyarrow").__version__,
        "numpy": __import__("numpy").__version__,
    }
