"""Item vectors the user brings (their own embeddings) as an ItemModel: the vectors as they are (or
L2-normalised), users built at query time as the (recency-weighted) mean of their history's
vectors (MeanEncoder). There is nothing to fit and no split to evaluate on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recvec.engine.models.fit import ItemModel
from recvec.engine.users import MeanEncoder
from recvec.engine.vocab import Vocabulary
from recvec.engine.weighting import NONE, RecencyWeighting, weighting_or_none
from recvec.errors import RecvecError


@dataclass(frozen=True)
class VectorsConfig:
    """What an artifact of brought vectors records as its model: where they came from, whether they
    were normalised, the query-time weighting of the mean. ``kind`` is "vectors"."""

    source: str
    normalise: bool = False
    weighting: RecencyWeighting = field(default_factory=lambda: NONE)
    kind: str = "vectors"
    encoder: None = None
    pooling: None = None

    @property
    def name(self) -> str:
        """``vectors`` (``+recency[...]`` for a weighted mean)."""
        w = weighting_or_none(self.weighting)
        return "vectors" + ("" if w is None else f"+recency[{self.weighting.name}]")

    def params(self) -> dict:
        """JSON-ready: the source, normalise and the weighting."""
        return {"source": self.source, "normalise": self.normalise, "weighting": self.weighting.to_dict()}

    def to_dict(self) -> dict:
        """``{"kind": "vectors", **params()}``."""
        return {"kind": self.kind, **self.params()}


def _no_split(rows: np.ndarray) -> np.ndarray:
    raise RecvecError("brought item vectors have no train split to evaluate on; evaluate them through an "
                      "index (recvec query, or evaluate_served with a split of your data)")


def vectors_model(ids: np.ndarray, vectors: np.ndarray, *, source: str, normalise: bool = False,
                  weighting: RecencyWeighting = NONE, popularity: np.ndarray | None = None) -> ItemModel:
    """An ItemModel over ``vectors`` (n, d) float32 for external ``ids`` (n,) int64 or 'U': the
    vectors L2-normalised when ``normalise``, user vectors the ``weighting``-weighted mean of the
    history's vectors, ``popularity`` (n,) the fallback ranking (default: zeros, i.e. row order)."""
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    if normalise:
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        if (norms == 0).any():
            raise RecvecError(f"cannot normalise: item row {int(np.argmax(norms[:, 0] == 0)) + 1} has a zero vector",
                              params=("normalise",))
        vecs = np.ascontiguousarray(vecs / norms, dtype=np.float32)
    pop = np.zeros(len(vecs), np.float32) if popularity is None else np.asarray(popularity, np.float32)
    config = VectorsConfig(source=source, normalise=normalise, weighting=weighting)
    enc = MeanEncoder(vecs, weighting_or_none(weighting))
    return ItemModel(config, Vocabulary(ids, kind="item"), vecs, normalise, enc, pop, _no_split)  # type: ignore[arg-type]
