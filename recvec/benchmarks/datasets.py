"""The latency benchmark's inputs: where each catalogue comes from (:class:`Source`: a MovieLens
dataset's ALS item factors, item vectors the user brings (``--vectors FILE``), or a synthetic
structured catalogue from :mod:`recvec.benchmarks.catalogs`) and what the runs measure on (:class:`Prepared`: item vectors,
the sampled users' histories, their query vectors and the user encoder that built them).

The ALS fit of a MovieLens dataset is stored like any unit (group ``latency/<name>/model``), so a
resumed run reuses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from recvec.benchmarks import runner
from recvec.benchmarks.catalogs import (
    DEFAULT_NORM_SIGMA,
    CatalogSpec,
    make_catalogue,
    structure_summary,
    user_encoder,
    user_encoder_queries,
)
from recvec.benchmarks.results import ResultStore
from recvec.engine.data import load_dataset
from recvec.engine.models.als import ALSConfig, ALSModel, fit_als
from recvec.engine.models.fit import ModelConfig, assemble_als
from recvec.engine.recommender import Recommender
from recvec.engine.split import leave_last_out
from recvec.engine.users import ALSFoldIn, MeanEncoder
from recvec.engine.vocab import Vocabulary
from recvec.errors import RecvecError


@dataclass(frozen=True)
class Source:
    """Where a catalogue comes from: a MovieLens dataset (ALS factors), a vectors file the user
    brings (``data``: its path; ``normalise``), or a synthetic spec."""

    kind: str  # "movielens" | "vectors" | "synthetic"
    data: str | None = None
    spec: CatalogSpec | None = None
    threshold: float = 4.0
    factors: int = 64
    normalise: bool = False
    columns: str | None = None  # vectors: "id=COL[,vector=COL]" (default names otherwise)

    @property
    def name(self) -> str:
        """The catalogue's name in results and tables: ``<dataset dir>-als64``, ``<vectors file>`` or
        the spec's name."""
        if self.kind == "synthetic":
            return self.spec.name
        base = Path(str(self.data).rstrip("/")).name or "data"
        return base if self.kind == "vectors" else f"{base}-als{self.factors}"

    @property
    def encoder(self) -> str:
        """The query-time user encoder: "fold-in" (ALS), "mean" (brought vectors) or the spec's."""
        return {"movielens": "fold-in", "vectors": "mean"}.get(self.kind) or self.spec.encoder

    def params(self) -> dict:
        """The source as stored params (part of every unit's key)."""
        if self.kind == "synthetic":
            return {"kind": "synthetic", **asdict(self.spec)}
        if self.kind == "vectors":
            return {"kind": "vectors", "data": str(self.data), "normalise": self.normalise, "columns": self.columns}
        return {"kind": "movielens", "data": str(self.data), "threshold": self.threshold, "factors": self.factors}


@dataclass
class Prepared:
    """One catalogue ready to measure: ``vectors`` (n, d) float32 item vectors; ``histories`` one
    array of item rows per sampled user; ``queries`` (users, d) float32 query vectors built from
    them by ``encoder``; ``ids`` (n,) the external id of each row; the fold-in's ``regularization``
    and ``alpha`` (implicit's baselines use them); ``info`` for the record; ``artifact_inputs``
    (dataset, a function returning the ItemModel) for MovieLens, else None."""

    name: str
    vectors: np.ndarray
    histories: list[np.ndarray]
    queries: np.ndarray
    encoder: object
    ids: np.ndarray  # external id of each row
    regularization: float
    alpha: float
    info: dict = field(default_factory=dict)
    artifact_inputs: tuple[object, Callable[[], object]] | None = None  # (dataset, ItemModel) for MovieLens

    def recommender(self, index) -> Recommender:
        """A Recommender over ``index`` (an ItemIndex of ``vectors``) and these items' ids: the
        full path a service runs (history ids -> user vector -> search -> external ids)."""
        return Recommender(index, Vocabulary(self.ids, kind="item"), self.encoder,
                           np.zeros(len(self.ids), np.float32), normalized=False)


def _prepare_movielens(src: Source, queries: int, seed: int, store: ResultStore, force: bool, progress: bool,
                       context: runner.RunContext | None) -> Prepared:
    ds = load_dataset(str(src.data), progress=progress)
    split = leave_last_out(ds.ratings, src.threshold)
    als_cfg = ALSConfig(factors=src.factors)
    key = {"label": "als", "catalogue": src.params(), "fingerprint": ds.fingerprint, "als": asdict(als_cfg)}
    group = f"latency/{src.name}/model"
    stored = None if force else store.get(group, key)
    if stored is None:
        t0 = time.perf_counter()
        als = fit_als(split.matrix, als_cfg, progress=progress)
        stored = store.save(group, key, {"fit_s": time.perf_counter() - t0, "machine": runner.machine_info(context)},
                            {"item_factors": als.item_factors, "user_factors": als.user_factors})
    als = ALSModel(als_cfg, stored.array("user_factors"), stored.array("item_factors"))
    hist_all = split.histories()
    rng = np.random.default_rng(seed)
    users = np.flatnonzero([len(h) > 0 for h in hist_all])
    if queries < len(users):
        users = np.sort(rng.choice(users, queries, replace=False))
    hist = [np.unique(hist_all[u]) for u in users]
    enc = ALSFoldIn(als.item_factors, als_cfg.regularization, als_cfg.alpha)
    q = user_encoder_queries(enc, hist)
    model_cfg = ModelConfig(kind="als", als=als_cfg)
    return Prepared(src.name, als.item_factors, hist, q, enc, split.items.ids, als_cfg.regularization, als_cfg.alpha,
                    {"source": src.params(), "items": len(split.items), "users_sampled": len(users),
                     "structure": structure_summary(als.item_factors), "encoder": "fold-in",
                     "fingerprint": ds.fingerprint},
                    (ds, lambda: assemble_als(split, model_cfg, als)))


