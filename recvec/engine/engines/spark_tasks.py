"""What Spark's Python workers run (``mapInPandas``): scoring a partition of test users with
recvec's own batched evaluator, and encoding a partition of item texts.

Executors import this module (so recvec must be installed where they run). Broadcast values are
read once per Python worker and kept in ``_WORKER`` with what is built from them (the transposed
item vectors, the rebuilt user encoder, a loaded text encoder), so a worker reused across tasks
(Spark's default) loads an encoder once. Each task holds BLAS and torch to one thread: Spark runs
one task per core.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Per Python worker: what broadcasts and encoders it has built, by key.
_WORKER: dict = {}
#: Score matrices are built for this many (users x items) cells at most per block (float32: 256 MiB).
BLOCK_CELLS = 1 << 26


def _one_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _scoring_state(key: str, vectors_bc, encoder_bc):
    """(items_t, encoder or None, remap or None) for the broadcast key, built once per worker."""
    state = _WORKER.get(key)
    if state is None:
        from recvec.engine.users import encoder_from_params

        vectors = np.ascontiguousarray(vectors_bc.value, dtype=np.float32)
        spec = encoder_bc.value  # {"params", "arrays", "remap"}
        enc = None
        if spec["params"] is not None:
            enc = encoder_from_params(spec["params"], spec["arrays"], vectors, n_items=len(vectors))
        state = (np.ascontiguousarray(vectors.T), enc, spec["remap"])
        _WORKER.clear()  # one scoring job at a time per worker: drop an earlier one's arrays
        _WORKER[key] = state
    return state


def score_partition(batches: Iterator, *, key: str, vectors_bc, encoder_bc) -> Iterator:
    """Per evaluable test user (pandas columns ``u``, ``target`` (train item row), ``hist`` (train
    item rows in time order), ``times`` (their timestamps) and, for fitted user factors, ``uf``):
    the held-out item's 0-based rank among the items not in the history, as
    :func:`recvec.engine.evaluate.evaluate_scorer` computes it (dense float32 scores, history
    masked to -inf, ties broken by item row). Yields pandas frames ``u``, ``rank``."""
    import pandas as pd
    import scipy.sparse as sp

    from recvec.engine.evaluate import mask_rows, target_ranks

    items_t, enc, remap = _scoring_state(key, vectors_bc, encoder_bc)
    n_items = items_t.shape[1]
    block = max(1, min(2048, BLOCK_CELLS // max(1, n_items)))
    with _one_thread():
        for pdf in batches:
            for s in range(0, len(pdf), block):
                part = pdf.iloc[s:s + block]
                hists = [np.asarray(h, dtype=np.int64) for h in part["hist"]]
                targets = part["target"].to_numpy(np.int64)
                if remap is not None:
                    hists = [remap[h] for h in hists]
                    targets = remap[targets]
                if "uf" in part.columns:
                    users = np.stack([np.asarray(v, dtype=np.float32) for v in part["uf"]])
                else:
                    users = enc.encode(hists, [np.asarray(t, dtype=np.int64) for t in part["times"]])
                scores = np.array(np.asarray(users, dtype=np.float32) @ items_t, dtype=np.float32, copy=True)
                lengths = np.fromiter((len(h) for h in hists), dtype=np.int64, count=len(hists))
                indptr = np.concatenate([[0], np.cumsum(lengths)])
                cols = np.concatenate(hists) if hists else np.zeros(0, np.int64)
                exclude = sp.csr_matrix((np.ones(len(cols), np.float32), cols, indptr), shape=(len(hists), n_items))
                mask_rows(scores, exclude)
                yield pd.DataFrame({"u": part["u"].to_numpy(np.int32), "rank": target_ranks(scores, targets)})


def encode_partition(batches: Iterator, *, encoder: str, pooling: str | None, batch_size: int) -> Iterator:
    """Item texts (pandas columns ``row``, ``text``) -> ``row``, ``vector`` (float32 list, L2-normalised):
    the encoder ``get_embedder(encoder, pooling)`` gives locally, loaded once per worker, on one
    torch thread."""
    import pandas as pd

    from recvec.engine.models.text import get_embedder

    key = ("embedder", encoder, pooling)
    emb = _WORKER.get(key)
    if emb is None:
        emb = _WORKER[key] = get_embedder(encoder, pooling, num_threads=1)
    with _one_thread():
        for pdf in batches:
            vecs = np.ascontiguousarray(emb.encode(list(pdf["text"]), batch_size=batch_size), dtype=np.float32)
            yield pd.DataFrame({"row": pdf["row"].to_numpy(np.int64), "vector": list(vecs)})
