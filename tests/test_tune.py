"""`recvec tune` selects on the validation split only: the test split is never read before selection ends."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recvec.engine.data import Ratings, load_dataset
from recvec.engine.models import fit as fitmod
from recvec.engine.split import Split, leave_last_out, validation_split
from recvec.engine.tune import SearchSpace, TuneSettings, family, select, tune
from recvec.errors import RecvecError

SPACE = SearchSpace(factors=(4, 8, 16), regularization=(0.01, 0.1, 1.0), alpha=(1.0, 2.0), iterations=(3, 5),
                    train_half_life=(0.0, 10.0), train_half_life_days=(0.0, 30.0), train_floor=(0.1, 0.2),
                    query_half_life=(0.0, 2.0), query_scale=(1.0, 2.0), hybrid_weight=(0.5, 0.9),
                    content_half_life=(0.0, 3.0))
SETTINGS = TuneSettings(budget=4, seed=0, space=SPACE, hybrid=True)


def fake_text_vectors(catalog, config, cache_dir=None, progress=False) -> np.ndarray:
    out = np.stack([np.random.default_rng(int(m)).standard_normal(6) for m in catalog.ids]).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def fake_text(monkeypatch):
    monkeypatch.setattr(fitmod, "text_vectors", fake_text_vectors)
    import recvec.engine.tune as tunemod

    monkeypatch.setattr(tunemod, "text_vectors", fake_text_vectors)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from recvec.engine.synthetic import write_synthetic_movielens

    d = write_synthetic_movielens(tmp_path_factory.mktemp("tune"), n_users=120, n_items=100, seed=7)
    ds = load_dataset(str(d))
    return ds, leave_last_out(ds.ratings)


class Guard:
    armed = True
    reads: list[str] = []


class GuardedRatings:
    """Stands in for split.test: any read while armed fails the test (and is recorded)."""

    def __init__(self, real: Ratings, guard: Guard):
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_guard", guard)

    def _check(self, what: str):
        if self._guard.armed:
            self._guard.reads.append(what)
            raise AssertionError(f"the test split was read during selection ({what})")

    def __getattr__(self, name):
        self._check(name)
        return getattr(self._real, name)

    def __len__(self):
        self._check("len")
        return len(self._real)


def guarded(split: Split, guard: Guard) -> Split:
    return Split(train=split.train, test=GuardedRatings(split.test, guard), users=split.users, items=split.items,
                 threshold=split.threshold)


def test_selection_never_reads_the_test_split(data):
    ds, split = data
    guard = Guard()
    guard.reads = []
    events = []

    def report(event, info):
        events.append(event)
        if event == "selected":
            guard.armed = False  # from here on, tune may read test (once, for the final figures)

    result = tune(guarded(split, guard), ds.catalog, SETTINGS, report=report)
    assert guard.reads == []
    assert events.index("selected") < events.index("test")
    assert "trial" in events and events.count("test") == 1
    # the chosen trial is the best of those confirmed on the second fold (mean of the two folds); the
    # test figures are the refit's
    confirmed = [t for t in result.trials if t.second is not None]
    assert result.chosen in confirmed and len(confirmed) >= SETTINGS.confirm
    assert result.chosen == max(confirmed, key=lambda t: (t.recall + t.second[0], t.ndcg + t.second[1]))
    assert max(result.trials, key=lambda t: (t.recall, t.ndcg)).second is not None  # the first fold's best is among them
    assert result.test is not None and result.test.users == len(split.evaluable()[0])
    stages = {t.stage for t in result.trials}
    assert {"als+query-weighting", "hybrid"} <= stages
    assert len({json.dumps(t.config.to_dict(), sort_keys=True) for t in result.trials}) == len(result.trials)


def test_given_configurations_and_the_second_fold(data):
    """Configurations given beside the search are candidates and confirmed on the second fold with
    the best of each family; with confirm=0 the first fold's best is chosen and nothing is confirmed.
    The second fold is the first fold's leave-last-out (its third-to-last positive), never test."""
    ds, split = data
    given = fitmod.ModelConfig(kind="transition")
    settings = TuneSettings(budget=2, seed=0, space=SPACE, hybrid=False, also=(given,), confirm=2)
    val = validation_split(split)
    chosen, trials = select(val, ds.catalog, settings)
    mine = [t for t in trials if t.stage == "given"]
    assert [t.config for t in mine] == [given] and mine[0].second is not None
    families = {family(t.config) for t in trials}
    confirmed = [t for t in trials if t.second is not None]
    assert {family(t.config) for t in confirmed} == families
    assert chosen == max(confirmed, key=lambda t: t.key())
    second = validation_split(val)
    ev = fitmod.evaluate_model(fitmod.fit_model(second, ds.catalog, chosen.config), second)
    assert chosen.second == pytest.approx((ev.recall, ev.ndcg))
    first_only, trials0 = select(val, ds.catalog, TuneSettings(budget=2, seed=0, space=SPACE, hybrid=False,
                                                              also=(given,), confirm=0))
    assert all(t.second is None for t in trials0)
    assert first_only == max(trials0, key=lambda t: (t.recall, t.ndcg))
    with pytest.raises(RecvecError, match="confirm"):
        TuneSettings(confirm=-1)


