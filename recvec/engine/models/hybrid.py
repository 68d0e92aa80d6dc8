"""Two-part hybrids in one inner-product index: a single search scores ``w·A + (1−w)·B``.

The parts are any two of ALS (fold-in user vectors over ALS item factors), text (content mean over
unit text embeddings) and the sequence encoder (hidden state over its item embeddings). Each part
is put on a bounded scale and the two are concatenated:

    item i:  [ sqrt(w)·a_i / s_A ,  sqrt(1−w)·b_i / s_B ]     s_P = max_i |p_i| (1 for unit text vectors)
    user u:  [ α·â_u ,              β·b̂_u ]                   â_u, b̂_u the parts' unit query vectors

With ``α = w_q / sqrt(w)`` and ``β = (1 − w_q) / sqrt(1 − w)`` the inner product is exactly

    w_q · (â_u · a_i / s_A)  +  (1 − w_q) · (b̂_u · b_i / s_B)        (both parts in [−1, 1])

so the weight ``w`` fixed at build time can be overridden per query (``w_q``) by scaling the query
parts alone -- as long as the build weight is strictly between 0 and 1 (a part built with weight 0
holds zero vectors and cannot be brought back at query time).

Items a part does not know (cold items: in the catalogue, never rated in train) have a zero vector
in that part: their score comes from the other part alone, so with a text part they stay
recommendable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recvec.errors import ArtifactError, RecvecError, shown

PART_NAMES = ("als", "text", "sequence")


def check_weight(w: float, what: str = "hybrid weight") -> float:
    """``w`` as a float; RecvecError naming ``what`` unless it is a number in [0, 1]."""
    if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not (0.0 <= w <= 1.0):
        raise RecvecError(f"{what} must be a number in [0, 1] (the first part's share), got {shown(w)}")
    return float(w)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(n > 0, x / np.maximum(n, 1e-30), 0.0).astype(np.float32)


def part_scale(item_vectors: np.ndarray) -> float:
    """s = the largest item-vector norm of a part (1.0 when all are zero): vectors/s have norm <= 1."""
    s = float(np.linalg.norm(np.asarray(item_vectors, dtype=np.float64), axis=1).max(initial=0.0))
    return s if s > 0 else 1.0


def hybrid_item_vectors(first: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    """(n, d_first + d_second) float32 item vectors for the build weight ``weight`` (first part's share)."""
    w = check_weight(weight)
    a = np.asarray(first, dtype=np.float32)
    b = np.asarray(second, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise RecvecError(f"hybrid parts must be (n, d) arrays over the same items, got {a.shape} and {b.shape}")
    out = np.concatenate([a * np.float32(math.sqrt(w) / part_scale(a)),
                          b * np.float32(math.sqrt(1.0 - w) / part_scale(b))], axis=1)
    return np.ascontiguousarray(out, dtype=np.float32)


@dataclass(frozen=True)
class Part:
    """One side of a hybrid: its name, its query-time encoder, its item vectors (hybrid rows), and
    the artifact array holding those vectors (None: the encoder holds them, ``encoder.item_vectors()``)."""

    name: str
    encoder: object  # a UserEncoder reading histories in the hybrid's item rows
    item_vectors: np.ndarray
    array: str | None = None

    def __post_init__(self):
        if self.name not in PART_NAMES:
            raise RecvecError(f"unknown hybrid part {shown(self.name)}; choose from {', '.join(PART_NAMES)}")


class RemappedEncoder:
    """Runs an encoder that knows fewer items: hybrid rows -> its rows (``rows[r] < 0``: unknown, dropped)."""

    def __init__(self, encoder, rows: np.ndarray, array: str = "sequence_rows"):
        self.encoder = encoder
        self.rows = np.asarray(rows, dtype=np.int64)
        self.array = array
        self.dim = encoder.dim

    def params(self) -> dict:
        """The inner encoder's params plus the name of the artifact array holding ``rows``."""
        return {**self.encoder.params(), "rows": self.array}

    def item_vectors(self) -> np.ndarray:
        """(len(rows), d) float32: the inner encoder's item vectors in these rows, zero where unknown."""
        inner = self.encoder.item_vectors()
        full = np.zeros((len(self.rows), inner.shape[1]), np.float32)
        known = self.rows >= 0
        full[known] = inner[self.rows[known]]
        return full

    def encode(self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Map each history to the inner encoder's rows (unknown items dropped, with their timestamps) and
        encode them: (n, dim) float32."""
        hist, times = [], None if timestamps is None else []
        for i, h in enumerate(histories):
            r = self.rows[np.asarray(h, dtype=np.int64)]
            keep = r >= 0
            hist.append(r[keep])
            if times is not None:
                times.append(np.asarray(timestamps[i])[keep])
        return self.encoder.encode(hist, times)


class HybridEncoder:
    """UserEncoder for hybrid indexes: [α·unit(first part's query), β·unit(second part's query)].

    ``build_weight`` is the first part's share the index was built with; ``weight`` the one this
    query uses (default: the build weight)."""

    def __init__(self, first: Part, second: Part, build_weight: float, weight: float | None = None):
        self.first, self.second = first, second
        self.build_weight = check_weight(build_weight, "hybrid build weight")
        self.weight = self.build_weight if weight is None else check_weight(weight)
        if self.weight != self.build_weight and self.build_weight in (0.0, 1.0):
            raise RecvecError(f"this hybrid index was built with weight {self.build_weight:g}, so one part holds "
                              f"zero vectors and the weight cannot be changed to {self.weight:g} at query time; "
                              "rebuild it with a weight strictly between 0 and 1")
        self.dim = first.encoder.dim + second.encoder.dim

    def with_weight(self, weight: float | None) -> "HybridEncoder":
        """The same parts answering with first-part share ``weight`` (None: the build weight); RecvecError
        if it is outside [0, 1] or differs from a build weight of 0 or 1."""
        return HybridEncoder(self.first, self.second, self.build_weight, weight)

    def params(self) -> dict:
        """{"kind": "hybrid", "build_weight", "parts": [each part's name, array and encoder params]}."""
        parts = [{"name": p.name, **({"array": p.array} if p.array else {}), **p.encoder.params()}
                 for p in (self.first, self.second)]
        return {"kind": "hybrid", "build_weight": self.build_weight, "parts": parts}

    @classmethod
    def from_params(cls, params: dict, arrays: dict, vectors: np.ndarray, n_items: int, decode) -> "HybridEncoder":
        """Rebuild from ``params()``: each part decoded by ``decode(part params, its vectors, n_items)``."""
        parts = []
        for p in params["parts"]:
            array = p.get("array")
            if array is not None and array not in arrays:
                raise ArtifactError(f"artifact lacks the array {shown(array)} its hybrid user encoder needs; rebuild it")
            enc = decode(p, arrays[array] if array else None, n_items)
            parts.append(Part(p["name"], enc, arrays[array] if array else enc.item_vectors(), array))
        if len(parts) != 2:
            raise ArtifactError(f"manifest.json: a hybrid user_encoder needs 2 parts, got {len(parts)}")
        return cls(parts[0], parts[1], float(params["build_weight"]))

    def coefficients(self) -> tuple[float, float]:
        """(α, β): how the query parts are scaled so the score is w·first + (1−w)·second."""
        w, wb = self.weight, self.build_weight
        a = w / math.sqrt(wb) if wb > 0 else 0.0
        b = (1.0 - w) / math.sqrt(1.0 - wb) if wb < 1 else 0.0
        return a, b

    def _units(self, histories, timestamps) -> tuple[np.ndarray, np.ndarray]:
        return (unit_rows(self.first.encoder.encode(histories, timestamps)),
                unit_rows(self.second.encoder.encode(histories, timestamps)))

    def encode(self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """(n, dim_first + dim_second) float32: each part's unit query vector scaled by :meth:`coefficients`."""
        a, b = self.coefficients()
        x, y = self._units(histories, timestamps)
        return np.ascontiguousarray(np.concatenate([x * np.float32(a), y * np.float32(b)], axis=1), dtype=np.float32)

    def part_scores(self, histories, timestamps=None) -> tuple[np.ndarray, np.ndarray]:
        """(first, second) score matrices over all items, each part on its own [−1, 1] scale."""
        x, y = self._units(histories, timestamps)
        p, q = self.first.item_vectors, self.second.item_vectors
        return x @ (p / np.float32(part_scale(p))).T, y @ (q / np.float32(part_scale(q))).T
