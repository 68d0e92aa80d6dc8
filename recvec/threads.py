"""recvec's thread policy: how many threads each numeric library gets at each stage of the work.

Left to their defaults, the libraries below fight on a small, busy machine: FAISS and torch each
bring their own copy of GNU OpenMP (two thread teams), numpy, scipy and FAISS each bring an
OpenBLAS, and GNU OpenMP's default is to *spin* for a while at every barrier. A team of N threads
on cores that other processes hold then burns its time slices waiting for its slowest member.
recvec therefore

- makes OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``), set before any OpenMP
  runtime loads (``prepare_runtime``, run when ``recvec`` is imported), unless the user set it;
- gives every stage a thread count (``stage``): ``threads()`` for the parts that scale (ALS fits,
  batched scoring, batched index search, torch training and encoding) and one thread where a
  team only adds barriers or spins (BLAS inside implicit's solver and beside the small solves of
  query-time user vectors, FAISS's heaps beside numpy's matmul, FAISS calls of a few queries,
  single queries, each answered on its caller's thread).

``threads()`` is ``--threads`` (``set_threads``), else ``$RECVEC_THREADS``, else the cores this
process may run on. Heavy libraries are only touched when already loaded (``stage`` never imports
torch or FAISS itself).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from recvec.checks import check_int

ENV = "RECVEC_THREADS"
#: ``RECVEC_THREAD_POLICY=off`` leaves every library at its own defaults (for comparisons).
POLICY_ENV = "RECVEC_THREAD_POLICY"
#: The most threads recvec hands any library.
MAX_THREADS = 1024

_chosen: list[int] = []  # set_threads' value (the --threads flag), if any


def policy_enabled() -> bool:
    """False when ``$RECVEC_THREAD_POLICY`` is "off" (libraries keep their own thread defaults)."""
    return os.environ.get(POLICY_ENV, "").strip().lower() not in ("off", "0", "false", "no")


def prepare_runtime() -> None:
    """Passive OpenMP waiting unless the user chose otherwise (or turned the policy off). Must run
    before an OpenMP runtime loads (importing recvec does it); later it changes nothing, which
    ``runtime_report`` shows."""
    if policy_enabled():
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def set_threads(n: int | None) -> None:
    """Fix the thread count for this process (the CLI's ``--threads``); None forgets it."""
    _chosen.clear()
    if n is not None:
        _chosen.append(check_int("threads", n, 1, MAX_THREADS))


def threads() -> int:
    """The thread count the scalable stages use: set_threads', else $RECVEC_THREADS, else the
    available cores. A malformed $RECVEC_THREADS raises RecvecError naming it."""
    if _chosen:
        return _chosen[0]
    raw = os.environ.get(ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = raw  # check_int names it
        return check_int(ENV, value, 1, MAX_THREADS)
    return available_cores()


@dataclass(frozen=True)
class StagePolicy:
    """Threads per library for one stage: BLAS (OpenBLAS/MKL), OpenMP (FAISS, implicit, torch's
    intra-op pool) and torch; 0 means "the library's own default" (the policy turned off)."""

    blas: int
    openmp: int
    torch: int


#: The stages recvec runs and what each library gets there ("n": ``threads()``).
STAGES = {
    "fit": ("1", "n", "n"),           # implicit's ALS: its own OpenMP loop over users; BLAS 1 inside it
    "score": ("n", "1", "1"),         # batched exact scoring: numpy's BLAS matmul, FAISS heaps on this thread
    "search_batch": ("1", "n", "1"),  # many queries: FAISS's team over a call's queries; BLAS 1, as the
                                      # query-time user vectors are many small solves (OpenBLAS threads
                                      # spin between them and take the cores FAISS needs)
    "search_single": ("1", "1", "1"),  # one query per call: a team only adds barriers
    "train": ("1", "n", "n"),         # torch training (its intra-op pool)
    "encode": ("1", "n", "n"),        # torch inference over item texts
}


def policy(stage_name: str, n: int | None = None) -> StagePolicy:
    """The StagePolicy of a stage for ``n`` threads (default ``threads()``); RecvecError for an
    unknown stage."""
    from recvec.errors import RecvecError

    if stage_name not in STAGES:
        raise RecvecError(f"unknown thread stage {stage_name!r}; one of {', '.join(STAGES)}")
    n = threads() if n is None else check_int("threads", n, 1, MAX_THREADS)
    return StagePolicy(*(n if v == "n" else int(v) for v in STAGES[stage_name]))


@contextmanager
def stage(stage_name: str, n: int | None = None) -> Iterator[StagePolicy]:
    """Run a block with the stage's thread counts (restored afterwards). Costs about a millisecond
    (threadpoolctl scans the loaded libraries): wrap loops, never single calls."""
    from threadpoolctl import threadpool_limits

    p = policy(stage_name, n)
    if not policy_enabled():
        yield StagePolicy(0, 0, 0)
        return
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    # BLAS first, then OpenMP: FAISS's OpenBLAS is an OpenMP build, and setting its thread count
    # sets OpenMP's too, so the OpenMP limit must come last to hold
    with threadpool_limits(limits={"blas": p.blas}), threadpool_limits(limits={"openmp": p.openmp}):
        if torch is not None:
            torch.set_num_threads(p.torch)
        try:
            yield p
        finally:
            if torch is not None and before is not None:
                torch.set_num_threads(before)


def runtime_report() -> dict:
    """What is loaded and how it is set: each BLAS/OpenMP library (threadpoolctl), torch's thread
    count, the wait policy and the policy's thread count (for benchmark reports)."""
    from threadpoolctl import threadpool_info

    libs = [{"api": i.get("user_api"), "library": i.get("internal_api"), "threads": i.get("num_threads"),
             "file": os.path.basename(str(i.get("filepath", "")))} for i in threadpool_info()]
    torch = sys.modules.get("torch")
    return {"policy": "on" if policy_enabled() else "off", "threads": threads(), "available_cores": available_cores(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "libraries": libs,
            "openmp_runtimes": sum(1 for lib in libs if lib["api"] == "openmp"),
            "torch_threads": torch.get_num_threads() if torch is not None else None}
