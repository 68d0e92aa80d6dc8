"""Popularity baseline: items ranked by their number of train positives."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def popularity_scores(matrix: sp.csr_matrix) -> np.ndarray:
    """Train positives per item (column sums), float32 of length num_items."""
    return np.asarray(matrix.getnnz(axis=0), dtype=np.float32)
