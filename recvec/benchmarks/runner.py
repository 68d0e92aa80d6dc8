"""The run stage's helpers: the machine record stored with every unit, timers, resident memory,
the timed build of an index, and the progress bar.

Everything timed here runs with Python's garbage collector paused (not collected first: a full
collection of a large heap is itself slow); single-query timings call the function once per query
(after a few untimed warm-up calls), batch timings keep the best of ``repeats`` runs. Each timing
is stored with the thread counts it ran under (``threads()``).

What is being run (the command line) travels in a :class:`RunContext` passed to the runs; nothing
here keeps state between calls.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from recvec.indexes import backends
from recvec.indexes.spec import IndexSpec
from recvec.progress import progress as progress_lines

#: Baseline libraries whose versions are recorded with every run.
LIBRARIES = ("numpy", "scipy", "faiss", "implicit", "threadpoolctl", "pymilvus", "milvus_lite", "milvus", "psycopg",
             "pgserver", "torch")


@dataclass(frozen=True)
class RunContext:
    """What is running, recorded with every unit's machine record: ``command`` is the command line
    as typed (None when called as a library)."""

    command: str | None = None


# ------------------------------------------------------------------------------- the machine


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages (rounded to 0.01); [] where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return []


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpus_available() -> int:
    """CPUs this process may run on (its affinity mask; else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads() -> dict:
    """Thread counts timings run under: ``cpus_available``, ``faiss_omp`` (FAISS OpenMP), ``pools``
    (each BLAS/OpenMP pool: api, threads, lib, from threadpoolctl) and ``OPENBLAS_NUM_THREADS`` if set."""
    out: dict[str, Any] = {"cpus_available": cpus_available()}
    try:
        import faiss  # the benchmarks use it anyway; importing it here records its OpenMP pool

        out["faiss_omp"] = int(faiss.omp_get_max_threads())
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        pass
    try:
        from threadpoolctl import threadpool_info

        out["pools"] = [{"api": i.get("internal_api"), "threads": i.get("num_threads"),
                         "lib": os.path.basename(i.get("filepath") or "")} for i in threadpool_info()]
    except ImportError:  # pragma: no cover - threadpoolctl ships with implicit/scikit stacks
        pass
    if os.environ.get("OPENBLAS_NUM_THREADS"):
        out["OPENBLAS_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"]
    return out


def library_versions() -> dict:
    """{library: version} for python and each installed library of LIBRARIES."""
    from importlib import metadata

    names = {"faiss": "faiss-cpu", "milvus_lite": "milvus-lite"}
    out = {"python": sys.version.split()[0]}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(names.get(lib, lib))
        except metadata.PackageNotFoundError:
            continue
    return out


def memory_total_bytes() -> int | None:
    """The machine's RAM in bytes (/proc/meminfo); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_info(context: RunContext | None = None) -> dict:
    """The machine a unit ran on: CPU, cores, memory (bytes), thread counts, library versions, load
    average, local time, and the command that ran it (``context.command``; None without a context)."""
    return {
        "command": context.command if context is not None else None,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpus_available": cpus_available(),
        "memory_bytes": memory_total_bytes(),
        "platform": platform.platform(),
        "threads": threads(),
        "versions": library_versions(),
        "load_average": load_average(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def rss_bytes() -> int:
    """Resident set size of this process now, bytes (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# ------------------------------------------------------------------------------- timing


@contextmanager
def gc_paused():
    """Python's garbage collector off inside the block (back on after, if it was on)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def time_batch(fn: Callable[[], Any], repeats: int = 1) -> list[float]:
    """Wall seconds of each of ``repeats`` (at least 1) calls of fn(), GC paused."""
    out = []
    with gc_paused():
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return out


def time_each(fn: Callable[[int], Any], n: int, *, warmup: int = 5) -> np.ndarray:
    """Seconds of fn(i) for i in 0..n-1, one call each, as a float64 array of shape (n,);
    fn(0..warmup-1) are called untimed first. GC paused."""
    lat = np.empty(n, dtype=np.float64)
    with gc_paused():
        for i in range(min(warmup, n)):
            fn(i)
        clock = time.perf_counter
        for i in range(n):
            t0 = clock()
            fn(i)
            lat[i] = clock() - t0
    return lat


def time_concurrent(calls: list[Callable[[int], Any]], n: int, *, warmup: int = 2) -> tuple[np.ndarray, float]:
    """``len(calls)`` clients calling at once: client c runs calls[c](i) for i = c, c + clients, ...
    < n, one call at a time, after ``warmup`` untimed calls each; all start together. Returns the
    seconds of each call (float64 (n,), in i order) and the wall seconds from start to the last
    call's end (throughput = n / wall). An exception in any client is raised here. GC paused."""
    import threading

    clients = len(calls)
    lat = np.empty(n, dtype=np.float64)
    errors: list[BaseException] = []
    ready = threading.Barrier(clients + 1)
    clock = time.perf_counter

    def client(c: int) -> None:
        fn = calls[c]
        try:
            for i in range(c, min(n, warmup * clients), clients):
                fn(i)
        except BaseException as e:  # reported below, after every client has stopped
            errors.append(e)
        ready.wait()
        if errors:
            return
        try:
            for i in range(c, n, clients):
                t0 = clock()
                fn(i)
                lat[i] = clock() - t0
        except BaseException as e:
            errors.append(e)

    with gc_paused():
        threads_ = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
        for t in threads_:
            t.start()
        ready.wait()
        t0 = clock()
        for t in threads_:
            t.join()
        wall = clock() - t0
    if errors:
        raise errors[0]
    return lat, wall


# ------------------------------------------------------------------------------- indexes


@dataclass(frozen=True)
class BuiltIndex:
    """An index built by :func:`build_timed`: build seconds, serialised bytes, RSS (bytes) before
    and after the build, and the index's ``describe()``."""

    index: Any  # an ItemIndex, or a FAISS kind of its own (BandedIndex)
    build_s: float
    index_bytes: int
    rss_before: int
    rss_after: int
    describe: dict

    @property
    def rss_delta(self) -> int:
        """Resident memory the build added, in bytes (``rss_after - rss_before``; may be negative)."""
        return self.rss_after - self.rss_before


def build_timed(vectors: np.ndarray, spec: IndexSpec, *, seed: int = 0) -> BuiltIndex:
    """Build an in-process FAISS index (``FaissBackend.build``: an ItemIndex or a kind of its own)
    over ``vectors`` (n, d) float32, timing it and measuring its serialised size and the RSS it
    added. Errors of the build (bad spec for the data) propagate. The describe() (an HNSW graph's
    reachability walk) is not part of the build time."""
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    index = backends.get(backends.DEFAULT).build(vectors, spec, seed=seed)
    build_s = time.perf_counter() - t0
    after = rss_bytes()
    size = len(index.to_bytes())
    return BuiltIndex(index, build_s, size, before, after, index.describe())


# ------------------------------------------------------------------------------- progress


class Progress:
    """Progress over benchmark units (``recvec.progress``: a bar on a terminal, plain lines in a log,
    nothing when disabled); ``step(desc)`` names the unit about to run."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self._bar = progress_lines(total, desc, "unit", enabled=enabled and total > 0)

    def step(self, desc: str) -> None:
        """Show ``desc`` (cut to 60 characters) as the unit about to run."""
        self._bar.set_postfix({"unit": desc[:60]})

    def done(self, n: int = 1, **info) -> None:
        """Advance by ``n`` units, showing ``info`` (key=value) beside it."""
        if info:
            self._bar.set_postfix(info, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        """Close the bar (a last plain line in a log)."""
        self._bar.close()
