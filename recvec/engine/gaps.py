"""What a leave-last-out figure measures: the time between each evaluable user's last train positive
and the held-out one, and Recall/NDCG by that gap, and a copy of the ratings whose order within
equal (user, timestamp) is shuffled (seeded) so no gain can rest on within-second file order.

On MovieLens the held-out positive is often the next rating of the same sitting (the same second as
the last train item): a model that continues a session well and one that predicts later interest
well are different things, and these buckets show which a figure rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recvec.engine.data import Ratings
from recvec.engine.metrics import ndcg_at_k, recall_at_k
from recvec.engine.split import Split

#: (name, upper bound in seconds, exclusive; None: no bound), in order.
BUCKETS = (("same second", 1), ("< 1 hour", 3600), ("< 1 day", 86400), ("> 1 day", None))


def held_out_gaps(split: Split) -> np.ndarray:
    """(evaluable users,) int64 seconds from each evaluable user's last train positive to the held-out
    one, in ``split.evaluable()`` order (the order of an Evaluation's ranks)."""
    ok = split.evaluable_mask()
    users, _ = split.evaluable()
    last_train = np.array([t[-1] if len(t) else 0 for t in split.history_times()], dtype=np.int64)
    return split.test.timestamps[ok].astype(np.int64) - last_train[users]


def bucket_of(gaps: np.ndarray) -> np.ndarray:
    """(n,) int index into BUCKETS for each gap in seconds."""
    out = np.full(len(gaps), len(BUCKETS) - 1, dtype=np.int64)
    for b in range(len(BUCKETS) - 2, -1, -1):
        out[gaps < BUCKETS[b][1]] = b
    return out


@dataclass(frozen=True)
class GapRow:
    """Recall@k / NDCG@k over the users of one gap bucket (``share``: of the evaluable users)."""

    bucket: str
    users: int
    share: float
    recall: float
    ndcg: float

    def to_dict(self) -> dict:
        return {"bucket": self.bucket, "users": self.users, "share": self.share, "recall": self.recall,
                "ndcg": self.ndcg}


def by_gap(ranks: np.ndarray, split: Split, k: int = 10) -> list[GapRow]:
    """Recall@k and NDCG@k per gap bucket from an Evaluation's ``ranks`` ((evaluable users,) int64, in
    ``split.evaluable()`` order); empty buckets are left out."""
    b = bucket_of(held_out_gaps(split))
    if len(b) != len(ranks):
        raise ValueError(f"{len(ranks)} ranks for {len(b)} evaluable users: ranks of another split?")
    rows = []
    for j, (name, _) in enumerate(BUCKETS):
        m = b == j
        if m.any():
            rows.append(GapRow(name, int(m.sum()), float(m.mean()), recall_at_k(ranks[m], k), ndcg_at_k(ranks[m], k)))
    return rows


def shuffle_ties(ratings: Ratings, seed: int = 0) -> Ratings:
    """The ratings with the order of rows sharing a (user, timestamp) shuffled (seeded); everything
    else keeps its order. The split's stable sort then breaks those ties by the shuffled order."""
    rng = np.random.default_rng(seed)
    key = np.lexsort((ratings.timestamps, ratings.users))  # the stable (user, timestamp) order
    order = np.lexsort((rng.random(len(ratings)), ratings.timestamps, ratings.users))  # ties shuffled
    take = np.empty(len(ratings), dtype=np.int64)
    take[key] = order  # the k-th row of the stable order becomes the k-th of the shuffled one
    return ratings.take(take)
