"""Cold items: how well content vectors place items nobody has interacted with yet.

:func:`cold_split` takes the SPEC split and removes a seeded share of the train items from train
entirely (every train row of theirs); the users whose held-out positive is one of those *cold*
items are the ones evaluated. :func:`cold_evaluation` ranks each such user's held-out item among
every item (the warm ones with their history excluded, then the cold ones; ties broken by that
order, as the SPEC evaluation breaks them by row) or among the cold items only, for each method:

- ``text -> ALS``: ALS fitted on the warm train; a ridge map from the items' text embeddings to
  their ALS item factors, fitted on the warm items (its lambda chosen on a tenth of them held out),
  gives the cold items factors; users are their fitted ALS user factors;
- ``text -> ALS, warm norms``: the same mapped vectors scaled to the warm items' mean factor norm
  (a ridge map shrinks them, and inner-product scores rank large norms first);
- ``text``: text embeddings alone, users the normalised mean of their history's embeddings;
- ``ALS``: ALS with no vector for a cold item (zeros: what collaborative filtering alone can do);
- ``popularity``: warm items by their train positives, cold items have none.

Pure math over arrays: the caller brings the text embeddings (``models.fit.text_vectors``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recvec.engine.data import Ratings
from recvec.engine.metrics import ndcg_at_k, recall_at_k
from recvec.engine.split import Split, leave_last_out
from recvec.engine.vocab import Vocabulary
from recvec.errors import RecvecError

#: Ridge lambdas tried for the text -> ALS map (scaled by the mean squared norm of the text vectors).
RIDGE_LAMBDAS = (0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class ColdSplit:
    """``warm``: the split with the cold items' train rows removed (its ``items`` are the warm ones);
    ``cold_ids`` (c,) the cold items' external ids, sorted; ``users`` (m,) rows in ``warm.users`` of
    the users whose held-out item is cold and ``targets`` (m,) that item's index in ``cold_ids``."""

    warm: Split
    cold_ids: np.ndarray
    users: np.ndarray
    targets: np.ndarray


def _concat(a: Ratings, b: Ratings) -> Ratings:
    return Ratings(np.concatenate([a.users, b.users]), np.concatenate([a.items, b.items]),
                   np.concatenate([a.ratings, b.ratings]), np.concatenate([a.timestamps, b.timestamps]),
                   a.user_labels, a.item_labels, a.all_positive)


def cold_split(split: Split, share: float = 0.1, seed: int = 0) -> ColdSplit:
    """Make ``share`` of ``split``'s train items cold (seeded): their train rows removed, the test rows
    kept (each user's last positive stays their held-out one). RecvecError for a share outside
    (0, 0.5] or when no test user's held-out item is cold."""
    if not 0.0 < float(share) <= 0.5:
        raise RecvecError(f"share of cold items must be in (0, 0.5], got {share}", params=("share",))
    rng = np.random.default_rng(seed)
    n = len(split.items)
    rows = rng.choice(n, size=max(1, int(round(share * n))), replace=False)
    cold_ids = np.sort(split.items.id_of(rows))
    keep = ~np.isin(split.train.item_values(), cold_ids)
    # re-sorted by (user, time), stably: each test row, appended after the train rows, stays its user's last
    warm = leave_last_out(_concat(split.train.take(keep), split.test), split.threshold)
    test_items = warm.test.item_values()
    users = warm.users.rows(warm.test.user_values(), missing="mask")
    ok = (users >= 0) & np.isin(test_items, cold_ids)
    if not ok.any():
        raise RecvecError("no test user's held-out item is among the cold items: use more data or a larger share",
                          params=("share",))
    return ColdSplit(warm, cold_ids, users[ok], np.searchsorted(cold_ids, test_items[ok]))


