"""One entry point from a split to item vectors + a query-time user encoder, for every model kind."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from recvec.engine.data import Catalog
from recvec.engine.evaluate import Evaluation, Scorer, evaluate_scorer, scorer_from_vectors
from recvec.engine.models.als import ALSConfig, fit_als
from recvec.engine.models.popularity import popularity_scores
from recvec.engine.split import Split
from recvec.engine.users import ALSFoldIn, MeanEncoder, UserEncoder
from recvec.engine.vocab import Vocabulary
from recvec.errors import RecvecError

MODEL_KINDS = ("popular", "als", "text")


@dataclass(frozen=True)
class ModelConfig:
    """What to fit. Defaults are the lab's."""

    kind: str = "als"
    als: ALSConfig = field(default_factory=ALSConfig)
    encoder: str = "minilm"
    pooling: str = "cls"

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise RecvecError(f"unknown --model {self.kind!r}; choose one of {', '.join(MODEL_KINDS)}")

    @property
    def name(self) -> str:
        if self.kind == "text":
            return f"text:{self.encoder}:{self.pooling}"
        return self.kind

    def params(self) -> dict:
        if self.kind == "als":
            return {"kind": "als", **asdict(self.als)}
        if self.kind == "text":
            return {"kind": "text", "encoder": self.encoder, "pooling": self.pooling}
        return {"kind": self.kind}


@dataclass(frozen=True)
class ItemModel:
    """Item vectors for an index over `items`, and how to turn a history into a query vector."""

    config: ModelConfig
    items: Vocabulary  # rows of item_vectors
    item_vectors: np.ndarray  # (n_items, dim) float32
    normalized: bool
    user_encoder: UserEncoder
    popularity: np.ndarray  # (n_items,) train positives, the fallback ranking
    eval_scorer: Scorer  # split user rows -> scores over `items` (the lab's evaluation path)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # what a query needs besides the vectors


class ConstantEncoder:
    """Every history maps to [1.0]: with 1-d popularity item vectors, inner product = popularity."""

    dim = 1

    def encode(self, histories, timestamps=None) -> np.ndarray:
        return np.ones((len(histories), 1), dtype=np.float32)


def _rows_in(items: Vocabulary, split: Split) -> list[np.ndarray]:
    """Split users' train histories as rows of `items`."""
    if items == split.items:
        return split.histories()
    remap = items.rows(split.items.ids)
    return [remap[h] for h in split.histories()]


def fit_model(split: Split, catalog: Catalog, config: ModelConfig, *, progress: bool = False,
              cache_dir: Path | None = None) -> ItemModel:
    """Fit the configured model on the train split."""
    pop_train = popularity_scores(split.matrix)
    if config.kind == "popular":
        vecs = pop_train[:, None].astype(np.float32)
        return ItemModel(config, split.items, vecs, False, ConstantEncoder(), pop_train,
                         lambda rows: np.broadcast_to(pop_train, (len(rows), len(pop_train))))
    if config.kind == "als":
        als = fit_als(split.matrix, config.als, progress=progress)
        enc = ALSFoldIn(als.item_factors, config.als.regularization, config.als.alpha)
        return ItemModel(config, split.items, als.item_factors, False, enc, pop_train,
                         scorer_from_vectors(als.user_factors, als.item_factors))
    # text: every catalogue item gets a vector, so items never rated stay recommendable
    from recvec.engine.models.text import catalog_texts, encode_cached, get_embedder

    items = Vocabulary(catalog.ids, kind="movie")
    embedder = get_embedder(config.encoder, config.pooling)
    texts = catalog_texts(catalog.titles, catalog.genres, embedder.sep_token)
    vecs = encode_cached(embedder, catalog.ids, texts, cache_dir, progress=progress)
    pop = np.zeros(len(items), np.float32)
    pop[items.rows(split.items.ids)] = pop_train
    enc = MeanEncoder(vecs)
    user_vecs = enc.encode(_rows_in(items, split))
    return ItemModel(config, items, vecs, True, enc, pop, scorer_from_vectors(user_vecs, vecs))


def evaluate_model(model: ItemModel, split: Split, *, k: int = 10) -> Evaluation:
    return evaluate_scorer(model.eval_scorer, split, model=model.config.name, k=k, items=model.items,
                           params=model.config.params())
