"""The item-item peers (EASE, the transition model) against hand computations, served through an
index like every model, and the held-out gap report and tie shuffle (recvec/engine/gaps.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recvec.engine.data import Ratings
from recvec.engine.gaps import BUCKETS, by_gap, held_out_gaps, shuffle_ties
from recvec.engine.models.fit import ModelConfig, evaluate_model, fit_model
from recvec.engine.models.itemitem import TransitionConfig, ease_matrix, transition_matrix
from recvec.engine.split import leave_last_out
from recvec.errors import RecvecError


def test_ease_is_the_closed_form():
    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((40, 12)) < 0.3).astype(np.float32))
    b = ease_matrix(x, 5.0)
    g = x.T.toarray() @ x.toarray() + 5.0 * np.eye(12)
    p = np.linalg.inv(g)
    want = np.eye(12) - p / np.diag(p)[None, :]
    np.fill_diagonal(want, 0.0)
    np.testing.assert_allclose(b, want, atol=1e-5)
    assert np.all(np.diag(b) == 0)
    with pytest.raises(RecvecError, match="EASE lambda must be a finite number > 0"):
        ease_matrix(x, 0.0)


def test_transition_counts_by_hand():
    histories = [np.array([0, 1, 2, 3]), np.array([2, 0])]
    t = transition_matrix(histories, 4, TransitionConfig(lags=2, lag_decay=0.5))
    want = np.zeros((4, 4), np.float32)
    for h in histories:
        for lag, w in ((1, 1.0), (2, 0.5)):
            for a, b in zip(h[:-lag], h[lag:]):
                want[a, b] += w
    np.fill_diagonal(want, 0.0)
    np.testing.assert_array_equal(t, want)


@pytest.mark.parametrize("kind", ["ease", "transition"])
def test_peers_serve_through_an_index_with_their_exact_scores(synthetic_dir, kind):
    from recvec.engine.data import load_dataset
    from recvec.engine.evaluate import evaluate_served
    from recvec.indexes.build import recommender_for
    from recvec.indexes.spec import IndexSpec

    ds = load_dataset(str(synthetic_dir))
    split = leave_last_out(ds.ratings)
    model = fit_model(split, ds.catalog, ModelConfig(kind))
    assert model.item_vectors.shape == (len(split.items), len(split.items))
    ev = evaluate_model(model, split)
    served = evaluate_served(recommender_for(model, IndexSpec.parse("flat")), split, k=10)
    assert ev.users == served.users and abs(ev.recall - served.recall) <= 2 / ev.users  # ties may order apart
    rec = recommender_for(model, IndexSpec.parse("flat"))
    hist = split.items.id_of(split.histories()[0])
    got = rec.recommend(hist, 5)
    q = model.user_encoder.encode([split.histories()[0]])
    scores = (q @ model.item_vectors.T)[0]
    scores[split.histories()[0]] = -np.inf
    np.testing.assert_allclose(np.sort(got.scores)[::-1], np.sort(scores)[::-1][:5], rtol=1e-5, atol=1e-5)


def _ratings(rows) -> Ratings:
    u, i, r, t = (np.array(c) for c in zip(*rows))
    return Ratings(u.astype(np.int64), i.astype(np.int64), r.astype(np.float32), t.astype(np.int64))


def test_held_out_gaps_and_buckets_by_hand():
    rows = [(1, 11, 5, 100), (1, 12, 5, 100), (1, 10, 5, 100),        # held out 10 in the same second
            (2, 10, 5, 0), (2, 12, 5, 600), (2, 11, 5, 1200),          # 11, 10 minutes later
            (3, 11, 5, 0), (3, 10, 5, 1000), (3, 12, 5, 1000 + 2 * 86400)]  # 12, two days later
    split = leave_last_out(_ratings(rows))
    np.testing.assert_array_equal(held_out_gaps(split), [0, 600, 2 * 86400])
    rows_out = by_gap(np.array([0, -1, 3]), split, k=10)
    assert [(r.bucket, r.users, r.recall) for r in rows_out] == [
        (BUCKETS[0][0], 1, 1.0), (BUCKETS[1][0], 1, 0.0), (BUCKETS[3][0], 1, 1.0)]
    with pytest.raises(ValueError, match="ranks of another split"):
        by_gap(np.array([0]), split)


def test_shuffle_ties_moves_rows_within_their_ties_only():
    rows = [(1, 10, 5, 100), (1, 11, 5, 100), (1, 12, 5, 100), (1, 13, 5, 50), (2, 10, 5, 7), (2, 11, 5, 8)]
    r = _ratings(rows)
    seen = set()
    for seed in range(20):
        s = shuffle_ties(r, seed)
        assert sorted(zip(s.users, s.items, s.timestamps)) == sorted(zip(r.users, r.items, r.timestamps))
        assert list(s.items[3:]) == [13, 10, 11]  # no tie: left where it was
        assert all(t == 100 for t in s.timestamps[:3])
        seen.add(tuple(s.items[:3]))
    assert len(seen) > 1  # ties do get reordered
    np.testing.assert_array_equal(shuffle_ties(r, 3).items, shuffle_ties(r, 3).items)  # seeded


def test_eval_reports_by_gap_and_runs_on_shuffled_ties(synthetic_dir):
    """eval --json carries Recall/NDCG per gap bucket (users add up, the headline is their weighted
    mean); --by-gap prints them; --shuffle-ties evaluates a seeded copy and says so."""
    import json

    from click.testing import CliRunner

    from recvec.cli import main

    def run(*args):
        res = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--model", "popular", *args])
        assert res.exit_code == 0, res.output
        return res.output

    out = json.loads(run("--json"))
    gaps = out["by_gap"]
    assert sum(g["users"] for g in gaps) == out["users"] and abs(sum(g["share"] for g in gaps) - 1) < 1e-9
    assert abs(sum(g["recall"] * g["users"] for g in gaps) / out["users"] - out["recall"]) < 1e-9
    assert {g["bucket"] for g in gaps} <= {b for b, _ in BUCKETS} and "ties" not in out
    shuffled = json.loads(run("--json", "--shuffle-ties", "--seed", "3"))
    assert shuffled["ties"] == "shuffled within (user, timestamp), seed 3" and shuffled["users"] == out["users"]
    assert "by the time from the last train positive" in run("--by-gap")


def test_a_preset_chosen_on_other_data_says_so(synthetic_dir, tmp_path):
    """Packaged presets record the data they were chosen on (ML-1M's fingerprint); on other data eval
    and build say so on stderr, and a tune result run on its own data says nothing."""
    import json

    from click.testing import CliRunner

    from recvec.cli import main
    from recvec.engine.data import load_dataset
    from recvec.indexes.presets import load_preset

    best = load_preset("best")
    assert best.chosen_on["data"] == "ML-1M" and len(best.chosen_on["fingerprint"]) == 64
    res = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--preset", "tuned-als", "--json"])
    assert res.exit_code == 0 and "preset 'tuned-als' was chosen on ML-1M's validation split" in res.stderr
    own = tmp_path / "tuned.json"
    fp = load_dataset(str(synthetic_dir)).fingerprint
    own.write_text(json.dumps({"chosen": {"model": "als", "config": load_preset("tuned-als").model.to_dict()},
                               "data": str(synthetic_dir), "data_fingerprint": fp}))
    p = load_preset(str(own))
    assert p.chosen_on["fingerprint"] == fp and p.note_for(fp) is None and p.note_for("0" * 64)


def test_time_budget_and_the_auto_preset(synthetic_dir, tmp_path):
    """A spent time budget skips the long stages and says so; --preset auto chooses on the data's own
    validation split (never its test split) among ALS, EASE and transition, and eval/build use it."""
    from click.testing import CliRunner

    from recvec.cli import main
    from recvec.engine.data import load_dataset
    from recvec.engine.tune import TuneSettings, auto_select, select, validation_split

    ds = load_dataset(str(synthetic_dir))
    split = leave_last_out(ds.ratings)
    events = []
    chosen, trials = select(validation_split(split), ds.catalog, TuneSettings(minutes=1e-6, hybrid=True, sequence=True),
                            report=lambda e, info: events.append((e, info.get("stage"))))
    assert {("skipped", "als"), ("skipped", "hybrid"), ("skipped", "sequence")} <= set(events)
    assert {t.stage for t in trials} >= {"als+query-weighting", "ease", "transition"}
    assert chosen.key() == max(t.key() for t in trials)
    auto = auto_select(split, ds.catalog, 1e-6)
    assert auto.config.to_dict() == chosen.config.to_dict()
    res = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--preset", "auto", "--budget-minutes",
                                    "0.05", "--json"])
    assert res.exit_code == 0, res.output
    assert "--preset auto chose" in res.stderr and "was chosen on" not in res.stderr
    res = CliRunner().invoke(main, ["build", "--data", str(synthetic_dir), "--preset", "auto", "--budget-minutes",
                                    "0.05", "--out", str(tmp_path / "auto"), "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "auto" / "manifest.json").is_file()


def test_paired_bootstrap_intervals():
    from recvec.engine.metrics import paired_bootstrap

    rng = np.random.default_rng(4)
    a = rng.integers(-1, 30, 500)
    same = paired_bootstrap(a, a, 10, samples=300)
    assert same["recall_diff"] == 0 and same["recall_ci"] == [0.0, 0.0] and same["ndcg_ci"] == [0.0, 0.0]
    better = np.where(rng.random(500) < 0.5, 0, a)  # half the users moved to rank 0
    d = paired_bootstrap(better, a, 10, samples=300, seed=1)
    assert d["recall_ci"][0] > 0 and d["ndcg_ci"][0] > 0
    assert d["recall_ci"][0] <= d["recall_diff"] <= d["recall_ci"][1]
    assert d == paired_bootstrap(better, a, 10, samples=300, seed=1)  # seeded
    flipped = paired_bootstrap(a, better, 10, samples=300, seed=1)
    assert flipped["recall_diff"] == -d["recall_diff"] and flipped["recall_ci"][1] < 0
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(a, a[:-1], 10)


def test_eval_versus_reports_paired_differences(synthetic_dir):
    import json

    from click.testing import CliRunner

    from recvec.cli import main

    res = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--model", "transition", "--versus", "popular",
                                    "--versus", "transition", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["model"].split("(")[0] for r in rows] == ["transition", "popular", "transition"]
    vs_pop, vs_self = rows[1]["first_minus_this"], rows[2]["first_minus_this"]
    assert vs_pop["recall_diff"] == pytest.approx(rows[0]["recall"] - rows[1]["recall"])
    assert vs_pop["recall_ci"][0] > 0  # the transition model beats popularity on this data
    assert vs_self["recall_ci"] == [0.0, 0.0] and vs_self["users"] == rows[0]["users"]
    res = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--model", "popular", "--versus", "nope"])
    assert res.exit_code == 2 and "nope" in res.output