def ridge_map(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float]:
    """``(W, lambda)``: W (dx, dy) float32 minimising ||x W - y||^2 + lambda ||W||^2, lambda from
    :data:`RIDGE_LAMBDAS` (times the mean squared row norm of x) by the squared error on a seeded
    tenth of the rows, then W refitted on every row."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    scale = float(np.mean(np.sum(x * x, axis=1))) or 1.0
    held = np.random.default_rng(seed).random(len(x)) < 0.1
    if held.all() or not held.any():
        held = np.zeros(len(x), bool)

    def fit(rows, lam):
        a = x[rows]
        return np.linalg.solve(a.T @ a + lam * scale * np.eye(x.shape[1]), a.T @ y[rows])

    if held.any():
        errors = [float(np.sum((x[held] @ fit(~held, lam) - y[held]) ** 2)) for lam in RIDGE_LAMBDAS]
        lam = RIDGE_LAMBDAS[int(np.argmin(errors))]
    else:
        lam = 1.0
    return fit(np.ones(len(x), bool), lam).astype(np.float32), lam


def cold_ranks(users: np.ndarray, warm: np.ndarray, cold: np.ndarray, histories: list[np.ndarray],
               targets: np.ndarray, among: str = "all") -> np.ndarray:
    """(m,) int64 0-based rank of each user's held-out cold item ``targets`` (indices into ``cold``) by
    inner product with ``users`` (m, d): among every item (``warm`` (nw, d) with each user's
    ``histories`` rows excluded, then ``cold`` (nc, d); equal scores ordered warm first, then by row)
    or, with ``among="cold"``, among the cold items only."""
    if among not in ("all", "cold"):
        raise ValueError("among must be 'all' or 'cold'")
    sc = users @ cold.T  # (m, nc)
    st = sc[np.arange(len(targets)), targets][:, None]
    ranks = (sc > st).sum(1) + (((sc == st) & (np.arange(cold.shape[0])[None, :] < targets[:, None])).sum(1))
    if among == "all":
        sw = users @ warm.T
        for i, h in enumerate(histories):
            sw[i, h] = -np.inf
        ranks = ranks + (sw >= st).sum(1)
    return ranks.astype(np.int64)


def cold_evaluation(cs: ColdSplit, item_factors: np.ndarray, user_factors: np.ndarray, warm_text: np.ndarray,
                    cold_text: np.ndarray, k: int = 10, seed: int = 0) -> dict:
    """Recall@k / NDCG@k on the cold held-out items for each method of the module docstring, ranked
    among all items and among the cold ones. ``item_factors`` (warm items, f) and ``user_factors``
    (warm users, f): ALS fitted on ``cs.warm``; ``warm_text`` / ``cold_text``: L2-normalised text
    embeddings of ``cs.warm.items`` / ``cs.cold_ids`` in that order. Returns ``{"users", "cold_items",
    "ridge_lambda", "rows": [{"method", "among", "recall", "ndcg"}]}``."""
    hist = cs.warm.histories()
    h = [hist[u] for u in cs.users]
    w, lam = ridge_map(warm_text, item_factors, seed)
    text_users = np.stack([warm_text[r].mean(0) if len(r) else np.zeros(warm_text.shape[1], np.float32) for r in h])
    text_users /= np.maximum(np.linalg.norm(text_users, axis=1, keepdims=True), 1e-12)
    pop = np.asarray(cs.warm.matrix.sum(0)).ravel().astype(np.float32)[:, None]
    uf = user_factors[cs.users]
    mapped = cold_text @ w
    warm_norm = float(np.mean(np.linalg.norm(item_factors, axis=1)))
    rescaled = mapped / np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12) * warm_norm
    methods = {
        "text -> ALS (ridge map)": (uf, item_factors, mapped),
        "text -> ALS, warm norms": (uf, item_factors, rescaled.astype(np.float32)),
        "text only": (text_users, warm_text, cold_text),
        "ALS (no cold vectors)": (uf, item_factors, np.zeros((len(cold_text), item_factors.shape[1]), np.float32)),
        "popularity": (np.ones((len(h), 1), np.float32), pop, np.zeros((len(cold_text), 1), np.float32)),
    }
    rows = []
    for among in ("all", "cold"):
        for name, (u, wv, cv) in methods.items():
            r = cold_ranks(u, wv, cv, h, cs.targets, among)
            rows.append({"method": name, "among": among, "recall": recall_at_k(r, k), "ndcg": ndcg_at_k(r, k)})
    return {"users": int(len(cs.users)), "cold_items": int(len(cs.cold_ids)), "warm_items": int(len(cs.warm.items)),
            "ridge_lambda": lam, "k": k, "rows": rows}


def text_rows(catalog_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Rows in a catalogue (its ``ids`` in order) of the external ``ids``; UnknownIdError naming any
    the catalogue lacks."""
    return Vocabulary(catalog_ids).rows(ids)
