"""Parse-time benchmark: our ratings.dat reader against the lab's pandas python-engine read.

    python -m recvec.benchmarks.parse --data ../shared/data/ml-1m [--repeats 3] [--json]

Both run in the same process, after pandas is imported (import time is not parse time). Ours is
the best of --repeats runs (file read + parse + validation); the baseline, which takes seconds,
runs --baseline-repeats times (1 by default). Both are single-threaded: pandas' C and python
tokenizers use one thread; the report also shows the CPUs the process may use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _lab_read(path: Path):
    """The lab's reader, verbatim in spirit."""
    import pandas as pd

    return pd.read_csv(path, sep="::", engine="python", names=["user_id", "movie_id", "rating", "timestamp"])


def benchmark_parse(data_dir, *, repeats: int = 3, baseline_repeats: int = 1) -> dict:
    """Time recvec's ratings parser and the lab's pandas python-engine read of the same file."""
    import pandas as pd  # noqa: F401 - imported before timing on purpose

    from recvec.engine.data import parse_ratings

    path = Path(data_dir) / "ratings.dat"
    if not path.is_file():
        from recvec.errors import DataError

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
        "cpus_available": _cpus(),
        "python": sys.version.split()[0],
        "pandas": __import__("pandas").__version__,
        "numpy": __import__("numpy").__version__,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m recvec.benchmarks.parse", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="directory holding an ML-1M-format ratings.dat")
    ap.add_argument("--repeats", type=int, default=3, help="runs of our parser (best is reported)")
    ap.add_argument("--baseline-repeats", type=int, default=1, help="runs of the pandas python-engine read")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    from recvec.errors import RecvecError

    try:
        res = benchmark_parse(args.data, repeats=args.repeats, baseline_repeats=args.baseline_repeats)
    except RecvecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['file']}: {res['rows']:,} rows, {res['bytes'] / 1e6:.1f} MB; "
          f"{res['cpus_available']} CPUs available; python {res['python']}, pandas {res['pandas']}")
    print(f"  recvec parse_ratings      {res['recvec_s']:7.3f} s  (best of {len(res['recvec_runs_s'])}, "
          f"{res['recvec_threads']} thread)")
    print(f"  {res['baseline']}  {res['baseline_s']:7.3f} s  (best of {len(res['baseline_runs_s'])}, "
          f"{res['baseline_threads']} thread)")
    print(f"  speedup {res['speedup']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
