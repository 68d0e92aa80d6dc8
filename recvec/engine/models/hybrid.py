"""Hybrid ALS + content vectors: one inner-product search scores ``w·als + (1−w)·content``.

Both parts are put on a comparable, bounded scale and concatenated:

    item i:  [ sqrt(w)·y_i / s ,  sqrt(1−w)·c_i ]      y_i ALS item factors (zero for cold items),
                                                       s = max_i |y_i|, c_i the unit text embedding
    user u:  [ a·x̂_u ,            b·m̂_u ]             x̂_u the unit ALS fold-in vector,
                                                       m̂_u the unit (weighted) mean of the history's c_i

With ``a = w_q / sqrt(w)`` and ``b = (1 − w_q) / sqrt(1 − w)`` the inner product is exactly

    w_q · (x̂_u · y_i / s)  +  (1 − w_q) · (m̂_u · c_i)         (both parts in [−1, 1])

so the weight ``w`` fixed at build time can be overridden per query (``w_q``) by scaling the query
parts alone — as long as the build weight is strictly between 0 and 1 (a part built with weight 0
holds zero vectors and cannot be brought back at query time).

Cold items (in the catalogue, never rated in train) have ``y_i = 0``: their score is the content
part alone, so they stay recommendable, most of all for small ``w``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
import numpy as np

from recvec.engine.users import ALSFoldIn, MeanEncoder
from recvec.errors import RecvecError


def check_weight(w: float, what: str = "hybrid weight") -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not (0.0 <= w <= 1.0):
        raise RecvecError(f"{what} must be a number in [0, 1] (the ALS share), got {w!r}")
    return float(w)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(n > 0, x / np.maximum(n, 1e-30), 0.0).astype(np.float32)


def als_scale(als_factors: np.ndarray) -> float:
    """s = the largest ALS item-factor norm (1.0 when all are zero): y/s has norm <= 1."""
    s = float(np.linalg.norm(np.asarray(als_factors, dtype=np.float64), axis=1).max(initial=0.0))
    return s if s > 0 else 1.0


def hybrid_item_vectors(als_factors: np.ndarray, content: np.ndarray, weight: float,
                        scale: float | None = None) -> np.ndarray:
    """(n, f_als + f_content) float32 item vectors for the build weight ``weight``."""
    w = check_weight(weight)
    a = np.asarray(als_factors, dtype=np.float32)
    c = np.asarray(content, dtype=np.float32)
    if a.ndim != 2 or c.ndim != 2 or len(a) != len(c):
        raise RecvecError(f"hybrid parts must be (n, d) arrays over the same items, got {a.shape} and {c.shape}")
    s = als_scale(a) if scale is None else float(scale)
    out = np.concatenate([a * np.float32(math.sqrt(w) / s), c * np.float32(math.sqrt(1.0 - w))], axis=1)
    return np.ascontiguousarray(out, dtype=np.float32)


class HybridEncoder:
    """UserEncoder for hybrid indexes: [a·unit(ALS fold-in), b·unit(content mean)].

    ``build_weight`` is the weight the index was built with; ``weight`` the one this query uses
    (default: the build weight)."""

    def __init__(self, als: ALSFoldIn, content: MeanEncoder, build_weight: float, weight: float | None = None):
        self.als = als
        self.content = content
        self.build_weight = check_weight(build_weight, "hybrid build weight")
        self.weight = self.build_weight if weight is None else check_weight(weight)
        if self.weight != self.build_weight and self.build_weight in (0.0, 1.0):
            raise RecvecError(f"this hybrid index was built with weight {self.build_weight:g}, so one part holds "
                              f"zero vectors and the weight cannot be changed to {self.weight:g} at query time; "
                              "rebuild it with a weight strictly between 0 and 1")
        self.dim = als.dim + content.dim

    def with_weight(self, weight: float | None) -> "HybridEncoder":
        return HybridEncoder(self.als, self.content, self.build_weight, weight)

    def coefficients(self) -> tuple[float, float]:
        """(a, b): how the query parts are scaled so the score is w·als + (1−w)·content."""
        w, wb = self.weight, self.build_weight
        a = w / math.sqrt(wb) if wb > 0 else 0.0
        b = (1.0 - w) / math.sqrt(1.0 - wb) if wb < 1 else 0.0
        return a, b

    def encode(self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None) -> np.ndarray:
        a, b = self.coefficients()
        x = unit_rows(self.als.encode(histories, timestamps))
        m = unit_rows(self.content.encode(histories, timestamps))
        return np.ascontiguousarray(np.concatenate([x * np.float32(a), m * np.float32(b)], axis=1), dtype=np.float32)

    def part_scores(self, histories, timestamps=None) -> tuple[np.ndarray, np.ndarray]:
        """(als, content) score matrices over all items, each part on its own (for checks and analysis)."""
        x = unit_rows(self.als.encode(histories, timestamps))
        m = unit_rows(self.content.encode(histories, timestamps))
        y = self.als.item_factors / np.float32(als_scale(self.als.item_factors))
        return x @ y.T, m @ self.content.item_vectors.T
