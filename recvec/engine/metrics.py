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
    hit = (ranks >= 0) & (ranks < k)
    gains = np.zeros(len(ranks))
    gains[hit] = 1.0 / np.log2(ranks[hit] + 2.0)
    return float(gains.mean())


def overlap_at_k(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Mean fraction of b's top-k (the reference) that a's top-k also holds."""
    a = np.asarray(a)[:, :k]
    b = np.asarray(b)[:, :k]
    if len(a) == 0:
        return 0.0
    hits = sum(len(np.intersect1d(x[x >= 0], y[y >= 0])) for x, y in zip(a, b))
    return hits / float(len(b) * k)
