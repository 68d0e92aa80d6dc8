"""Cold-item benchmark (``recvec bench cold``): the SPEC split with a seeded share of items made cold
(:func:`recvec.engine.cold.cold_split`), ALS fitted on the warm train, the items' text embedded, and
Recall@K / NDCG@K of the cold held-out items for text mapped into the ALS space, text alone, ALS
alone and popularity (:func:`recvec.engine.cold.cold_evaluation`)."""

from __future__ import annotations

import time

import numpy as np


def bench_cold(data: str, *, share: float = 0.1, encoder: str = "minilm", pooling: str | None = None,
               k: int = 10, seed: int = 0, threshold: float = 4.0, progress: bool = False) -> dict:
    """Run it on ``data`` (what ``load_dataset`` takes); the result of ``cold_evaluation`` plus the
    data, settings and seconds. RecvecError for data without item text or no cold test item."""
    from recvec.engine.cold import cold_evaluation, cold_split, text_rows
    from recvec.engine.data import load_dataset
    from recvec.engine.models.als import ALSConfig, fit_als
    from recvec.engine.models.fit import ModelConfig, text_vectors
    from recvec.engine.split import leave_last_out

    t0 = time.perf_counter()
    ds = load_dataset(data, progress=progress)
    cs = cold_split(leave_last_out(ds.ratings, threshold), share, seed)
    als = fit_als(cs.warm.matrix, ALSConfig(seed=seed), progress=progress)
    text = text_vectors(ds.catalog, ModelConfig(kind="text", encoder=encoder, pooling=pooling), None, progress)
    warm_text = text[text_rows(ds.catalog.ids, cs.warm.items.ids)]
    cold_text = text[text_rows(ds.catalog.ids, cs.cold_ids)]
    out = cold_evaluation(cs, np.asarray(als.item_factors, np.float32), np.asarray(als.user_factors, np.float32),
                          warm_text, cold_text, k=k, seed=seed)
    return {"data": ds.source, "share": share, "encoder": encoder, "pooling": pooling, "seed": seed, **out,
            "seconds": time.perf_counter() - t0}
