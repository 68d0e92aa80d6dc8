"""Vocabulary, split, metrics, batched evaluation and ALS fold-in on tiny data with known answers."""

import numpy as np
import pytest

from recvec.engine.data import Ratings
from recvec.engine.evaluate import (
    evaluate_scorer,
    mask_rows,
    scorer_from_vectors,
    target_ranks,
    topk_excluding,
)
from recvec.engine.metrics import hit_ranks, ndcg_at_k, overlap_at_k, recall_at_k
from recvec.engine.split import leave_last_out, positives, validation_split
from recvec.engine.vocab import Vocabulary
from recvec.errors import UnknownIdError


def ratings(rows):
    a = np.array(rows, dtype=np.int64)
    return Ratings(a[:, 0], a[:, 1], a[:, 2].astype(np.float32), a[:, 3])


class TestVocabulary:
    def test_first_appearance_order_and_lookup(self):
        v = Vocabulary.from_first_appearance(np.array([30, 10, 30, 20, 10]))
        assert v.ids.tolist() == [30, 10, 20]
        assert v.rows([20, 30]).tolist() == [2, 0]
        assert v.id_of([1, 2]).tolist() == [10, 20]
        assert 10 in v and 99 not in v

    def test_unknown_ids_are_named(self):
        v = Vocabulary([5, 6], kind="movie")
        with pytest.raises(UnknownIdError, match="unknown movie ids: 7, 8"):
            v.rows([5, 7, 8])
        assert v.rows([5, 7], missing="skip").tolist() == [0]
        assert v.rows([5, 7], missing="mask").tolist() == [0, -1]


class TestSplit:
    # user 1: positives at t=1,2,3 (last=item 12); user 2: ties at t=5 keep file order (last = 22);
    # user 3: a single positive (test only); negatives (< 4) dropped.
    R = ratings([
        [1, 10, 5, 1], [1, 11, 4, 2], [1, 99, 2, 3], [1, 12, 4, 3],
        [2, 21, 5, 5], [2, 20, 4, 4], [2, 22, 5, 5],
        [3, 30, 5, 9],
    ])

    def test_positives_sorted_stably(self):
        p = positives(self.R)
        assert p.items.tolist() == [10, 11, 12, 20, 21, 22, 30]

    def test_leave_last_out(self):
        s = leave_last_out(self.R)
        assert s.test.items.tolist() == [12, 22, 30]
        assert s.train.items.tolist() == [10, 11, 20, 21]
        assert s.users.ids.tolist() == [1, 2] and s.items.ids.tolist() == [10, 11, 20, 21]
        assert s.matrix.shape == (2, 4) and s.matrix.dtype == np.float32
        assert s.matrix.toarray().tolist() == [[1, 1, 0, 0], [0, 0, 1, 1]]
        # held-out items 12, 22, 30 are unknown to train: nobody is evaluable
        assert len(s.evaluable()[0]) == 0

    def test_threshold_is_a_parameter(self):
        s = leave_last_out(self.R, threshold=2)
        assert 99 in s.train.items.tolist() or 99 in s.test.items.tolist()

    def test_no_positives_is_a_clear_error(self):
        from recvec.errors import DataError

        with pytest.raises(DataError, match="no ratings >= 6"):
            leave_last_out(self.R, threshold=6)

    def test_validation_holds_out_second_to_last(self):
        v = validation_split(leave_last_out(self.R))
        assert v.test.items.tolist() == [11, 21]
        assert v.train.items.tolist() == [10, 20]


class TestMetrics:
    def test_hand_computed(self):
        topk = np.array([[5, 1, 2], [3, 4, 6], [7, 8, 9]])
        ranks = hit_ranks(topk, np.array([1, 3, 0]))
        assert ranks.tolist() == [1, 0, -1]
        assert recall_at_k(ranks, 3) == pytest.approx(2 / 3)
        assert recall_at_k(ranks, 1) == pytest.approx(1 / 3)
        assert ndcg_at_k(ranks, 3) == pytest.approx((1 / np.log2(3) + 1.0) / 3)
        assert ndcg_at_k(ranks, 1) == pytest.approx(1 / 3)

    def test_overlap(self):
        assert overlap_at_k(np.array([[1, 2], [3, 4]]), np.array([[2, 9], [4, 3]]), 2) == pytest.approx(3 / 4)

    def test_ranks_by_counting_equal_sorting(self):
        rng = np.random.default_rng(0)
        scores = rng.integers(0, 5, size=(50, 30)).astype(np.float32)  # many ties
        excl = rng.random((50, 30)) < 0.2
        targets = rng.integers(0, 30, size=50)
        excl[np.arange(50), targets] = False
        import scipy.sparse as sp

        masked = mask_rows(scores.copy(), sp.csr_matrix(excl))
        ranks = target_ranks(masked, targets)
        idx, _ = topk_excluding(masked, 30)
        assert ranks.tolist() == hit_ranks(idx, targets).tolist()


