"""The latency benchmark's inputs: where each catalogue comes from (:class:`Source`: a MovieLens
dataset's ALS item factors, or a synthetic structured catalogue from
:mod:`recvec.benchmarks.catalogs`) and what the runs measure on (:class:`Prepared`: item vectors,
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
from recvec.engine.users import ALSFoldIn
from recvec.engine.vocab import Vocabulary
from recvec.errors import RecvecError


@dataclass(frozen=True)
class Source:
    """Where a catalogue comes from: a MovieLens dataset (ALS factors) or a synthetic spec."""

    kind: str  # "movielens" | "synthetic"
    data: str | None = None
    spec: CatalogSpec | None = None
    threshold: float = 4.0
    factors: int = 64

    @property
    def name(self) -> str:
        """The catalogue's name in results and tables: ``<dataset dir>-als64`` or the spec's name."""
        if self.kind == "synthetic":
            return self.spec.name
        base = Path(str(self.data).rstrip("/")).name or "data"
        return f"{base}-als{self.factors}"

    def params(self) -> dict:
        """The source as stored params (part of every unit's key)."""
        if self.kind == "synthetic":
            return {"kind": "synthetic", **asdict(self.spec)}
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
    return _prepare_synthetic(src, queries, progress)


def sources_for(data: str | None, synthetic: tuple[int, ...] | None, dims: tuple[int, ...], *, seed: int = 0,
                threshold: float = 4.0) -> list[Source]:
    """The catalogues of one ``bench latency`` run: the dataset's ALS factors, then each synthetic
    size x dimension, smallest first. RecvecError if neither ``data`` nor ``synthetic`` is given."""
    out = []
    if data:
        out.append(Source("movielens", data=str(data), threshold=threshold))
    for n in sorted(synthetic or ()):
        for d in sorted(dims):
            out.append(Source("synthetic", spec=CatalogSpec(n=int(n), d=int(d), seed=seed)))
    if not out:
        raise RecvecError("nothing to measure: give data PATH and/or synthetic N", params=("data", "synthetic"))
    return out