def vector_histories(vectors: np.ndarray, n_users: int, seed: int) -> list[np.ndarray]:
    """Histories for a catalogue without interactions: per user a random seed item and the items most
    similar to it (cosine), of lognormal length (median 57, within 16..500: ML-1M's train histories;
    at most half the catalogue), seeded. Returns sorted item rows per user."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    lengths = np.clip(np.round(rng.lognormal(np.log(57.0), 1.0, n_users)), 16, 500).astype(int)
    lengths = np.minimum(lengths, max(n // 2, 1))  # a small catalogue keeps half its items to recommend
    seeds = rng.integers(0, n, n_users)
    out: list[np.ndarray] = []
    for start in range(0, n_users, 256):
        s = unit[seeds[start:start + 256]] @ unit.T
        for j, row in enumerate(s):
            m = int(lengths[start + j])
            out.append(np.sort(np.argpartition(-row, m - 1)[:m]).astype(np.int64))
    return out


def _prepare_vectors(src: Source, queries: int, seed: int, progress: bool) -> Prepared:
    from recvec.engine.data import TABLE_FORMATS
    from recvec.engine.data.spec import parse_vector_columns
    from recvec.engine.data.vectors import load_item_vectors

    cols = parse_vector_columns(src.columns) if src.columns else {}
    vecs = load_item_vectors(str(src.data), TABLE_FORMATS, id_column=cols.get("id"), vector_column=cols.get("vector"))
    vectors = vecs.vectors
    if src.normalise:
        vectors = np.ascontiguousarray(vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12),
                                       dtype=np.float32)
    hist = vector_histories(vectors, queries, seed)
    enc = MeanEncoder(vectors)
    return Prepared(src.name, vectors, hist, user_encoder_queries(enc, hist), enc, vecs.ids, 0.01, 1.0,
                    {"source": src.params(), "items": len(vectors), "users_sampled": len(hist),
                     "structure": structure_summary(vectors), "encoder": "mean", "string_ids": vecs.ids.dtype.kind == "U",
                     "histories": "a random item and its nearest neighbours (cosine), lognormal lengths",
                     "fingerprint": vecs.digest})


def _prepare_synthetic(src: Source, queries: int, progress: bool) -> Prepared:
    cat = make_catalogue(src.spec, queries, progress=progress)
    enc = user_encoder(src.spec, cat.vectors)
    return Prepared(src.name, cat.vectors, cat.histories, cat.queries, enc, np.arange(cat.n, dtype=np.int64),
                    src.spec.regularization, 1.0,
                    {"source": src.params(), "items": cat.n, "users_sampled": len(cat.histories),
                     "structure": structure_summary(cat.vectors), "encoder": src.spec.encoder})


def prepare(src: Source, *, queries: int, seed: int, store: ResultStore, force: bool = False,
            progress: bool = False, context: runner.RunContext | None = None) -> Prepared:
    """The catalogue of ``src`` with ``queries`` users (MovieLens: sampled with ``seed`` among the
    users with a train history; synthetic: generated). A MovieLens dataset's ALS fit is read from
    ``store`` (refitted and stored when missing or with ``force``). Dataset errors propagate as
    RecvecError/DataError."""
    if src.kind == "movielens":
        return _prepare_movielens(src, queries, seed, store, force, progress, context)
    if src.kind == "vectors":
        return _prepare_vectors(src, queries, seed, progress)
    return _prepare_synthetic(src, queries, progress)


def sources_for(data: str | None, synthetic: tuple[int, ...] | None, dims: tuple[int, ...], *, seed: int = 0,
                threshold: float = 4.0, vectors: str | None = None, vector_columns: str | None = None,
                normalise: bool = False, norm_sigma: float = DEFAULT_NORM_SIGMA) -> list[Source]:
    """The catalogues of one ``bench latency`` run: the dataset's ALS factors, the brought ``vectors``
    (users: the mean of synthetic neighbourhood histories), then each synthetic size x dimension,
    smallest first, their log item norms spread by ``norm_sigma``. RecvecError if none of ``data``,
    ``vectors`` and ``synthetic`` is given."""
    out = []
    if data:
        out.append(Source("movielens", data=str(data), threshold=threshold))
    if vectors:
        out.append(Source("vectors", data=str(vectors), normalise=normalise, columns=vector_columns))
    for n in sorted(synthetic or ()):
        for d in sorted(dims):
            out.append(Source("synthetic", spec=CatalogSpec(n=int(n), d=int(d), seed=seed, norm_sigma=norm_sigma)))
    if not out:
        raise RecvecError("nothing to measure: give data PATH, vectors FILE and/or synthetic N",
                          params=("data", "vectors", "synthetic"))
    return out
