"""Ranking metrics as pure functions (SPEC: Evaluation)."""

from __future__ import annotations

import numpy as np


def hit_ranks(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target in its top-K list, or -1 for a miss."""
    topk = np.asarray(topk)
    targets = np.asarray(targets).reshape(-1, 1)
    if topk.ndim != 2 or len(topk) != len(targets):
        raise ValueError("topk must be (n, k) and targets (n,)")
    hit = topk == targets
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def _gains(ranks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (hit, nDCG gain) at k, float64 (n,) each."""
    ranks = np.asarray(ranks)
    hit = (ranks >= 0) & (ranks < k)
    gain = np.zeros(len(ranks))
    gain[hit] = 1.0 / np.log2(ranks[hit] + 2.0)
    return hit.astype(np.float64), gain


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Fraction of users whose held-out item ranks within the top k."""
    ranks = np.asarray(ranks)
    if len(ranks) == 0:
        return 0.0
    return float(np.mean((ranks >= 0) & (ranks < k)))


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """A hit at 0-based rank r scores 1/log2(r+2), a miss 0; averaged over users."""
    ranks = np.asarray(ranks)
    if len(ranks) == 0:
        return 0.0
    return float(_gains(ranks, k)[1].mean())


def overlap_at_k(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Mean fraction of b's top-k (the reference) that a's top-k also holds."""
    a = np.asarray(a)[:, :k]
    b = np.asarray(b)[:, :k]
    if len(a) == 0:
        return 0.0
    hits = sum(len(np.intersect1d(x[x >= 0], y[y >= 0])) for x, y in zip(a, b))
    return hits / float(len(b) * k)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, k: int, *, samples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Paired bootstrap of model a minus model b on the same users: ``a`` and ``b`` are (users,) int
    arrays of 0-based held-out ranks (-1: a miss), user i the same user in both. Users are resampled
    with replacement ``samples`` times (seeded; the same draw for both models) and the percentile
    interval at ``level`` of the mean difference is reported.

    Returns ``{"recall_diff", "recall_ci": [lo, hi], "ndcg_diff", "ndcg_ci": [lo, hi], "users",
    "samples", "level", "seed"}`` (differences as fractions, Recall@k / NDCG@k). ValueError when the
    arrays differ in length or are empty."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired_bootstrap needs two equal-length, non-empty rank arrays (got {a.shape} and {b.shape})")
    if samples < 1 or not 0 < level < 1:
        raise ValueError("paired_bootstrap needs samples >= 1 and 0 < level < 1")
    (ha, ga), (hb, gb) = _gains(a, k), _gains(b, k)
    dh, dg = ha - hb, ga - gb
    rng = np.random.default_rng(seed)
    n = len(a)
    means = np.empty((samples, 2))
    block = max(1, 4_000_000 // n)  # bounded memory: block x n indices at a time
    for start in range(0, samples, block):
        idx = rng.integers(0, n, size=(min(block, samples - start), n))
        means[start:start + len(idx), 0] = dh[idx].mean(axis=1)
        means[start:start + len(idx), 1] = dg[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail], axis=0)
    return {"recall_diff": float(dh.mean()), "recall_ci": [float(lo[0]), float(hi[0])],
            "ndcg_diff": float(dg.mean()), "ndcg_ci": [float(lo[1]), float(hi[1])],
            "users": n, "samples": samples, "level": level, "seed": seed}
