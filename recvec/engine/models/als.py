"""Implicit-feedback ALS item factors (implicit's AlternatingLeastSquares) and the fold-in math."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recvec.checks import MAX_FACTORS, MAX_ITERATIONS, SEED_MAX, check_float, check_int
from recvec.errors import RecvecError
from recvec.progress import progress as progress_lines
from recvec.threads import stage as thread_stage


@dataclass(frozen=True)
class ALSConfig:
    """The lab's defaults: 64 factors, regularization 0.01, 20 iterations."""

    factors: int = 64
    regularization: float = 0.01
    iterations: int = 20
    alpha: float = 1.0
    seed: int = 0

    def __post_init__(self):
        check_int("ALS factors", self.factors, 1, MAX_FACTORS)
        check_int("ALS iterations", self.iterations, 1, MAX_ITERATIONS)
        check_float("ALS regularization", self.regularization, 0.0)
        check_float("ALS alpha", self.alpha, 0.0, lo_open=True)
        check_int("ALS seed", self.seed, 0, SEED_MAX)


@dataclass(frozen=True)
class ALSModel:
    """A fitted ALS model: its config and float32 user factors (num_users, factors) and item factors
    (num_items, factors), rows in the split's user and item vocabularies."""

    config: ALSConfig
    user_factors: np.ndarray  # (num_users, factors) float32
    item_factors: np.ndarray  # (num_items, factors) float32


def fit_als(matrix: sp.csr_matrix, config: ALSConfig = ALSConfig(), *, progress: bool = False,
            threads: int | None = None) -> ALSModel:
    """Fit implicit's CPU ALS on a users x items CSR matrix: its loop over users on the thread
    policy's count (``threads``, default ``recvec.threads.threads()``), BLAS held to one thread.
    ``progress``: a bar on a terminal, plain lines otherwise. RecvecError when the fit diverges."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.recommender_base import ModelFitError

    with thread_stage("fit", threads) as policy, warnings.catch_warnings():
        if policy.blas:  # implicit warns about any OpenBLAS above 1 thread, FAISS's OpenMP build included
            warnings.filterwarnings("ignore", message="OpenBLAS is configured to use", category=RuntimeWarning)
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            random_state=config.seed,
            num_threads=policy.openmp,
        )
        with progress_lines(config.iterations, "ALS fit", "iteration", enabled=progress) as bar:
            try:
                model.fit(sp.csr_matrix(matrix, dtype=np.float32), show_progress=False,
                          callback=lambda *_: bar.update(1))
            except ModelFitError as e:  # NaN/inf factors: the confidences overflowed float32
                raise RecvecError(f"ALS fit failed ({e}) with alpha={config.alpha:g}, regularization="
                                  f"{config.regularization:g}, factors={config.factors}: lower alpha "
                                  "(confidence = 1 + alpha x value must stay well inside float32)") from None
    return ALSModel(
        config=config,
        user_factors=np.ascontiguousarray(model.user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(model.item_factors, dtype=np.float32),
    )


def to_implicit(model: ALSModel):
    """An implicit AlternatingLeastSquares holding the same factors (for baselines and checks)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    c = model.config
    with threadpool_limits(1, "blas"):
        m = AlternatingLeastSquares(
            factors=c.factors, regularization=c.regularization, alpha=c.alpha, iterations=c.iterations,
            random_state=c.seed,
        )
    m.user_factors = model.user_factors.copy()
    m.item_factors = model.item_factors.copy()
    return m


def fold_in(
    item_factors: np.ndarray,
    gram: np.ndarray,
    regularization: float,
    histories: list[np.ndarray],
    confidences: list[np.ndarray] | None = None,
    alpha: float = 1.0,
    *,
    base_inverse: np.ndarray | None = None,
) -> np.ndarray:
    """Least-squares user factors given fixed item factors (implicit's `recalculate_user`).

    For user u with items i and confidences c_i = alpha * w_i:
        (YᵀY + λI + Σ (c_i - 1) y_i y_iᵀ) x_u = Σ c_i y_i
    `gram` is YᵀY (precomputed once). Where every c_i = 1 the matrix is the same for all users, so
    `base_inverse` = (YᵀY + λI)⁻¹ (computed here when not given) answers with one mat-vec.
    An empty history gives the zero vector.
    """
    f = item_factors.shape[1]
    base = None
    out = np.zeros((len(histories), f), dtype=np.float32)
    for u, rows in enumerate(histories):
        if len(rows) == 0:
            continue
        if confidences is None and alpha == 1.0:  # every c_i = 1: the shared inverse (the lab's fold-in)
            b = item_factors[rows].sum(axis=0, dtype=np.float64)
            w = None
        else:
            Y = item_factors[rows].astype(np.float64)
            c = alpha * (np.ones(len(rows)) if confidences is None else np.asarray(confidences[u], dtype=np.float64))
            b = c @ Y
            w = c - 1.0
        if w is not None and np.any(w):
            if base is None:
                base = gram + regularization * np.eye(f, dtype=np.float64)
            out[u] = np.linalg.solve(base + (Y.T * w) @ Y, b)
        else:
            if base_inverse is None:
                base_inverse = np.linalg.inv(gram + regularization * np.eye(f, dtype=np.float64))
            out[u] = base_inverse @ b
    return out
