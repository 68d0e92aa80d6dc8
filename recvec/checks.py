"""Argument checks shared by every layer: integers within the C ``int`` range FAISS, torch and the
OS take, finite floats. Each raises RecvecError naming the library parameter (the CLI maps it to its
flag) and echoing at most ``errors.SHOWN_CHARS`` characters of the value."""

from __future__ import annotations

import math
from typing import Any

from recvec.errors import RecvecError, shorten

#: The largest value of a C ``int`` (FAISS's efSearch/nprobe, torch and OS sizes take one).
C_INT_MAX = 2**31 - 1
#: The largest seed numpy's legacy RandomState (used by implicit) accepts.
SEED_MAX = 2**32 - 1
#: Most factors a model accepts (a 4,096-factor ALS solve per user already takes minutes per iteration).
MAX_FACTORS = 4096
#: Most training iterations / epochs accepted.
MAX_ITERATIONS = 10_000


def is_int(value: Any) -> bool:
    """A Python or numpy integer that is not a bool."""
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, lo: int = 1, hi: int = C_INT_MAX) -> int:
    """``value`` as an int in [lo, hi], else RecvecError naming ``name``."""
    if not is_int(value) or not lo <= value <= hi:
        raise RecvecError(f"{name} must be an integer from {lo:,} to {hi:,}, got {shorten(repr(value))}")
    return int(value)


def check_float(name: str, value: Any, lo: float = -math.inf, hi: float = math.inf, *,
                lo_open: bool = False) -> float:
    """``value`` as a finite float in [lo, hi] (lo excluded when ``lo_open``), else RecvecError."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not math.isfinite(x) or x < lo or x > hi or (lo_open and x == lo):
        bound = f"> {lo:g}" if lo_open else f">= {lo:g}" if math.isfinite(lo) else ""
        bound += (" and " if bound and math.isfinite(hi) else "") + (f"<= {hi:g}" if math.isfinite(hi) else "")
        raise RecvecError(f"{name} must be a finite number{' ' + bound if bound else ''}, got {shorten(repr(value))}")
    return x


def physical_memory_bytes() -> int:
    """This machine's physical memory in bytes (0 where the OS does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0
