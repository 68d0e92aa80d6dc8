"""Batched evaluation of a scorer over a split (SPEC: Evaluation), no per-user model calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp

from recvec.engine.metrics import hit_ranks, ndcg_at_k, recall_at_k
from recvec.engine.recommender import Recommender
from recvec.engine.split import Split
from recvec.engine.vocab import Vocabulary
from recvec.errors import RecvecError
from recvec.threads import stage as thread_stage

# A scorer maps user rows (b,) -> dense scores (b, num_items).
Scorer = Callable[[np.ndarray], np.ndarray]


def mask_rows(scores: np.ndarray, exclude: sp.csr_matrix) -> np.ndarray:
    """Set scores[i, j] = -inf wherever exclude[i, j] is stored (in place; returns scores)."""
    counts = np.diff(exclude.indptr)
    scores[np.repeat(np.arange(exclude.shape[0]), counts), exclude.indices] = -np.inf
    return scores


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target under a stable sort by (-score, item row); -1 if excluded.

    Equals the target's position in an exact top-K list with ties broken by item row, computed by
    counting instead of sorting.
    """
    rows = np.arange(len(targets))
    s_t = scores[rows, targets][:, None]
    ahead = (scores > s_t).sum(axis=1)
    ties = ((scores == s_t) & (np.arange(scores.shape[1])[None, :] < targets[:, None])).sum(axis=1)
    ranks = ahead + ties
    ranks[~np.isfinite(s_t[:, 0])] = -1
    return ranks


def topk_excluding(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns per row (ties by column), assuming excluded entries are already -inf."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    s = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -s), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(scores, idx, axis=1)


def scorer_from_vectors(user_vectors: np.ndarray, item_vectors: np.ndarray) -> Scorer:
    """Inner-product scores of per-user-row vectors against item vectors."""
    items_t = np.ascontiguousarray(item_vectors.T, dtype=np.float32)
    return lambda rows: user_vectors[rows] @ items_t


@dataclass(frozen=True)
class Evaluation:
    """One model's evaluation on a split's held-out test positives.

    ``recall``/``ndcg`` are at ``k`` over ``users`` evaluable users; ``train_rows``/``test_rows`` the
    split's sizes; ``seconds`` the wall time; ``ranks`` (users,) int64 the 0-based rank of each user's
    held-out item (-1: excluded), from which :meth:`at` reads other cut-offs; ``params`` the model's."""

    model: str
    k: int
    recall: float
    ndcg: float
    users: int
    train_rows: int
    test_rows: int
    seconds: float
    ranks: np.ndarray = field(repr=False, compare=False)
    params: dict = field(default_factory=dict)

    def at(self, k: int) -> tuple[float, float]:
        """(Recall@k, NDCG@k) from the same ranks."""
        return recall_at_k(self.ranks, k), ndcg_at_k(self.ranks, k)

    def to_dict(self, extra_k: tuple[int, ...] = ()) -> dict:
        """JSON-ready: every field but ``ranks``, plus ``recall@k``/``ndcg@k`` for each k in ``extra_k``."""
        d = {key: v for key, v in asdict(self).items() if key != "ranks"}
        for k in extra_k:
            d[f"recall@{k}"], d[f"ndcg@{k}"] = self.at(k)
        return d


def evaluate_scorer(
    scorer: Scorer,
    split: Split,
    *,
    model: str,
    k: int = 10,
    batch_size: int = 2048,
    items: Vocabulary | None = None,
    params: dict | None = None,
) -> Evaluation:
    """Rank every evaluable test user's held-out item among the items not in their train history.

    `scorer` scores the items of `items` (default: the train item vocabulary)."""
    if k <= 0:
        raise RecvecError(f"k must be positive, got {k}", params=("k",))
    t0 = time.perf_counter()
    users, targets = split.evaluable(items)
    exclude = split.matrix if items is None else split.matrix_for(items)
    ranks = np.empty(len(users), dtype=np.int64)
    with thread_stage("score"):  # blocks of users: one BLAS matmul each
        for start in range(0, len(users), batch_size):
            u = users[start : start + batch_size]
            scores = np.array(scorer(u), dtype=np.float32, copy=True)
            mask_rows(scores, exclude[u])
            ranks[start : start + len(u)] = target_ranks(scores, targets[start : start + len(u)])
    return Evaluation(
        model=model,
        k=k,
        recall=recall_at_k(ranks, k),
        ndcg=ndcg_at_k(ranks, k),
        users=len(users),
        train_rows=len(split.train),
        test_rows=len(split.test),
        seconds=time.perf_counter() - t0,
        ranks=ranks,
        params=params or {},
    )


def evaluate_topk(topk_rows: np.ndarray, split: Split, *, model: str, k: int, seconds: float = 0.0,
                  items: Vocabulary | None = None, params: dict | None = None) -> Evaluation:
    """Evaluate precomputed top-k item rows, one row per evaluable user (in `split.evaluable()` order)."""
    _, targets = split.evaluable(items)
    ranks = hit_ranks(topk_rows, targets)
    return Evaluation(model, k, recall_at_k(ranks, k), ndcg_at_k(ranks, k), len(targets), len(split.train),
                      len(split.test), seconds, ranks, params or {})


def evaluate_served(recommender: Recommender, split, *, k: int = 10, depth: int | None = None, model: str = "served",
                    batch_size: int = 1024, params: dict | None = None, **query_params):
    """Evaluate through the serving path: each evaluable user's train history (external ids, time
    order, with timestamps) goes through ``recommender.recommend_batch`` -- the query-time user
    encoder and an exclusion-aware FAISS search -- and the held-out item is looked for in the top
    ``depth`` (default k; ask for more to read Recall@20 from the same ranks)."""
    t0 = time.perf_counter()
    users, _ = split.evaluable()
    targets = split.items.id_of(split.evaluable()[1])
    histories, times = split.histories(), split.history_times()
    ranks = np.full(len(users), -1, dtype=np.int64)
    with thread_stage("search_batch"):  # blocks of users: one batched index search each
        for start in range(0, len(users), batch_size):
            u = users[start : start + batch_size]
            recs = recommender.recommend_batch([split.items.id_of(histories[r]) for r in u], max(k, depth or k),
                                               timestamps=[times[r] for r in u], **query_params)
            for j, rec in enumerate(recs):
                hit = np.flatnonzero(rec.ids == targets[start + j])
                if hit.size:
                    ranks[start + j] = int(hit[0])
    return Evaluation(model=model, k=k, recall=recall_at_k(ranks, k), ndcg=ndcg_at_k(ranks, k), users=len(users),
                      train_rows=len(split.train), test_rows=len(split.test), seconds=time.perf_counter() - t0,
                      ranks=ranks, params=params or {})