def toy_split(seed=0, n_users=120, n_items=60):
    """Two taste groups: users like items of their own half; plenty of positives each."""
    rng = np.random.default_rng(seed)
    rows, t = [], 0
    for u in range(n_users):
        half = u % 2
        items = rng.choice(np.arange(half * n_items // 2, (half + 1) * n_items // 2), size=12, replace=False)
        for i in items:
            t += 1
            rows.append([u + 1, i + 100, 5, t])
    return leave_last_out(ratings(rows))


def test_batched_als_eval_matches_lab_per_user_loop():
    from recvec.engine.models.als import ALSConfig, fit_als, to_implicit

    s = toy_split()
    model = fit_als(s.matrix, ALSConfig(factors=8, iterations=5, seed=1))
    ev = evaluate_scorer(scorer_from_vectors(model.user_factors, model.item_factors), s, model="als", k=5)
    imp = to_implicit(model)
    users, targets = s.evaluable()
    lab_hits = []
    for u, g in zip(users, targets):  # the lab's loop: one recommend call per user
        ids, _ = imp.recommend(u, s.matrix[u], N=5)
        lab_hits.append(g in ids)
    assert ev.users == len(users) > 0
    assert ev.recall == pytest.approx(np.mean(lab_hits))
    assert ev.recall > 0.2  # the block structure is learnable: far above chance (5/48)


def test_fold_in_matches_implicit_recalculate_user():
    from recvec.engine.models.als import ALSConfig, fit_als, to_implicit
    from recvec.engine.users import ALSFoldIn

    s = toy_split()
    cfg = ALSConfig(factors=8, iterations=5, regularization=0.1, alpha=2.0, seed=1)
    model = fit_als(s.matrix, cfg)
    imp = to_implicit(model)
    enc = ALSFoldIn(model.item_factors, cfg.regularization, cfg.alpha)
    users = np.arange(10)
    ours = enc.encode([s.matrix[u].indices for u in users])
    theirs = imp.recalculate_user(users, s.matrix[users])
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)
    assert np.all(enc.encode([np.array([], dtype=np.int64)]) == 0)


def test_mean_encoder_weighted_and_empty():
    from recvec.engine.users import MeanEncoder

    vecs = np.eye(3, dtype=np.float32)
    enc = MeanEncoder(vecs)
    out = enc.encode([np.array([0, 1]), np.array([], dtype=np.int64)])
    np.testing.assert_allclose(out, [[0.5, 0.5, 0], [0, 0, 0]])
    w = MeanEncoder(vecs, weighting=lambda rows, ts: np.array([1.0, 3.0]))
    np.testing.assert_allclose(w.encode([np.array([0, 1])]), [[0.25, 0.75, 0]])


def test_vocabulary_dense_table_and_search_paths_agree():
    """Small non-negative ids use a dense id -> row table; huge or negative ids a binary search."""
    query = [3, 100, 7, -1, 10**12, 5, 101]
    want = [1, 2, -1, -1, -1, 0, -1]
    small = Vocabulary([5, 3, 100])
    big = Vocabulary([5 + 10**13, 3 + 10**13, 100 + 10**13])
    assert small._table is not None and big._table is None
    assert small.rows(query, missing="mask").tolist() == want
    shifted = [q + 10**13 if q >= 0 and q < 10**12 else q for q in query]
    assert big.rows(shifted, missing="mask").tolist() == want
    assert small.rows([], missing="mask").tolist() == []
    with pytest.raises(UnknownIdError, match="7"):
        small.rows([3, 7])


def test_top_k_row_equals_a_full_sort_ties_by_lower_row():
    """The partition-then-sort top-k (Recommender.similar, the exact numpy search) returns what a
    full stable sort does, ties at the boundary included, and every row when k >= n."""
    from recvec.engine.recommender import top_k_row

    rng = np.random.default_rng(0)
    for n, k in [(1, 1), (10, 3), (1000, 10), (50, 50), (5, 9)]:
        s = rng.integers(0, 4, n).astype(np.float32)  # many ties
        s[0] = -np.inf
        assert top_k_row(s, k).tolist() == np.lexsort((np.arange(n), -s))[:k].tolist()
