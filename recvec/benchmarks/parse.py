"""Parse-time benchmark (``recvec bench parse``): our ratings.dat reader against the lab's pandas
python-engine read.

Both run in the same process, after pandas is imported (import time is not parse time). Ours is
the best of ``repeats`` runs (file read + parse + validation); the baseline, which is slow, runs
``baseline_repeats`` times. Both are single-threaded: pandas' C and python tokenizers use one
thread; the result also names the CPUs the process may use.
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


def benchmark_parse(data_dir, *, repeats: int = 3, baseline_repeats: int = 1) -> dict:
    """Time recvec's ratings parser and the lab's pandas python-engine read of ``data_dir``'s
    ratings.dat. Returns the rows, bytes, best and per-run seconds of each (``recvec_s``,
    ``baseline_s``, ...), ``speedup`` (baseline / ours) and the versions. DataError if there is no
    ratings.dat; RuntimeError if the two reads count different rows."""
    import pandas as pd  # noqa: F401 - imported before timing on purpose

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

    base = []
    n_base = None
    for _ in range(max(1, baseline_repeats)):
        t0 = time.perf_counter()
        df = _lab_read(path)
        base.append(time.perf_counter() - t0)
        n_base = len(df)

    if n != n_base:
        raise RuntimeError(f"row counts differ: recvec {n}, pandas python engine {n_base}")
    best_ours, best_base = min(ours), min(base)
    return {
        "file": str(path),
        "rows": n,
        "bytes": path.stat().st_size,
        "recvec_s": best_ours,
        "recvec_runs_s": ours,
        "recvec_threads": 1,
        "baseline": 'pandas.read_csv(sep="::", engine="python")',
        "baseline_s": best_base,
        "baseline_runs_s": base,
        "baseline_threads": 1,
        "speedup": best_base / best_ours,
        "cpus_available": cpus_available(),
        "python": sys.version.split()[0],
        "pandas": __import__("pandas").__version__,
        "numpy": __import__("numpy").__version__,
    }
