"""One entry point from a split to item vectors + a query-time user encoder, for every model kind.

Kinds:

- ``popular``: train popularity (1-d vectors, a constant query).
- ``als``: the lab's implicit ALS. With the default (uniform) ``weighting`` it is evaluated with the
  fitted user factors, as in the lab; with a recency ``weighting`` ("recency ALS") the user vectors
  are built at query time by the weighted least-squares fold-in of each train history.
- ``als-time``: ALS trained on confidences that decay with an interaction's age within its user's
  history (``train_weighting``), users folded in at query time (``weighting``; when left uniform
  it follows ``train_weighting``).
- ``text``: text-encoder item vectors for the whole catalogue, user = (recency-weighted) mean.
- ``hybrid``: two of ALS (as ``als``/``als-time``), text and sequence in one index scoring
  ``w·first + (1−w)·second`` (``hybrid_parts``; :mod:`recvec.engine.models.hybrid`).
- ``sequence``: a SASRec-style/GRU encoder over the history (:mod:`recvec.engine.models.sequence`).

Every kind except the lab's plain ``als`` is evaluated through its query-time user encoder, i.e.
exactly the vectors a served index would be queried with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from recvec.engine.data import Catalog
from recvec.engine.evaluate import (
    Evaluation,
    Scorer,
    evaluate_scorer,
    scorer_from_vectors,
)
from recvec.engine.models import MODEL_KINDS
from recvec.engine.models.als import ALSConfig, ALSModel, fit_als
from recvec.engine.models.cache import encode_cached
from recvec.engine.models.hybrid import (
    HybridEncoder,
    Part,
    RemappedEncoder,
    check_weight,
    hybrid_item_vectors,
)
from recvec.engine.models.itemitem import TransitionConfig, ease_matrix, transition_matrix
from recvec.engine.models.popularity import popularity_scores
from recvec.engine.models.sequence import SequenceConfig, train_sequence_encoder
from recvec.engine.models.text import E5_ALIASES, get_embedder
from recvec.engine.split import Split
from recvec.engine.users import ALSFoldIn, ConstantEncoder, ItemIndicator, MeanEncoder, UserEncoder
from recvec.engine.vocab import Vocabulary
from recvec.engine.weighting import (
    NONE,
    RecencyWeighting,
    time_decay_matrix,
    weighting_or_none,
)
from recvec.errors import RecvecError, shown

#: Hybrid part pairs (first part gets the weight w, the second 1 − w).
HYBRID_PARTS = (("als", "text"), ("als", "sequence"), ("sequence", "text"))

#: Training decay used by ``als-time`` when none is configured (what `recvec tune` chose on ML-1M's validation split).
DEFAULT_TRAIN_WEIGHTING = RecencyWeighting(half_life_days=7.0, floor=0.1)


@dataclass(frozen=True)
class ModelConfig:
    """What to fit. Defaults are the lab's."""

    kind: str = "als"
    als: ALSConfig = field(default_factory=ALSConfig)
    encoder: str = "minilm"
    pooling: str | None = None  # None: the encoder's default (cls for transformers models, mean for e5)
    weighting: RecencyWeighting = NONE  # query-time ALS fold-in confidences (als, als-time, hybrid)
    train_weighting: RecencyWeighting = NONE  # ALS training confidences (als-time, hybrid)
    content_weighting: RecencyWeighting = NONE  # weights of the content mean (text, hybrid)
    hybrid_weight: float = 0.5  # first part's share w of a hybrid's score w·first + (1−w)·second
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    hybrid_parts: tuple[str, str] = ("als", "text")  # which two models a hybrid combines
    ease_lambda: float = 300.0  # EASE's L2 penalty (kind "ease")
    transition: TransitionConfig = field(default_factory=TransitionConfig)  # kind "transition"

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise RecvecError(f"unknown model {shown(self.kind)}; choose one of {', '.join(MODEL_KINDS)}",
                              params=("model",))
        if self.pooling is None:  # resolve here so names and manifests always say which pooling ran
            object.__setattr__(self, "pooling", "mean" if self.encoder.lower() in E5_ALIASES else "cls")
        for name in ("weighting", "train_weighting", "content_weighting"):
            if not isinstance(getattr(self, name), RecencyWeighting):
                raise RecvecError(f"model config {name} must be a RecencyWeighting")
        check_weight(self.hybrid_weight)
        parts = tuple(self.hybrid_parts)
        if parts not in HYBRID_PARTS:
            raise RecvecError(f"hybrid parts {list(parts)} are not supported; choose one of "
                              f"{', '.join('+'.join(p) for p in HYBRID_PARTS)}")
        object.__setattr__(self, "hybrid_parts", parts)

    # -- which parts the config uses ------------------------------------------------------------
    @property
    def uses(self) -> frozenset[str]:
        """Sub-models this config fits: a subset of {"als", "text", "sequence"}."""
        if self.kind in ("als", "als-time"):
            return frozenset({"als"})
        if self.kind == "hybrid":
            return frozenset(self.hybrid_parts)
        return frozenset({self.kind}) if self.kind in ("text", "sequence") else frozenset()

    # -- derived -------------------------------------------------------------------------------
    @property
    def train_decay(self) -> RecencyWeighting:
        """The training confidences actually used (als-time falls back to DEFAULT_TRAIN_WEIGHTING)."""
        if self.kind == "als-time" and self.train_weighting.is_uniform:
            return DEFAULT_TRAIN_WEIGHTING
        return self.train_weighting if self.kind == "als-time" or (self.kind == "hybrid" and "als" in self.uses) else NONE

    @property
    def query_weighting(self) -> RecencyWeighting:
        """The fold-in weighting used at query time (als-time follows its training decay when unset)."""
        if self.kind == "als-time" and self.weighting.is_uniform and self.weighting.scale == 1.0:
            return self.train_decay
        return self.weighting

    @property
    def lab_path(self) -> bool:
        """The lab's evaluation: plain ALS scored with its fitted user factors."""
        return self.kind == "als" and weighting_or_none(self.weighting) is None

    @property
    def name(self) -> str:
        """Display name, e.g. ``als``, ``text:minilm:cls``, ``hybrid(als+minilm:cls,w=0.5)``, with
        ``+recency[...]`` appended for a non-uniform query-time weighting."""
        if self.kind == "text":
            return f"text:{self.encoder}:{self.pooling}" + _w(self.content_weighting)
        if self.kind == "als":
            return "als" + _w(self.weighting)
        if self.kind == "als-time":
            return f"als-time[{self.train_decay.name}]" + _w(self.query_weighting)
        if self.kind == "hybrid":
            names = {"als": "als", "text": f"{self.encoder}:{self.pooling}", "sequence": f"sequence:{self.sequence.arch}"}
            return f"hybrid({'+'.join(names[p] for p in self.hybrid_parts)},w={self.hybrid_weight:g})"
        if self.kind == "sequence":
            return f"sequence:{self.sequence.arch}"
        if self.kind == "ease":
            return f"ease(lambda={self.ease_lambda:g})"
        if self.kind == "transition":
            t = self.transition
            return f"transition(lags={t.lags},last={t.last})"
        return self.kind

    # -- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready: the kind and the parts of the config it uses."""
        d: dict = {"kind": self.kind}
        uses = self.uses
        if self.kind == "hybrid":
            d["hybrid_parts"] = list(self.hybrid_parts)
            d["hybrid_weight"] = self.hybrid_weight
        if "als" in uses:
            d["als"] = asdict(self.als)
            d["weighting"] = self.weighting.to_dict()
            if self.kind != "als":
                d["train_weighting"] = self.train_weighting.to_dict()
        if "text" in uses:
            d.update(encoder=self.encoder, pooling=self.pooling, content_weighting=self.content_weighting.to_dict())
        if "sequence" in uses:
            d["sequence"] = self.sequence.to_dict()
        if self.kind == "ease":
            d["ease_lambda"] = self.ease_lambda
        if self.kind == "transition":
            d["transition"] = self.transition.to_dict()
        return d

    def params(self) -> dict:
        """The same as :meth:`to_dict` (the params an Evaluation records)."""
        return self.to_dict()

    @classmethod
    def from_dict(cls, d: dict, where: str = "model config") -> "ModelConfig":
        """Rebuild from :meth:`to_dict` output (missing keys take their defaults); RecvecError naming
        ``where`` for a non-object, unknown keys or invalid values (a non-numeric string where a
        number belongs raises ValueError)."""
        if not isinstance(d, dict):
            raise RecvecError(f"{where}: expected a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise RecvecError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
        kw = dict(d)
        try:
            if "als" in kw:
                kw["als"] = ALSConfig(**kw["als"])
            for name in ("weighting", "train_weighting", "content_weighting"):
                if name in kw:
                    kw[name] = RecencyWeighting.from_dict(kw[name])
            if "sequence" in kw:
                kw["sequence"] = SequenceConfig.from_dict(kw["sequence"])
            if "hybrid_weight" in kw:
                kw["hybrid_weight"] = float(kw["hybrid_weight"])
            if "hybrid_parts" in kw:
                kw["hybrid_parts"] = tuple(kw["hybrid_parts"])
            if "transition" in kw:
                kw["transition"] = TransitionConfig.from_dict(kw["transition"])
            if "ease_lambda" in kw:
                kw["ease_lambda"] = float(kw["ease_lambda"])
            return cls(**kw)
        except TypeError as e:
            raise RecvecError(f"{where}: {e}") from None
        except RecvecError as e:
            raise RecvecError(f"{where}: {e}") from None


def _w(w: RecencyWeighting) -> str:
    return "" if weighting_or_none(w) is None else f"+recency[{w.name}]"


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


def _rows_in(items: Vocabulary, split: Split) -> list[np.ndarray]:
    """Split users' train histories as rows of `items`."""
    if items == split.items:
        return split.histories()
    remap = items.rows(split.items.ids)
    return [remap[h] for h in split.histories()]


def query_time_scorer(encoder: UserEncoder, item_vectors: np.ndarray, histories: list[np.ndarray],
                      times: list[np.ndarray] | None) -> Scorer:
    """Score split users with the vectors their query-time encoder builds from their train history."""
    return scorer_from_vectors(encoder.encode(histories, times), item_vectors)


def fit_als_part(split: Split, config: ModelConfig, progress: bool):
    """Fit ALS on the split's binary train matrix, its confidences decayed by ``config.train_decay``
    when that is not uniform (scale 1); returns the ALSModel. RecvecError if the fit fails
    (non-finite factors)."""
    decay = config.train_decay
    matrix = split.matrix if decay.is_uniform and decay.scale == 1.0 else time_decay_matrix(
        split.train_user_rows, split.train_item_rows, split.train.timestamps, split.matrix.shape, decay)
    return fit_als(matrix, config.als, progress=progress)


def als_fit_key(config: ModelConfig) -> tuple:
    """What an ALS fit depends on (for reusing fits across query-time settings)."""
    return (config.als, config.train_decay)


def text_vectors(catalog: Catalog, config: ModelConfig, cache_dir: Path | None, progress: bool) -> np.ndarray:
    """(len(catalog), dim) float32 L2-normalised text embeddings of the catalogue's items (their text
    parts joined by the encoder's separator: MovieLens's title and genres), in ``catalog.ids`` order,
    read from / written to the embedding cache in ``cache_dir`` (None: the default cache directory).
    RecvecError if the catalogue has no item text or the encoder cannot be loaded."""
    if not any(any(parts) for parts in catalog.text_parts()):
        raise RecvecError("the catalogue has no item text for a text encoder: give an item table with text "
                          "(--items FILE --item-columns id=COL,title=COL,text=COL+COL)")
    embedder = get_embedder(config.encoder, config.pooling)
    texts = catalog.texts(embedder.sep_token)
    return encode_cached(embedder, catalog.ids, texts, cache_dir, progress=progress)


def fit_model(split: Split, catalog: Catalog, config: ModelConfig, *, progress: bool = False,
              cache_dir: Path | None = None, threads: int | None = None) -> ItemModel:
    """Fit the configured model on the train split (``threads``: torch threads for ``sequence``).
    Raises DataError when the train split is empty."""
    split.require_train()
    pop_train = popularity_scores(split.matrix)
    if config.kind == "popular":
        vecs = pop_train[:, None].astype(np.float32)
        return ItemModel(config, split.items, vecs, False, ConstantEncoder(), pop_train,
                         lambda rows: np.broadcast_to(pop_train, (len(rows), len(pop_train))))
    if config.kind in ("als", "als-time"):
        return assemble_als(split, config, fit_als_part(split, config, progress))
    if config.kind == "sequence":
        return _fit_sequence(split, config, progress, threads)
    if config.kind in ("ease", "transition"):
        return assemble_itemitem(split, config)
    if config.kind == "text":
        return assemble_text(split, catalog, config, text_vectors(catalog, config, cache_dir, progress))
    uses = config.uses
    return assemble_hybrid(
        split, catalog, config,
        als=fit_als_part(split, config, progress) if "als" in uses else None,
        text=text_vectors(catalog, config, cache_dir, progress) if "text" in uses else None,
        sequence=train_sequence(split, config, progress, threads) if "sequence" in uses else None)


def assemble_itemitem(split: Split, config: ModelConfig, *, matrix: np.ndarray | None = None) -> ItemModel:
    """An ease/transition ItemModel: item vectors the columns of its item-item matrix (n dims), the
    query the history as a weighted indicator (see ``engine.models.itemitem``). ``matrix``: that
    matrix when already computed for this split (tuning reuses it across query settings)."""
    n = len(split.items)
    if config.kind == "ease":
        m = ease_matrix(split.matrix, config.ease_lambda) if matrix is None else matrix
        enc = ItemIndicator(n)
    else:
        t = config.transition
        m = transition_matrix(split.histories(), n, t) if matrix is None else matrix
        enc = ItemIndicator(n, t.last, t.recency_decay)
    vectors = np.ascontiguousarray(m.T)
    scorer = query_time_scorer(enc, vectors, split.histories(), None)
    return ItemModel(config, split.items, vectors, False, enc, popularity_scores(split.matrix), scorer)


def assemble_als(split: Split, config: ModelConfig, als: ALSModel) -> ItemModel:
    """An als/als-time ItemModel from fitted factors (the query-time fold-in as its encoder)."""
    enc = ALSFoldIn(als.item_factors, config.als.regularization, config.als.alpha,
                    weighting_or_none(config.query_weighting))
    scorer = (scorer_from_vectors(als.user_factors, als.item_factors) if config.lab_path
              else query_time_scorer(enc, als.item_factors, split.histories(), split.history_times()))
    return ItemModel(config, split.items, als.item_factors, False, enc, popularity_scores(split.matrix), scorer)


def _catalog_items(split: Split, catalog: Catalog) -> tuple[Vocabulary, np.ndarray, np.ndarray]:
    """Catalogue vocabulary, train items' rows in it, and popularity over it (0 for unrated items)."""
    items = Vocabulary(catalog.ids, kind="item" if catalog.string_ids else "movie")
    train_rows = items.rows(split.items.ids)
    pop = np.zeros(len(items), np.float32)
    pop[train_rows] = popularity_scores(split.matrix)
    return items, train_rows, pop


def assemble_text(split: Split, catalog: Catalog, config: ModelConfig, text: np.ndarray) -> ItemModel:
    """A text ItemModel over the whole catalogue (items never rated stay recommendable)."""
    items, _, pop = _catalog_items(split, catalog)
    mean = MeanEncoder(text, weighting_or_none(config.content_weighting))
    scorer = query_time_scorer(mean, text, _rows_in(items, split), split.history_times())
    return ItemModel(config, items, text, True, mean, pop, scorer)


def assemble_hybrid(split: Split, catalog: Catalog, config: ModelConfig, *, als: ALSModel | None = None,
                    text: np.ndarray | None = None, sequence=None) -> ItemModel:
    """A hybrid ItemModel from its fitted parts (``config.hybrid_parts``). With a text part the
    index covers the whole catalogue (items never rated score through the text part alone);
    otherwise the train items."""
    if "text" in config.uses:
        items, train_rows, pop = _catalog_items(split, catalog)
    else:
        items, train_rows, pop = split.items, np.arange(len(split.items)), popularity_scores(split.matrix)
    arrays: dict[str, np.ndarray] = {}
    parts = []
    for name in config.hybrid_parts:
        if name == "als":
            if als is None:
                raise RecvecError("a hybrid with an ALS part needs the fitted ALS model")
            factors = np.zeros((len(items), als.item_factors.shape[1]), np.float32)
            factors[train_rows] = als.item_factors
            enc = ALSFoldIn(factors, config.als.regularization, config.als.alpha,
                            weighting_or_none(config.query_weighting))
            arrays["als_factors"] = factors
            parts.append(Part("als", enc, factors, "als_factors"))
        elif name == "text":
            if text is None:
                raise RecvecError("a hybrid with a text part needs the text vectors")
            arrays["content_vectors"] = text
            parts.append(Part("text", MeanEncoder(text, weighting_or_none(config.content_weighting)), text,
                              "content_vectors"))
        else:
            if sequence is None:
                raise RecvecError("a hybrid with a sequence part needs the trained sequence model")
            enc, vecs = sequence.encoder(), sequence.item_vectors()
            arrays["sequence_weights"] = sequence.weights_array()
            if items != split.items:  # the model knows train items only: map the index's rows to its rows
                rows = np.full(len(items), -1, np.int64)
                rows[train_rows] = np.arange(len(split.items))
                enc = RemappedEncoder(enc, rows, array="sequence_rows")
                vecs = enc.item_vectors()
                arrays["sequence_rows"] = rows
            parts.append(Part("sequence", enc, vecs))
    enc = HybridEncoder(parts[0], parts[1], config.hybrid_weight)
    vecs = hybrid_item_vectors(parts[0].item_vectors, parts[1].item_vectors, config.hybrid_weight)
    histories = split.histories() if items == split.items else _rows_in(items, split)
    scorer = query_time_scorer(enc, vecs, histories, split.history_times())
    return ItemModel(config, items, vecs, False, enc, pop, scorer, arrays=arrays)


def train_sequence(split: Split, config: ModelConfig, progress: bool, threads: int | None):
    """Train the configured sequence encoder on the split's train histories (``threads``: torch threads,
    None: the CPUs this process may use); returns the SequenceModel. RecvecError when no history has
    2 or more items."""
    return train_sequence_encoder(split.histories(), len(split.items), config.sequence, progress=progress,
                                  threads=threads)


def _fit_sequence(split: Split, config: ModelConfig, progress: bool, threads: int | None) -> ItemModel:
    return assemble_sequence(split, config, train_sequence(split, config, progress, threads))


def assemble_sequence(split: Split, config: ModelConfig, model) -> ItemModel:
    """A sequence ItemModel from a trained SequenceModel (weights kept as safetensors bytes)."""
    histories = split.histories()
    pop_train = popularity_scores(split.matrix)
    enc = model.encoder()
    vecs = model.item_vectors()
    return ItemModel(config, split.items, vecs, False, enc, pop_train, query_time_scorer(enc, vecs, histories, None),
                     arrays={"sequence_weights": model.weights_array()})


def evaluate_model(model: ItemModel, split: Split, *, k: int = 10) -> Evaluation:
    """Evaluate ``model.eval_scorer`` on the split's held-out test positives at ``k``: an Evaluation named
    after the config, recording its params. RecvecError if k < 1."""
    return evaluate_scorer(model.eval_scorer, split, model=model.config.name, k=k, items=model.items,
                           params=model.config.params())
