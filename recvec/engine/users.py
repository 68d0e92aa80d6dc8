"""UserEncoders: a user's history (item rows, optional timestamps) -> a query vector, at query time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from recvec.engine.models.als import fold_in

# A weighting maps (history rows, timestamps or None) -> per-item weights (same length).
Weighting = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


class UserEncoder(Protocol):
    dim: int

    def encode(self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """(n, dim) float32 query vectors; an empty history gives a zero row."""
        ...


def _weights(weighting: Weighting | None, histories, timestamps) -> list[np.ndarray] | None:
    if weighting is None:
        return None
    ts = timestamps if timestamps is not None else [None] * len(histories)
    return [np.asarray(weighting(np.asarray(h), t), dtype=np.float64) for h, t in zip(histories, ts)]


class ALSFoldIn:
    """The least-squares user factor given fixed item factors (implicit's recalculate_user)."""

    def __init__(self, item_factors: np.ndarray, regularization: float, alpha: float = 1.0,
                 weighting: Weighting | None = None):
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.weighting = weighting
        self.gram = self.item_factors.T.astype(np.float64) @ self.item_factors.astype(np.float64)
        self.dim = self.item_factors.shape[1]
        self._base_inverse = np.linalg.inv(self.gram + self.regularization * np.eye(self.dim))

    def encode(self, histories, timestamps=None) -> np.ndarray:
        hist = [np.asarray(h, dtype=np.int64) for h in histories]
        conf = _weights(self.weighting, hist, timestamps)
        return fold_in(self.item_factors, self.gram, self.regularization, hist, conf, self.alpha,
                       base_inverse=self._base_inverse)


class MeanEncoder:
    """(Weighted) mean of the history's L2-normalised item embeddings (the lab's content user vector)."""

    def __init__(self, item_vectors: np.ndarray, weighting: Weighting | None = None):
        self.item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.weighting = weighting
        self.dim = self.item_vectors.shape[1]

    def encode(self, histories, timestamps=None) -> np.ndarray:
        hist = [np.asarray(h, dtype=np.int64) for h in histories]
        w = _weights(self.weighting, hist, timestamps)
        out = np.zeros((len(hist), self.dim), dtype=np.float32)
        for u, rows in enumerate(hist):
            if len(rows) == 0:
                continue
            v = self.item_vectors[rows]
            out[u] = v.mean(axis=0) if w is None else (w[u] @ v) / max(w[u].sum(), 1e-12)
        return out
