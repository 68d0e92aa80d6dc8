"""Cold items (recvec/engine/cold.py): the split that removes items from train, the ranks by hand,
the ridge map, and `recvec bench cold` end to end on the synthetic dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from recvec.cli import main
from recvec.engine.cold import cold_ranks, cold_split, ridge_map
from recvec.engine.data import load_dataset
from recvec.engine.split import leave_last_out
from recvec.errors import RecvecError


def test_cold_split_removes_the_items_from_train_only(synthetic_dir):
    split = leave_last_out(load_dataset(str(synthetic_dir)).ratings)
    cs = cold_split(split, 0.2, seed=4)
    assert len(cs.cold_ids) == round(0.2 * len(split.items))
    assert not np.isin(cs.warm.train.item_values(), cs.cold_ids).any()  # no train row of a cold item
    assert not np.isin(cs.warm.items.ids, cs.cold_ids).any()
    assert len(cs.warm.test) == len(split.test)  # every held-out positive is still held out
    held = dict(zip(cs.warm.test.user_values().tolist(), cs.warm.test.item_values().tolist()))
    for u, t in zip(cs.users, cs.targets):
        assert held[cs.warm.users.id_of(np.array([u]))[0].item()] == cs.cold_ids[t]
    assert len(cs.users) > 0
    np.testing.assert_array_equal(cold_split(split, 0.2, seed=4).cold_ids, cs.cold_ids)  # seeded
    with pytest.raises(RecvecError, match="share of cold items"):
        cold_split(split, 0.9)


def test_cold_ranks_by_hand():
    users = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    warm = np.array([[2.0, 0.0], [0.5, 0.5], [0.0, 0.3]], np.float32)
    cold = np.array([[0.5, 0.0], [0.0, 0.5], [0.5, 0.5]], np.float32)
    hist = [np.array([0]), np.array([], dtype=np.int64)]
    targets = np.array([2, 1])
    # user 0: cold scores .5 .0 .5 -> target 2 ties with cold 0 (before it): rank 1 among cold;
    # warm (0 excluded): .5 >= .5 counts, 0 does not -> rank 2 among all
    # user 1: cold scores 0 .5 .5 -> target 1: cold 2 ties after it: rank 0; warm .5 counts, .3 does not
    np.testing.assert_array_equal(cold_ranks(users, warm, cold, hist, targets, "cold"), [1, 0])
    np.testing.assert_array_equal(cold_ranks(users, warm, cold, hist, targets, "all"), [2, 1])


def test_ridge_map_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    w_true = rng.normal(size=(8, 3)).astype(np.float32)
    w, lam = ridge_map(x, x @ w_true)
    assert lam == 0.01 and np.abs(w - w_true).max() < 0.05


def test_bench_cold_on_synthetic(synthetic_dir):
    res = CliRunner().invoke(main, ["bench", "cold", "--data", str(synthetic_dir), "--share", "0.2", "--json",
                                    "--quiet"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    rows = {(x["method"], x["among"]): x for x in r["rows"]}
    assert len(rows) == 10 and r["users"] > 0 and r["cold_items"] > 0
    for (method, among), x in rows.items():
        assert 0 <= x["ndcg"] <= x["recall"] <= 1
        if among == "all":  # fewer competitors can only lift a rank
            assert rows[(method, "cold")]["recall"] >= x["recall"]
    assert rows[("popularity", "all")]["recall"] == 0.0  # cold items have no train positives
    text = CliRunner().invoke(main, ["bench", "cold", "--data", str(synthetic_dir), "--share", "0.2", "--quiet"])
    assert "text -> ALS (ridge map)" in text.output and "cold items of" in text.output
