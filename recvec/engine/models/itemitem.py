"""Item-to-item peers that need no training beyond counting or one matrix inverse: EASE and the
transition model. Both score item j for a history as a weighted sum of rows of an n x n matrix M,
``score(j) = sum_i w_i M[i, j]``, so both are served through the same index as every other model:
the item vectors are the columns of M (row j of Mᵀ, n dims) and the query vector is the history as
a weighted indicator over the n items (``engine.users.ItemIndicator``). That keeps them exact and
behind the one Recommender interface, at the price of n-dimensional vectors: they are for
catalogues up to MAX_ITEMS items.

- EASE (Steck, 2019): ``B = I - P diag(1/diag(P))`` with ``P = (XᵀX + λI)⁻¹`` over the binary
  train matrix X; diag(B) = 0. The query reads the whole history, unweighted.
- transition: ``T[a, b]`` counts "item a, then item b among the next ``lags`` train positives of
  the same user", a lag-l pair weighing ``lag_decay**(l-1)``. The query reads the user's last
  ``last`` items, the k-th most recent weighing ``recency_decay**(k-1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from recvec.checks import check_float, check_int
from recvec.errors import RecvecError

#: Largest catalogue these peers accept (their item vectors are n x n float32: 1.6 GB at 20,000).
MAX_ITEMS = 20_000


def _check_size(n: int, what: str) -> None:
    if n > MAX_ITEMS:
        raise RecvecError(f"{what} keeps an items x items matrix; {n:,} items is above its limit of "
                          f"{MAX_ITEMS:,} (use als, sequence or text for this catalogue)")


@dataclass(frozen=True)
class TransitionConfig:
    """The transition model's counting window and query weights (see the module docstring)."""

    lags: int = 3
    lag_decay: float = 0.5
    last: int = 3
    recency_decay: float = 0.5

    def __post_init__(self):
        check_int("transition lags", self.lags, 1, 50)
        check_int("transition last", self.last, 1, 1000)
        check_float("transition lag_decay", self.lag_decay, 0.0, 1.0, lo_open=True)
        check_float("transition recency_decay", self.recency_decay, 0.0, 1.0, lo_open=True)

    def to_dict(self) -> dict:
        """JSON-ready: every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> TransitionConfig:
        """Rebuild from :meth:`to_dict` output (missing keys take their defaults)."""
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise RecvecError(f"unknown transition config keys: {', '.join(unknown)}")
        return cls(**d)


def ease_matrix(matrix: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE's item-item weights B (n x n float32, zero diagonal) for a binary users x items CSR matrix
    and L2 penalty ``lam`` > 0. RecvecError above MAX_ITEMS items."""
    lam = check_float("EASE lambda", lam, 0.0, lo_open=True)
    n = matrix.shape[1]
    _check_size(n, "EASE")
    x = sp.csr_matrix(matrix, dtype=np.float64)
    g = (x.T @ x).toarray()
    g[np.diag_indices(n)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices(n)] = 0.0
    return np.ascontiguousarray(b, dtype=np.float32)


def transition_matrix(histories: Sequence[np.ndarray], n: int, config: TransitionConfig) -> np.ndarray:
    """T (n x n float32): weighted counts of "a, then b within ``lags`` positions" over the
    histories (item rows in time order). RecvecError above MAX_ITEMS items."""
    _check_size(n, "the transition model")
    rows, cols, vals = [], [], []
    for lag in range(1, config.lags + 1):
        w = config.lag_decay ** (lag - 1)
        for h in histories:
            h = np.asarray(h, dtype=np.int64)
            if len(h) > lag:
                rows.append(h[:-lag])
                cols.append(h[lag:])
                vals.append(np.full(len(h) - lag, w, np.float32))
    if not rows:
        return np.zeros((n, n), np.float32)
    t = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    out = t.toarray().astype(np.float32)
    out[np.diag_indices(n)] = 0.0  # a repeat of the same item predicts nothing new
    return out
