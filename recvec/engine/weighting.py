"""Recency weighting of a user's history: per-item weights from order and/or timestamps.

A :class:`RecencyWeighting` is a frozen config and a callable ``(rows, timestamps | None) -> weights``
(the ``Weighting`` the UserEncoders in :mod:`recvec.engine.users` take). With the history in time
order (oldest first), item j of n gets

    decay_j = 2 ** (-(n - 1 - j) / half_life)  *  2 ** (-(t_last - t_j) / (86400 * half_life_days))
    w_j     = floor + (1 - floor) * decay_j                 (times ``scale``)

so the most recent item weighs ``scale`` and an item ``half_life`` positions (or
``half_life_days`` days) older weighs half as much above the floor. A half-life of 0 switches that
factor off; both 0 is the uniform "none" scheme (all weights ``scale``). Without timestamps the
time factor is skipped (the position factor still applies), so a query that gives only an ordered
history still gets recency weights.

The config serialises to a small JSON dict (``to_dict`` / ``from_dict``) that goes in the model
config and the artifact manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from recvec.errors import RecvecError, shown

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class RecencyWeighting:
    """Exponential recency decay by position from the end and/or by age in days."""

    half_life: float = 0.0  # items; 0: no position decay
    half_life_days: float = 0.0  # days before the user's last interaction; 0: no time decay
    floor: float = 0.0  # weight every item keeps however old, in [0, 1)
    scale: float = 1.0  # weight of the most recent item

    def __post_init__(self):
        for name in ("half_life", "half_life_days"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, bool) \
                    or not np.isfinite(v) or v < 0:
                raise RecvecError(f"recency {name} must be a finite number >= 0 (0 = off), got {shown(v)}")
        if not (0.0 <= float(self.floor) < 1.0):
            raise RecvecError(f"recency floor must be in [0, 1), got {shown(self.floor)}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise RecvecError(f"recency scale must be > 0, got {shown(self.scale)}")

    @property
    def is_uniform(self) -> bool:
        """Whether both half-lives are 0: every item then weighs ``scale``."""
        return self.half_life == 0 and self.half_life_days == 0

    @property
    def name(self) -> str:
        """Short label: ``none`` (or ``x{scale}``) when uniform, else e.g. ``pos10+days7+floor0.1``."""
        if self.is_uniform:
            return "none" if self.scale == 1.0 else f"x{self.scale:g}"
        parts = []
        if self.half_life:
            parts.append(f"pos{self.half_life:g}")
        if self.half_life_days:
            parts.append(f"days{self.half_life_days:g}")
        if self.floor:
            parts.append(f"floor{self.floor:g}")
        if self.scale != 1.0:
            parts.append(f"x{self.scale:g}")
        return "+".join(parts)

    def __call__(self, rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        n = len(rows)
        decay = np.ones(n, dtype=np.float64)
        if n == 0 or self.is_uniform:
            return decay * self.scale
        if self.half_life:
            decay *= np.exp2(-np.arange(n - 1, -1, -1, dtype=np.float64) / self.half_life)
        if self.half_life_days and timestamps is not None:
            t = np.asarray(timestamps, dtype=np.float64)
            if t.shape != (n,):
                raise RecvecError(f"recency weighting: {len(t)} timestamps for a history of {n} items")
            age_days = (t.max() - t) / SECONDS_PER_DAY
            decay *= np.exp2(-age_days / self.half_life_days)
        return self.scale * (self.floor + (1.0 - self.floor) * decay)

    def to_dict(self) -> dict:
        """JSON-ready: every field as a float."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict | None) -> "RecencyWeighting":
        """Rebuild from :meth:`to_dict` output (None: the uniform default); RecvecError for a non-object,
        unknown keys or out-of-range values (a value that is not a number raises ValueError/TypeError)."""
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise RecvecError(f"recency weighting must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise RecvecError(f"unknown recency weighting keys {unknown}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in d.items()})


NONE = RecencyWeighting()


def weighting_or_none(w: RecencyWeighting | None):
    """The callable to hand a UserEncoder: None for the uniform scheme (the unweighted fast path)."""
    return None if w is None or (w.is_uniform and w.scale == 1.0) else w


def time_decay_matrix(user_rows: np.ndarray, item_rows: np.ndarray, timestamps: np.ndarray, shape: tuple[int, int],
                      weighting: RecencyWeighting):
    """A users x items CSR whose values are each interaction's recency weight within its user.

    ``user_rows`` must be grouped by user with each user's rows in time order (as the split's train
    is); weights are computed per user as the weighting does at query time (position from the end,
    age relative to the user's last interaction). Duplicate (user, item) pairs are summed.
    """
    import scipy.sparse as sp

    user_rows = np.asarray(user_rows, dtype=np.int64)
    n = len(user_rows)
    w = np.ones(n, dtype=np.float64)
    if n and not weighting.is_uniform:
        if np.any(np.diff(user_rows) < 0):
            raise RecvecError("time_decay_matrix: rows must be grouped by user (sorted by user, then time)")
        starts = np.r_[0, np.flatnonzero(np.diff(user_rows)) + 1]
        ends = np.r_[starts[1:], n]
        counts = ends - starts
        # position from the end within each user's run
        pos_from_end = np.repeat(ends, counts) - 1 - np.arange(n)
        decay = np.ones(n)
        if weighting.half_life:
            decay *= np.exp2(-pos_from_end / weighting.half_life)
        if weighting.half_life_days:
            t = np.asarray(timestamps, dtype=np.float64)
            last = np.maximum.reduceat(t, starts)
            decay *= np.exp2(-(np.repeat(last, counts) - t) / SECONDS_PER_DAY / weighting.half_life_days)
        w = weighting.floor + (1.0 - weighting.floor) * decay
    w = w * weighting.scale
    m = sp.coo_matrix((w.astype(np.float32), (user_rows, np.asarray(item_rows, dtype=np.int64))), shape=shape)
    m = m.tocsr()
    m.sum_duplicates()
    return m.astype(np.float32)
