"""UserEncoders: a user's history (item rows, optional timestamps) -> a query vector, at query time.

Every encoder answers ``encode`` and ``params()`` (JSON: ``{"kind": ..., ...}``, what an artifact's
manifest stores as ``user_encoder``), and ``encoder_from_params`` builds any of them back from
those params plus the artifact's arrays. Adding an encoder is a class with ``encode``, ``params``
and a ``from_params`` classmethod, and one line in ``ENCODERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from recvec.engine.models.als import fold_in
from recvec.engine.models.hybrid import HybridEncoder
from recvec.engine.models.sequence import SequenceEncoder
from recvec.engine.weighting import RecencyWeighting, weighting_or_none
from recvec.errors import ArtifactError, RecvecError, shown

# A weighting maps (history rows, timestamps or None) -> per-item weights (same length).
Weighting = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


class UserEncoder(Protocol):
    """What every query-time user encoder answers: ``dim`` (the query vector length), ``encode`` and
    ``params``; each implementation also has a ``from_params`` classmethod (see ``ENCODERS``)."""

    dim: int

    def encode(self, histories: Sequence[np.ndarray], timestamps: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """(n, dim) float32 query vectors; an empty history gives a zero row."""
        ...

    def params(self) -> dict:
        """JSON-ready parameters that ``encoder_from_params`` rebuilds this encoder from."""
        ...


def _weighting_params(weighting: Weighting | None) -> dict:
    if weighting is None:
        return {}
    if not isinstance(weighting, RecencyWeighting):
        raise RecvecError(f"a {type(weighting).__name__} weighting cannot be saved; use a RecencyWeighting")
    return {"weighting": weighting.to_dict()} if weighting_or_none(weighting) is not None else {}


def _weighting_from(params: dict) -> RecencyWeighting | None:
    try:
        return weighting_or_none(RecencyWeighting.from_dict(params.get("weighting")))
    except RecvecError as e:
        raise ArtifactError(f"manifest.json user_encoder: {e}") from None


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
        """The weighted least-squares fold-in of each history (confidences: alpha times the
        weighting's weights)."""
        hist = [np.asarray(h, dtype=np.int64) for h in histories]
        conf = _weights(self.weighting, hist, timestamps)
        return fold_in(self.item_factors, self.gram, self.regularization, hist, conf, self.alpha,
                       base_inverse=self._base_inverse)

    def params(self) -> dict:
        """``{"kind": "als_fold_in", "regularization", "alpha"}`` plus a non-uniform weighting; RecvecError
        for a weighting that is not a RecencyWeighting (it cannot be saved)."""
        return {"kind": "als_fold_in", "regularization": self.regularization, "alpha": self.alpha,
                **_weighting_params(self.weighting)}

    @classmethod
    def from_params(cls, params: dict, arrays: dict, vectors: np.ndarray, n_items: int, decode) -> ALSFoldIn:
        """The fold-in over the index's item ``vectors`` (the ALS item factors); ArtifactError for a
        bad weighting."""
        return cls(vectors, float(params["regularization"]), float(params.get("alpha", 1.0)), _weighting_from(params))


class MeanEncoder:
    """(Weighted) mean of the history's L2-normalised item embeddings (the lab's content user vector)."""

    def __init__(self, item_vectors: np.ndarray, weighting: Weighting | None = None):
        self.item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.weighting = weighting
        self.dim = self.item_vectors.shape[1]

    def encode(self, histories, timestamps=None) -> np.ndarray:
        """The (weighted) mean of each history's item vectors; an empty history gives a zero row."""
        hist = [np.asarray(h, dtype=np.int64) for h in histories]
        w = _weights(self.weighting, hist, timestamps)
        out = np.zeros((len(hist), self.dim), dtype=np.float32)
        for u, rows in enumerate(hist):
            if len(rows) == 0:
                continue
            v = self.item_vectors[rows]
            out[u] = v.mean(axis=0) if w is None else (w[u] @ v) / max(w[u].sum(), 1e-12)
        return out

    def params(self) -> dict:
        """``{"kind": "mean"}`` plus a non-uniform weighting; RecvecError for a weighting that is not a
        RecencyWeighting (it cannot be saved)."""
        return {"kind": "mean", **_weighting_params(self.weighting)}

    @classmethod
    def from_params(cls, params: dict, arrays: dict, vectors: np.ndarray, n_items: int, decode) -> MeanEncoder:
        """The mean over the index's item ``vectors``; ArtifactError for a bad weighting."""
        return cls(vectors, _weighting_from(params))


class ConstantEncoder:
    """Every history maps to [1.0]: with 1-d popularity item vectors, inner product = popularity."""

    dim = 1

    def encode(self, histories, timestamps=None) -> np.ndarray:
        """(n, 1) float32 ones, whatever the histories."""
        return np.ones((len(histories), 1), dtype=np.float32)

    def params(self) -> dict:
        """``{"kind": "constant"}``."""
        return {"kind": "constant"}

    @classmethod
    def from_params(cls, params: dict, arrays: dict, vectors: np.ndarray, n_items: int, decode) -> ConstantEncoder:
        """A ConstantEncoder; it needs nothing from the artifact."""
        return cls()


class ItemIndicator:
    """The history as a weighted indicator over the catalogue's ``n_items`` rows: (n, n_items) float32
    with the k-th most recent of the last ``last`` items (None: all) weighing ``decay**(k-1)``. Its
    inner product with the columns of an item-item matrix is that matrix's score (EASE, transition)."""

    def __init__(self, n_items: int, last: int | None = None, decay: float = 1.0):
        self.dim = int(n_items)
        self.last = None if last is None else int(last)
        self.decay = float(decay)

    def encode(self, histories, timestamps=None) -> np.ndarray:
        """One row per history; an empty history gives a zero row."""
        out = np.zeros((len(histories), self.dim), dtype=np.float32)
        for u, h in enumerate(histories):
            rows = np.asarray(h, dtype=np.int64)
            if self.last is not None:
                rows = rows[-self.last:]
            if rows.size:
                w = self.decay ** np.arange(rows.size - 1, -1, -1, dtype=np.float64)
                np.add.at(out[u], rows, w.astype(np.float32))
        return out

    def params(self) -> dict:
        return {"kind": "item_indicator", "n_items": self.dim, "last": self.last, "decay": self.decay}

    @classmethod
    def from_params(cls, params: dict, arrays: dict, vectors: np.ndarray, n_items: int, decode) -> ItemIndicator:
        if int(params["n_items"]) != n_items:
            raise ArtifactError(f"manifest.json: item_indicator covers {params['n_items']} items, the index {n_items}")
        last = params.get("last")
        return cls(n_items, None if last is None else int(last), float(params.get("decay", 1.0)))


#: kind -> the encoder class whose ``from_params`` rebuilds it.
ENCODERS: dict[str, Any] = {
    "als_fold_in": ALSFoldIn,
    "mean": MeanEncoder,
    "constant": ConstantEncoder,
    "hybrid": HybridEncoder,
    "sequence": SequenceEncoder,
    "item_indicator": ItemIndicator,
}


def encoder_from_params(params: dict, arrays: dict[str, np.ndarray], vectors: np.ndarray | None, *,
                        n_items: int, hybrid_weight: float | None = None) -> UserEncoder:
    """The user encoder ``params`` describe (a manifest's ``user_encoder``), over the index's item
    ``vectors`` (n_items, d), with the artifact's named ``arrays`` for what it needs besides them.
    ``hybrid_weight`` overrides a hybrid's first-part share per query. Raises ArtifactError for
    params that are not an encoder recvec knows or that are malformed."""
    if not isinstance(params, dict):
        raise ArtifactError("manifest.json: user_encoder must be an object")
    if hybrid_weight is not None and params.get("kind") != "hybrid":
        raise RecvecError(f"a hybrid weight applies to hybrid indexes only; this one's user encoder is "
                          f"{shown(params.get('kind'))}", params=("hybrid_weight",))

    def decode(p: dict, vecs: np.ndarray | None, n: int) -> UserEncoder:
        kind = p.get("kind") if isinstance(p, dict) else None
        cls = ENCODERS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise ArtifactError(f"manifest.json: unknown user_encoder kind {shown(kind)}")
        try:
            return cls.from_params(p, arrays, vecs, n, decode)
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"manifest.json: user_encoder {shown(kind)} is malformed "
                                f"({type(e).__name__}: {e})") from None

    enc = decode(params, vectors, n_items)
    return enc.with_weight(hybrid_weight) if hybrid_weight is not None else enc
