"""The local engine: every batch stage in this process, exactly as recvec runs without an engine
(``load_dataset`` + ``leave_last_out``, ``fit_model``, ``evaluate_model``, ``encode_cached``)."""

from __future__ import annotations

import numpy as np

from recvec.engine.engines import EngineOptions, Prepared


class LocalEngine:
    """See :mod:`recvec.engine.engines` for the contract."""

    name = "local"

    def __init__(self, options: EngineOptions = EngineOptions()):
        self.options = options

    def split(self, data, *, threshold: float = 4.0, endpoint_url: str | None = None,
              progress: bool = False) -> Prepared:
        """Load ``data`` (what ``load_dataset`` takes, or a Dataset) and split it with
        ``leave_last_out``."""
        from recvec.engine.data import Dataset, load_dataset
        from recvec.engine.split import leave_last_out

        ds = data if isinstance(data, Dataset) else load_dataset(data, endpoint_url=endpoint_url, progress=progress)
        split = leave_last_out(ds.ratings, threshold)
        return Prepared(self.name, ds, len(split.train), len(split.test), split.items, threshold, split)

    def check(self, config) -> None:
        """Every model kind runs locally: nothing to refuse."""

    def fit_als(self, prepared: Prepared, config, *, progress: bool = False):
        """implicit's ALS on the split (``config``: a ModelConfig; its training decay applied)."""
        from recvec.engine.models.fit import fit_als_part

        prepared.handle.require_train()
        return fit_als_part(prepared.handle, config, progress)

    def fit(self, prepared: Prepared, config, *, progress: bool = False, cache_dir=None):
        """``fit_model`` on the split and the dataset's catalogue."""
        from recvec.engine.models.fit import fit_model

        return fit_model(prepared.handle, prepared.dataset.catalog, config, progress=progress, cache_dir=cache_dir)

    def evaluate(self, prepared: Prepared, model, *, k: int = 10, progress: bool = False):
        """``evaluate_model`` on the split's test positives."""
        from recvec.engine.models.fit import evaluate_model

        return evaluate_model(model, prepared.handle, k=k)

    def encode_texts(self, encoder: str, pooling: str | None, ids: np.ndarray, texts: list[str], *,
                     cache_dir=None, progress: bool = False) -> np.ndarray:
        """The texts through ``get_embedder(encoder, pooling)``, read from / written to the embedding cache."""
        from recvec.engine.models.cache import encode_cached
        from recvec.engine.models.text import get_embedder

        return encode_cached(get_embedder(encoder, pooling), ids, texts, cache_dir, progress=progress)

    def local_split(self, prepared: Prepared):
        """The Split itself."""
        return prepared.handle

    def describe(self) -> dict:
        """``{"name": "local"}``."""
        return {"name": self.name}

    def close(self) -> None:
        """Nothing to release."""