def test_a_still_armed_guard_does_fire(data):
    """The guard is real: evaluating on the guarded split's test does raise."""
    from recvec.engine.models.fit import ModelConfig, evaluate_model, fit_model

    ds, split = data
    guard = Guard()
    guard.reads = []
    g = guarded(split, guard)
    model = fit_model(g, ds.catalog, ModelConfig("popular"))
    with pytest.raises(AssertionError, match="test split was read"):
        evaluate_model(model, g)
    assert guard.reads


def test_selection_does_not_depend_on_test(data):
    """Swapping the test items for others changes nothing that was selected."""
    ds, split = data
    rng = np.random.default_rng(0)
    t = split.test
    other = Ratings(t.users, rng.permutation(t.items), t.ratings, t.timestamps)
    swapped = Split(split.train, other, split.users, split.items, split.threshold)
    s = TuneSettings(budget=3, seed=1, space=SPACE, hybrid=False)
    a = tune(split, ds.catalog, s, evaluate_test=False)
    b = tune(swapped, ds.catalog, s, evaluate_test=False)
    assert [x.to_dict() | {"seconds": 0} for x in a.trials] == [x.to_dict() | {"seconds": 0} for x in b.trials]
    assert a.chosen.config == b.chosen.config and a.test is None


def test_validation_split_holds_out_second_to_last(data):
    _, split = data
    val = validation_split(split)
    assert len(val.train) + len(val.test) == len(split.train)
    # each validation held-out row is the user's last train positive
    last = {int(u): int(i) for u, i in zip(split.train.users, split.train.items)}  # later rows overwrite
    assert all(last[int(u)] == int(i) for u, i in zip(val.test.users, val.test.items))


def test_select_budget_counts_fits(data, monkeypatch):
    ds, split = data
    calls = []
    real = fitmod.fit_als_part

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    import recvec.engine.tune as tunemod

    monkeypatch.setattr(tunemod, "fit_als_part", counting)
    select(validation_split(split), ds.catalog, TuneSettings(budget=3, space=SPACE, hybrid=False))
    assert len(calls) == 3
    with pytest.raises(RecvecError, match="budget"):
        TuneSettings(budget=0)


def test_cli_tune_saves_results_usable_as_preset(data, tmp_path):
    from click.testing import CliRunner

    from recvec.cli import main

    out = tmp_path / "tune.json"
    data_dir = str(tmp_path / "d")
    from recvec.engine.synthetic import write_synthetic_movielens

    write_synthetic_movielens(data_dir, n_users=100, n_items=90, seed=2)
    r = CliRunner().invoke(main, ["tune", "--data", data_dir, "--budget", "2", "--no-hybrid", "--out", str(out),
                                  "--quiet"])
    assert r.exit_code == 0, r.output
    saved = json.loads(out.read_text())
    assert saved["chosen"]["config"]["kind"] in ("als", "als-time", "ease", "transition")
    assert {t["stage"] for t in saved["trials"]} >= {"ease", "transition"}  # the peers compete on validation
    assert saved["trials"] and "test" in saved and "validation" in saved["protocol"]
    # the saved choice, evaluated through --preset FILE, reproduces the tune's one test figure
    r = CliRunner().invoke(main, ["eval", "--data", data_dir, "--preset", str(out), "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["recall"] == pytest.approx(saved["test"]["recall"])


def test_no_peers_and_target_later(data):
    ds, split = data
    s = TuneSettings(budget=1, space=SPACE, hybrid=False, peers=False, target="later")
    result = tune(split, ds.catalog, s, evaluate_test=False)
    assert {t.config.kind for t in result.trials} <= {"als", "als-time"}
    with pytest.raises(RecvecError, match="target must be one of all, later"):
        TuneSettings(target="soon")


def test_sequence_stage_chooses_epochs_on_validation(data):
    from recvec.engine.models.sequence import SequenceConfig

    ds, split = data
    guard = Guard()
    guard.reads = []
    seq = SequenceConfig(dim=8, max_len=8, layers=1, heads=1, epochs=2, batch_size=64, dropout=0.0)
    s = TuneSettings(budget=1, space=SPACE, hybrid=False, sequence=True, sequence_config=seq)
    result = tune(guarded(split, guard), ds.catalog, s, evaluate_test=False, threads=1)
    assert guard.reads == []
    seq_trials = [t for t in result.trials if t.stage == "sequence"]
    assert [t.config.sequence.epochs for t in seq_trials] == [1, 2]
    assert all(t.config.kind == "sequence" and 0 <= t.recall <= 1 for t in seq_trials)
    hybrids = [t for t in result.trials if t.stage == "als+sequence"]
    assert len(hybrids) == 2 * len(SPACE.sequence_hybrid_weight)
    assert all(t.config.hybrid_parts == ("als", "sequence") for t in hybrids)
