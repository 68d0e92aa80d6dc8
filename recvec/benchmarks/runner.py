"""The run stage's shared machinery: the machine record, timers, memory, progress, and the
query-parameter sweep of an index built once.

Everything timed here runs with Python's garbage collector paused (not collected first: a full
collection of a large heap costs ~0.1 s); single-query timings call
the function once per query (after a few untimed warm-up calls), batch timings keep the best of
``repeats`` runs. Each timing is stored with the thread counts it ran under (``threads()``).
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from recvec.checks import C_INT_MAX
from recvec.errors import RecvecError, shorten, shown

#: HNSW efSearch values swept by default (values below k are dropped).
EF_SEARCH = (16, 32, 64, 128, 256, 512)
#: Baseline libraries whose versions are recorded with every run.
LIBRARIES = ("numpy", "scipy", "faiss", "implicit", "threadpoolctl", "pymilvus", "milvus_lite", "torch")


# ------------------------------------------------------------------------------- the machine


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return []


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpus_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads() -> dict:
    """Thread counts timings run under: FAISS OpenMP, each BLAS/OpenMP pool (threadpoolctl)."""
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
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


#: What is running (set by the bench commands): stored with every unit's machine record.
RUN_CONTEXT: dict[str, Any] = {"command": None}


def machine_info() -> dict:
    """The machine a unit ran on: CPU, cores, memory, thread counts, versions, load average, and the
    command that ran it."""
    return {
        "command": RUN_CONTEXT.get("command"),
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
    """Resident set size of this process now (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def matmul_gflops(n: int = 2048, repeats: int = 3, seed: int = 0) -> dict:
    """GFLOP/s of an n x n x n float32 matrix multiply (numpy's BLAS), best of ``repeats``."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up (thread pool start, page faults)
    best = min(time_batch(lambda: a @ b, repeats))
    return {"n": n, "seconds": best, "gflops": 2.0 * n ** 3 / best / 1e9, "threads": threads()}


# ------------------------------------------------------------------------------- timing


@contextmanager
def gc_paused():
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def time_batch(fn: Callable[[], Any], repeats: int = 1) -> list[float]:
    """Wall seconds of each of ``repeats`` calls of fn()."""
    out = []
    with gc_paused():
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return out


def time_each(fn: Callable[[int], Any], n: int, *, warmup: int = 5) -> np.ndarray:
    """Seconds of fn(i) for i in 0..n-1, one call each (``warmup`` untimed calls first)."""
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


def percentiles_ms(seconds: np.ndarray | Sequence[float]) -> dict:
    s = np.asarray(seconds, dtype=np.float64)
    if s.size == 0:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None}
    p50, p95, p99 = np.percentile(s, [50, 95, 99]) * 1e3
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(s.mean() * 1e3)}


# ------------------------------------------------------------------------------- indexes


@dataclass(frozen=True)
class BuiltIndex:
    index: Any  # recvec.indexes.search.ItemIndex
    build_s: float
    index_bytes: int
    rss_before: int
    rss_after: int
    describe: dict

    @property
    def rss_delta(self) -> int:
        return self.rss_after - self.rss_before


def build_timed(vectors: np.ndarray, spec, *, seed: int = 0) -> BuiltIndex:
    """Build a FAISS ItemIndex, timing it and measuring its serialised size and the RSS it added."""
    from recvec.indexes.search import ItemIndex
    from recvec.indexes.spec import build_index

    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    index = ItemIndex(build_index(vectors, spec, seed=seed))
    build_s = time.perf_counter() - t0
    after = rss_bytes()
    import faiss

    size = int(faiss.serialize_index(index.faiss_index).size)
    return BuiltIndex(index, build_s, size, before, after, index.describe())


def query_settings(describe: dict, k: int, *, ef_search: Iterable[int] = EF_SEARCH,
                   nprobe: Iterable[int] | None = None) -> list[dict]:
    """The query-time settings to sweep on a built index, the index's own default marked.

    HNSW: each efSearch >= k (plus the default); IVF: each nprobe <= nlist (default: powers of two
    up to nlist, plus the default nprobe); anything else: one setting, ``{}``."""
    out: list[dict] = []
    if "ef_search" in describe:
        default = int(describe["ef_search"])
        values = sorted({int(e) for e in ef_search if int(e) >= k} | {max(default, k)})
        out = [{"ef_search": e, "default": e == max(default, k)} for e in values]
    elif "nlist" in describe:
        nlist, default = int(describe["nlist"]), int(describe["nprobe"])
        if nprobe is None:
            cand = {1 << i for i in range(0, int(np.log2(max(nlist, 1))) + 1)} | {nlist}
        else:
            cand = {int(p) for p in nprobe}
        values = sorted({p for p in cand if 1 <= p <= nlist} | {default})
        out = [{"nprobe": p, "default": p == default} for p in values]
    else:
        out = [{"default": True}]
    return out


def search_kwargs(setting: dict) -> dict:
    return {k: v for k, v in setting.items() if k in ("ef_search", "nprobe")}


def setting_label(setting: dict) -> str:
    if "ef_search" in setting:
        return f"ef={setting['ef_search']}"
    if "nprobe" in setting:
        return f"nprobe={setting['nprobe']}"
    return "-"


# ------------------------------------------------------------------------------- misc


class Progress:
    """A tqdm bar (with ETA) on stderr, or nothing; ``step(desc)`` names the unit about to run."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self._bar = None
        if enabled and total > 0:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="unit", dynamic_ncols=True, leave=True)

    def step(self, desc: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(desc[:60], refresh=True)

    def done(self, n: int = 1, **info) -> None:
        if self._bar is not None:
            if info:
                self._bar.set_postfix(info, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def parse_ints(text: str | Sequence[int] | None, flag: str) -> tuple[int, ...] | None:
    """'16,32,64' -> (16, 32, 64); None/'' -> None; every value a positive integer."""
    if text is None or text == "":
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for p in parts:
        p = str(p).strip().replace("_", "")
        if not p:
            continue
        try:
            f = float(p)
        except ValueError:
            raise RecvecError(f"{flag}: {shown(p)} is not an integer (use e.g. {flag} 10,20)") from None
        if not f.is_integer():
            raise RecvecError(f"{flag}: {shown(p)} is not an integer (use e.g. {flag} 10,20)")
        v = int(f)
        if not 1 <= v <= C_INT_MAX:
            raise RecvecError(f"{flag}: values must be integers from 1 to {C_INT_MAX:,}, got {shorten(p)}")
        out.append(v)
    if not out:
        raise RecvecError(f"{flag}: no values given")
    return tuple(out)


def parse_names(text: str | Sequence[str] | None, flag: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    parts = text.split(",") if isinstance(text, str) else list(text or ())
    out = tuple(p.strip() for p in parts if p.strip())
    if not out:
        raise RecvecError(f"{flag}: no values given")
    if allowed is not None:
        bad = [p for p in out if p not in allowed]
        if bad:
            raise RecvecError(f"{flag}: unknown {', '.join(map(repr, bad))}; choose from {', '.join(allowed)}")
    return out


def csr_rows(histories: Sequence[np.ndarray], n_items: int):
    """Histories as a binary users x items CSR matrix (float32), rows in order."""
    import scipy.sparse as sp

    rows = [np.unique(np.asarray(h, dtype=np.int64)) for h in histories]
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])].astype(np.int64)
    indices = np.concatenate(rows).astype(np.int32) if rows else np.empty(0, np.int32)
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(histories), n_items))
