"""One timed table read in a fresh process (``recvec bench read``): this module imports nothing
heavy at its top; the child imports pyarrow (csv, parquet, compute), pandas (pyarrow's to_numpy
loads it on first use) and recvec's data package before the clock starts, for both sides, so what
is timed is the read, and the peak memory (reset after the imports) is the read's."""

from __future__ import annotations

import time


def _status_kb(field: str) -> int | None:
    """A memory line of /proc/self/status in KiB (VmRSS: now, VmHWM: the peak), None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the process's peak RSS to its current RSS (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def read_once(path: str, which: str, queue) -> None:
    """Import, then time one read of ``path`` by ``which`` ("pyarrow": its reader alone;
    "pyarrow-system": the same on the system allocator, as recvec reads CSV; "recvec":
    ``load_dataset``, then its fingerprint, timed apart); put (seconds, peak RSS KiB, RSS KiB before
    the read, extra facts) on ``queue``."""
    import resource

    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    import concurrent.futures  # noqa: F401 - what load_dataset imports lazily, loaded before the clock
    import pandas  # noqa: F401 - pyarrow's to_numpy loads it on first use
    import pyarrow.compute  # noqa: F401

    import recvec.progress  # noqa: F401
    import recvec.threads  # noqa: F401
    from recvec.engine.data import load_dataset

    # The peak is this process's own: reset after the imports (ru_maxrss would also carry the peak
    # of the process that spawned this one, which exec does not clear).
    exact = _reset_peak() and _status_kb("VmHWM") is not None
    base = _status_kb("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    extra: dict = {"pyarrow_cpu_count": pa.cpu_count(), "pyarrow_io_threads": pa.io_thread_count()}
    t0 = time.perf_counter()
    if which in ("pyarrow", "pyarrow-system"):  # the reader alone (CSV: its default pool, or the system allocator)
        pool = pa.system_memory_pool() if which == "pyarrow-system" else None
        table = pq.read_table(path) if path.endswith(".parquet") else pacsv.read_csv(path, memory_pool=pool)
        seconds = time.perf_counter() - t0
        extra["rows"] = table.num_rows
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the data notes (time units) are not timed output
            ds = load_dataset(path)
        seconds = time.perf_counter() - t0
        extra["rows"] = len(ds.ratings)
        extra["string_ids"] = ds.ratings.user_labels is not None
    peak = _status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    extra["peak_exact"] = exact
    if which == "recvec":
        t1 = time.perf_counter()
        _ = ds.fingerprint
        extra["fingerprint_s"] = time.perf_counter() - t1
    queue.put((seconds, peak, base, extra))
