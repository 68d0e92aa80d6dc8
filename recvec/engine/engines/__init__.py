"""Where the batch stages run: the split, the fit, the item-text encoding and the evaluation.

An engine changes where those stages run, never what they compute or the artifact they write:
every engine gives the same split rows, an :class:`~recvec.engine.models.fit.ItemModel` of the
same kind (ALS item factors with the fold-in params, text embeddings) and an
:class:`~recvec.engine.evaluate.Evaluation` under the same Recall/NDCG definition.

The contract (:class:`Engine`)::

    engine.check(config)                                     -> None, or RecvecError (before any work)
    engine.split(data, threshold=, endpoint_url=, progress=) -> Prepared
    engine.fit_als(prepared, config, progress=)              -> ALSModel (user factors collected)
    engine.fit(prepared, config, progress=, cache_dir=)      -> ItemModel
    engine.evaluate(prepared, model, k=, progress=)          -> Evaluation
    engine.encode_texts(encoder, pooling, ids, texts, cache_dir=, progress=) -> (n, d) float32
    engine.local_split(prepared)                             -> Split (on the driver)
    engine.describe() -> dict ; engine.close()

Engines: ``local`` (:mod:`.local`: this process, as recvec always ran) and ``spark``
(:mod:`.spark`: a Spark session, ``local[N]`` or a cluster). Adding one is a module and a line in
``_REGISTRY``. :func:`open_engine` builds one from :class:`EngineOptions` (the CLI's ``--engine``,
``--spark-master``, ``--spark-conf``) as a context manager that closes it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from recvec.engine.data import Dataset
from recvec.engine.vocab import Vocabulary
from recvec.errors import RecvecError, shown

_REGISTRY = {
    "local": "recvec.engine.engines.local:LocalEngine",
    "spark": "recvec.engine.engines.spark:SparkEngine",
}
NAMES = tuple(_REGISTRY)


@dataclass(frozen=True)
class EngineOptions:
    """Which engine and, for Spark, its ``master`` (None: ``local[T]``, T the thread policy's count)
    and ``conf`` (``(key, value)`` pairs)."""

    name: str = "local"
    master: str | None = None
    conf: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if self.name not in _REGISTRY:
            raise RecvecError(f"unknown engine {shown(self.name)}; choose one of {', '.join(NAMES)}",
                              params=("engine",))
        if self.name != "spark" and (self.master or self.conf):
            raise RecvecError("spark_master and spark_conf apply to engine spark", params=("spark_master", "engine"))


@dataclass
class Prepared:
    """An engine's split of one dataset: the Dataset (catalogue, source, format, fingerprint: what
    an artifact records), the split's row counts, the train item vocabulary (rows of ALS item
    factors), the positive threshold, and the engine's own ``handle`` (a local
    :class:`~recvec.engine.split.Split`, or Spark's DataFrames)."""

    engine: str
    dataset: Dataset
    train_rows: int
    test_rows: int
    items: Vocabulary
    threshold: float
    handle: Any


class Engine(Protocol):
    """See the module docstring. Errors are RecvecError (DataError for the data) naming the
    parameter they concern."""

    name: str

    def split(self, data, *, threshold: float = 4.0, endpoint_url: str | None = None,
              progress: bool = False) -> Prepared: ...

    def check(self, config) -> None: ...

    def fit_als(self, prepared: Prepared, config, *, progress: bool = False): ...

    def fit(self, prepared: Prepared, config, *, progress: bool = False, cache_dir=None): ...

    def evaluate(self, prepared: Prepared, model, *, k: int = 10, progress: bool = False): ...

    def encode_texts(self, encoder: str, pooling: str | None, ids: np.ndarray, texts: list[str], *,
                     cache_dir=None, progress: bool = False) -> np.ndarray: ...

    def local_split(self, prepared: Prepared): ...

    def describe(self) -> dict: ...

    def close(self) -> None: ...


def get_engine(options: EngineOptions = EngineOptions()) -> Engine:
    """A new engine for ``options`` (a Spark engine starts or joins its session on first use)."""
    module, _, cls = _REGISTRY[options.name].partition(":")
    return getattr(importlib.import_module(module), cls)(options)


@contextmanager
def open_engine(options: EngineOptions = EngineOptions()) -> Iterator[Engine]:
    """:func:`get_engine` as a context manager that closes the engine at the end."""
    engine = get_engine(options)
    try:
        yield engine
    finally:
        engine.close()
