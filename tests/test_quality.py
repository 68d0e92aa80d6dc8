"""Recency weighting, time-aware ALS, the hybrid index, new model kinds through artifacts, presets.

Offline and small: a seeded synthetic MovieLens (tmp_path) and fake text vectors (a deterministic
function of the movie ids) stand in for the real data and encoders."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from recvec.engine.data import Catalog, Ratings, load_dataset
from recvec.engine.models import fit as fitmod
from recvec.engine.models.als import ALSConfig, fit_als
from recvec.engine.models.fit import ModelConfig, evaluate_model, fit_model
from recvec.engine.models.hybrid import (
    HybridEncoder,
    Part,
    hybrid_item_vectors,
    part_scale,
)
from recvec.engine.models.sequence import SequenceConfig
from recvec.engine.split import leave_last_out
from recvec.engine.users import ALSFoldIn, MeanEncoder
from recvec.engine.weighting import NONE, RecencyWeighting, time_decay_matrix
from recvec.errors import RecvecError

DAY = 86400


# ------------------------------------------------------------------------------------ fixtures


def fake_text_vectors(catalog, config, cache_dir=None, progress=False) -> np.ndarray:
    """Unit vectors, a deterministic function of each movie id (so refits see the same vectors)."""
    out = np.empty((len(catalog.ids), 12), np.float32)
    for i, m in enumerate(catalog.ids):
        out[i] = np.random.default_rng(int(m)).standard_normal(12)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def fake_text(monkeypatch):
    monkeypatch.setattr(fitmod, "text_vectors", fake_text_vectors)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from recvec.engine.synthetic import write_synthetic_movielens

    d = write_synthetic_movielens(tmp_path_factory.mktemp("small"), n_users=150, n_items=120, seed=3)
    ds = load_dataset(str(d))
    return ds, leave_last_out(ds.ratings)


TINY_ALS = ALSConfig(factors=8, iterations=4, seed=0)
TINY_SEQ = SequenceConfig(dim=8, max_len=8, layers=1, heads=1, epochs=1, batch_size=64, dropout=0.0)


# ------------------------------------------------------------------------------------ weighting


class TestWeighting:
    def test_uniform_is_ones(self):
        assert np.array_equal(NONE(np.arange(5), None), np.ones(5))
        assert NONE.is_uniform and NONE.name == "none"

    def test_position_half_life(self):
        w = RecencyWeighting(half_life=2.0)(np.arange(7), None)
        assert w[-1] == pytest.approx(1.0)
        assert w[-3] == pytest.approx(0.5)  # two positions older: half
        assert w[-5] == pytest.approx(0.25)
        assert np.all(np.diff(w) > 0)  # older items weigh less

    def test_time_half_life_and_floor(self):
        t = np.array([0, 10 * DAY, 20 * DAY, 30 * DAY])
        w = RecencyWeighting(half_life_days=10.0)(np.arange(4), t)
        np.testing.assert_allclose(w, [0.125, 0.25, 0.5, 1.0])
        wf = RecencyWeighting(half_life_days=10.0, floor=0.2, scale=3.0)(np.arange(4), t)
        np.testing.assert_allclose(wf, 3.0 * (0.2 + 0.8 * np.array([0.125, 0.25, 0.5, 1.0])))

    def test_time_factor_needs_timestamps_position_does_not(self):
        w = RecencyWeighting(half_life=1.0, half_life_days=1.0)
        t = np.array([0, DAY])
        np.testing.assert_allclose(w(np.arange(2), t), [0.25, 1.0])
        np.testing.assert_allclose(w(np.arange(2), None), [0.5, 1.0])  # only the position factor

    def test_roundtrip_and_errors(self):
        w = RecencyWeighting(half_life=3.0, half_life_days=30.0, floor=0.1, scale=2.0)
        assert RecencyWeighting.from_dict(json.loads(json.dumps(w.to_dict()))) == w
        for bad in ({"half_life": -1}, {"floor": 1.0}, {"scale": 0}):
            with pytest.raises(RecvecError):
                RecencyWeighting(**bad)
        with pytest.raises(RecvecError, match="unknown"):
            RecencyWeighting.from_dict({"halflife": 3})
        with pytest.raises(RecvecError, match="timestamps"):
            RecencyWeighting(half_life_days=1.0)(np.arange(3), np.arange(2))

    def test_time_decay_matrix_matches_per_user_weights(self, small):
        _, split = small
        w = RecencyWeighting(half_life=5.0, half_life_days=20.0, floor=0.1)
        m = time_decay_matrix(split.train_user_rows, split.train_item_rows, split.train.timestamps,
                              split.matrix.shape, w)
        assert m.nnz == split.matrix.nnz
        for u, (rows, times) in enumerate(zip(split.histories()[:30], split.history_times()[:30])):
            expected = w(rows, times)
            np.testing.assert_allclose(m[u].toarray()[0, rows], expected, rtol=1e-6)

    def test_weighted_fold_in_is_the_weighted_least_squares_solution(self):
        rng = np.random.default_rng(0)
        Y = rng.standard_normal((30, 5)).astype(np.float32)
        hist = np.array([3, 7, 11, 20, 25])
        times = np.array([0, 5, 9, 30, 31]) * DAY
        w = RecencyWeighting(half_life=2.0, half_life_days=10.0, floor=0.05, scale=4.0)
        reg, alpha = 0.3, 2.0
        x = ALSFoldIn(Y, reg, alpha, w).encode([hist], [times])[0]
        # minimise sum_j c_j (p_j - x.y_j)^2 + reg |x|^2 over ALL items: c_j = alpha w_j, p_j = 1 on the
        # history, c_j = 1, p_j = 0 elsewhere (implicit ALS's user step)
        c = np.ones(30)
        c[hist] = alpha * w(hist, times)
        p = np.zeros(30)
        p[hist] = 1.0
        Yd = Y.astype(np.float64)
        direct = np.linalg.solve(Yd.T @ (c[:, None] * Yd) + reg * np.eye(5), Yd.T @ (c * p))
        np.testing.assert_allclose(x, direct, rtol=1e-4, atol=1e-5)

    def test_weighted_mean(self):
        rng = np.random.default_rng(1)
        V = rng.standard_normal((10, 4)).astype(np.float32)
        hist = np.array([1, 4, 6])
        w = RecencyWeighting(half_life=1.0)
        got = MeanEncoder(V, w).encode([hist])[0]
        ww = np.array([0.25, 0.5, 1.0])
        np.testing.assert_allclose(got, (ww @ V[hist]) / ww.sum(), rtol=1e-5)


# ------------------------------------------------------------------------------------ hybrid


class TestHybrid:
    def _encoder(self, build_w, query_w=None, n=40):
        rng = np.random.default_rng(5)
        als = rng.standard_normal((n, 6)).astype(np.float32)
        als[-5:] = 0.0  # cold items
        content = rng.standard_normal((n, 9)).astype(np.float32)
        content /= np.linalg.norm(content, axis=1, keepdims=True)
        enc = HybridEncoder(Part("als", ALSFoldIn(als, 0.1, 1.0, RecencyWeighting(half_life=2.0)), als),
                            Part("text", MeanEncoder(content, RecencyWeighting(half_life=3.0)), content),
                            build_w, query_w)
        return enc, hybrid_item_vectors(als, content, build_w), als, content

    @pytest.mark.parametrize("build_w,query_w", [(0.5, None), (0.8, None), (0.8, 0.3), (0.3, 0.95), (0.6, 0.0),
                                                 (0.6, 1.0)])
    def test_score_is_weighted_sum_of_parts(self, build_w, query_w):
        enc, items, als, content = self._encoder(build_w, query_w)
        hist = [np.array([0, 3, 5, 9]), np.array([2]), np.array([10, 11, 12, 13, 14, 15])]
        times = [np.arange(len(h)) * DAY for h in hist]
        scores = enc.encode(hist, times) @ items.T
        a, c = enc.part_scores(hist, times)
        w = build_w if query_w is None else query_w
        np.testing.assert_allclose(scores, w * a + (1 - w) * c, atol=1e-5)
        # the parts are what they claim: unit ALS fold-in . (y / max|y|) and unit mean . content
        x = ALSFoldIn(als, 0.1, 1.0, RecencyWeighting(half_life=2.0)).encode(hist, times)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        np.testing.assert_allclose(a, x @ (als / part_scale(als)).T, atol=1e-5)
        m = MeanEncoder(content, RecencyWeighting(half_life=3.0)).encode(hist, times)
        np.testing.assert_allclose(c, (m / np.linalg.norm(m, axis=1, keepdims=True)) @ content.T, atol=1e-5)
        assert np.abs(a).max() <= 1 + 1e-5 and np.abs(c).max() <= 1 + 1e-5

    def test_cold_items_score_through_content_only(self):
        enc, items, _, _ = self._encoder(0.7)
        a, c = enc.part_scores([np.array([1, 2, 3])])
        assert np.all(a[0, -5:] == 0)
        s = enc.encode([np.array([1, 2, 3])]) @ items.T
        np.testing.assert_allclose(s[0, -5:], 0.3 * c[0, -5:], atol=1e-6)

    def test_weight_cannot_be_revived_from_zero_part(self):
        enc, _, _, _ = self._encoder(1.0)
        with pytest.raises(RecvecError, match="cannot be changed"):
            enc.with_weight(0.5)
        assert enc.with_weight(1.0).weight == 1.0
        with pytest.raises(RecvecError):
            self._encoder(1.5)

    def test_cold_item_is_recommended(self, tmp_path):
        """A movie nobody rated, whose text matches a user's recent items, comes up for that user."""
        rng = np.random.default_rng(0)
        users, items, stamps = [], [], []
        for u in range(1, 41):
            for j, m in enumerate(rng.choice(np.arange(1, 31), size=12, replace=False)):
                users.append(u), items.append(int(m)), stamps.append(j * DAY)
        ratings = Ratings(np.array(users), np.array(items), np.full(len(users), 5.0, np.float32), np.array(stamps))
        ids = np.arange(1, 32)  # movie 31 is in the catalogue only
        catalog = Catalog(ids, tuple(f"m{i}" for i in ids), tuple("Drama" for _ in ids))
        split = leave_last_out(ratings)
        user_row = 0
        recent = split.histories()[user_row][-3:]
        text = np.asarray(fake_text_vectors(catalog, None))
        # give the cold movie the direction of the user's recent items' mean
        recent_rows = np.searchsorted(ids, split.items.id_of(recent))
        text[30] = text[recent_rows].mean(0) / np.linalg.norm(text[recent_rows].mean(0))
        cfg = ModelConfig(kind="hybrid", als=TINY_ALS, hybrid_weight=0.2, content_weighting=RecencyWeighting(half_life=1.0))
        model = fitmod.assemble_hybrid(split, catalog, cfg, als=fit_als(split.matrix, TINY_ALS), text=text)
        from recvec.indexes.build import recommender_for
        from recvec.indexes.spec import IndexSpec

        rec = recommender_for(model, IndexSpec.parse("flat"))
        history = split.items.id_of(split.histories()[user_row])
        got = rec.recommend(history, 5, timestamps=[split.history_times()[user_row]])
        assert 31 in got.ids.tolist()
        # it is there through the content part alone: never rated, its ALS part is 0
        rows = [model.items.rows(history)]
        a, c = model.user_encoder.part_scores(rows, [split.history_times()[user_row]])
        assert a[0, 30] == 0 and model.popularity[30] == 0
        assert c[0, 30] > 0.5


# ------------------------------------------------------------------------------------ configs and kinds


KIND_CONFIGS = {
    "popular": ModelConfig("popular"),
    "als": ModelConfig("als", als=TINY_ALS),
    "als-recency": ModelConfig("als", als=TINY_ALS, weighting=RecencyWeighting(half_life=2.0, scale=3.0)),
    "als-time": ModelConfig("als-time", als=TINY_ALS, train_weighting=RecencyWeighting(half_life=10.0, floor=0.1),
                            weighting=RecencyWeighting(half_life=3.0)),
    "als-time-days": ModelConfig("als-time", als=TINY_ALS,
                                 train_weighting=RecencyWeighting(half_life_days=30.0, floor=0.2)),
    "text": ModelConfig("text", content_weighting=RecencyWeighting(half_life=4.0)),
    "hybrid": ModelConfig("hybrid", als=TINY_ALS, hybrid_weight=0.7, weighting=RecencyWeighting(half_life=2.0),
                          content_weighting=RecencyWeighting(half_life=5.0)),
    "sequence": ModelConfig("sequence", sequence=TINY_SEQ),
    "hybrid-als-sequence": ModelConfig("hybrid", hybrid_parts=("als", "sequence"), als=TINY_ALS, sequence=TINY_SEQ,
                                       hybrid_weight=0.4, weighting=RecencyWeighting(half_life=2.0)),
    "hybrid-sequence-text": ModelConfig("hybrid", hybrid_parts=("sequence", "text"), sequence=TINY_SEQ,
                                        hybrid_weight=0.6),
}


def test_model_config_roundtrip_and_errors():
    for cfg in KIND_CONFIGS.values():
        assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(RecvecError, match="unknown model"):
        ModelConfig("nope")
    with pytest.raises(RecvecError, match="unknown keys"):
        ModelConfig.from_dict({"kind": "als", "factors": 3})
    with pytest.raises(RecvecError, match="hybrid weight"):
        ModelConfig("hybrid", hybrid_weight=2.0)
    with pytest.raises(RecvecError, match="hybrid parts"):
        ModelConfig("hybrid", hybrid_parts=("text", "als"))
    assert set(KIND_CONFIGS["hybrid-als-sequence"].to_dict()) >= {"als", "sequence", "hybrid_parts"}
    assert "encoder" not in KIND_CONFIGS["hybrid-als-sequence"].to_dict()
    assert ModelConfig("als-time").train_decay == fitmod.DEFAULT_TRAIN_WEIGHTING
    assert ModelConfig("als").lab_path and not KIND_CONFIGS["als-recency"].lab_path


def test_time_aware_training_changes_the_factors(small):
    _, split = small
    plain = fitmod.fit_als_part(split, KIND_CONFIGS["als"], False)
    timed = fitmod.fit_als_part(split, KIND_CONFIGS["als-time"], False)
    assert not np.allclose(plain.item_factors, timed.item_factors)


def test_recency_fold_in_follows_the_recent_items(small):
    """With a short half-life the query vector points where the fold-in of the last item alone does."""
    _, split = small
    als = fit_als(split.matrix, TINY_ALS)
    hist = split.histories()[0]
    sharp = ALSFoldIn(als.item_factors, 0.01, 1.0, RecencyWeighting(half_life=0.1)).encode([hist])[0]
    last = ALSFoldIn(als.item_factors, 0.01, 1.0).encode([hist[-1:]])[0]
    flat = ALSFoldIn(als.item_factors, 0.01, 1.0).encode([hist])[0]
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    # older items get confidence ~0 (they leave the solve), the last item keeps 1
    assert cos(sharp, last) > 0.98
    assert cos(flat, last) < cos(sharp, last) - 0.1


@pytest.mark.parametrize("name", list(KIND_CONFIGS))
def test_artifact_round_trip_gives_identical_recommendations(name, small, tmp_path, fake_text):
    from recvec.engine.evaluate import evaluate_served
    from recvec.indexes.build import build_artifact, open_index, recommender_for
    from recvec.indexes.spec import IndexSpec

    ds, split = small
    cfg = KIND_CONFIGS[name]
    model = fit_model(split, ds.catalog, cfg, threads=1)
    manifest = build_artifact(ds, model, IndexSpec.parse("flat"), str(tmp_path / "art"))
    assert manifest["model"]["params"] == cfg.to_dict()
    loaded = open_index(str(tmp_path / "art"))
    memory = recommender_for(model, IndexSpec.parse("flat"))
    rows = range(0, len(split.users), 7)
    hist = [split.items.id_of(split.histories()[u]) for u in rows]
    times = [split.history_times()[u] for u in rows]
    a = loaded.recommender.recommend_batch(hist, 10, timestamps=times)
    b = memory.recommend_batch(hist, 10, timestamps=times)
    for x, y in zip(a, b):
        assert np.array_equal(x.ids, y.ids)
        np.testing.assert_array_equal(x.scores, y.scores)
    # the loaded user encoder is the fitted one: same query vectors
    item_rows = [model.items.rows(h) for h in hist]
    np.testing.assert_array_equal(loaded.recommender.user_encoder.encode(item_rows, times),
                                  model.user_encoder.encode(item_rows, times))
    if not cfg.lab_path and name != "popular":  # served path == the evaluation's query-time path
        exact = evaluate_model(model, split)
        served = evaluate_served(loaded.recommender, split, k=10)
        assert served.users == exact.users
        assert served.recall == pytest.approx(exact.recall, abs=1.5 / exact.users)


def test_history_order_and_timestamps_reach_the_encoder(small, fake_text):
    """The recommender keeps a history's order (recency encoders read it), once per item, with aligned times."""
    from recvec.indexes.build import recommender_for
    from recvec.indexes.spec import IndexSpec

    ds, split = small
    model = fit_model(split, ds.catalog, KIND_CONFIGS["als-recency"])
    rec = recommender_for(model, IndexSpec.parse("flat"))
    h = split.items.id_of(split.histories()[0])
    t = split.history_times()[0]
    forward = rec.recommend(h, 10, timestamps=[t])
    backward = rec.recommend(h[::-1], 10, timestamps=[t[::-1]])
    assert not np.array_equal(forward.ids, backward.ids)  # order matters for recency weights
    dup = rec.recommend(np.r_[h[:1], h], 10, timestamps=[np.r_[t[:1], t]])  # a repeat of the oldest item
    assert np.array_equal(dup.ids, forward.ids)
    with pytest.raises(RecvecError, match="timestamps"):
        rec.recommend(h, 10, timestamps=[t[:-1]])


def test_hybrid_weight_override_from_artifact(small, tmp_path, fake_text):
    from recvec.indexes.build import build_artifact, open_index
    from recvec.indexes.spec import IndexSpec

    ds, split = small
    model = fit_model(split, ds.catalog, KIND_CONFIGS["hybrid"])
    build_artifact(ds, model, IndexSpec.parse("flat"), str(tmp_path / "h"))
    h = [split.items.id_of(split.histories()[3])]
    t = [split.history_times()[3]]
    base = open_index(str(tmp_path / "h")).recommender
    same = open_index(str(tmp_path / "h"), hybrid_weight=0.7).recommender
    other = open_index(str(tmp_path / "h"), hybrid_weight=0.1).recommender
    assert np.array_equal(base.recommend_batch(h, 10, timestamps=t)[0].ids, same.recommend_batch(h, 10, timestamps=t)[0].ids)
    # the override equals an index built with that weight (same parts, same query)
    rebuilt = fit_model(split, ds.catalog, replace(KIND_CONFIGS["hybrid"], hybrid_weight=0.1))
    from recvec.indexes.build import recommender_for

    want = recommender_for(rebuilt, IndexSpec.parse("flat")).recommend_batch(h, 10, timestamps=t)[0]
    got = other.recommend_batch(h, 10, timestamps=t)[0]
    assert np.array_equal(got.ids, want.ids)
    als_art = tmp_path / "a"
    build_artifact(ds, fit_model(split, ds.catalog, KIND_CONFIGS["als"]), IndexSpec.parse("flat"), str(als_art))
    with pytest.raises(RecvecError, match="hybrid indexes only"):
        open_index(str(als_art), hybrid_weight=0.5)


def test_sequence_weights_are_safetensors_not_pickle(small, tmp_path):
    from recvec.indexes.build import build_artifact
    from recvec.indexes.spec import IndexSpec

    ds, split = small
    model = fit_model(split, ds.catalog, KIND_CONFIGS["sequence"], threads=1)
    build_artifact(ds, model, IndexSpec.parse("flat"), str(tmp_path / "s"))
    raw = np.load(tmp_path / "s" / "sequence_weights.npy", allow_pickle=False)
    from safetensors.numpy import load

    state = load(raw.tobytes())
    assert "item_emb.weight" in state and state["item_emb.weight"].shape == (len(model.items) + 1, TINY_SEQ.dim)
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["user_encoder"]["kind"] == "sequence"
    assert manifest["user_encoder"]["config"] == TINY_SEQ.to_dict()


# ------------------------------------------------------------------------------------ presets and CLI


def test_packaged_presets_parse():
    from recvec.indexes.presets import list_presets, load_preset, preset_names

    names = preset_names()
    assert {"best", "lab"} <= set(names)
    for p in list_presets():
        assert p.name in names and p.measured.get("command")
    assert load_preset("lab").model == ModelConfig("als")
    with pytest.raises(RecvecError, match="unknown preset"):
        load_preset("no-such-preset")


def test_cli_preset_eval_build_and_conflicts(tmp_path, synthetic_dir):
    from click.testing import CliRunner

    from recvec.cli import main

    preset = {"name": "tiny", "index": "hnsw16", "model": KIND_CONFIGS["als-recency"].to_dict(),
              "measured": {"command": "-"}}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(preset))
    r = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--preset", str(path), "--json", "--quiet",
                                  "--index", "flat"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)
    assert row["model"] == KIND_CONFIGS["als-recency"].name and row["params"] == preset["model"]
    assert row["served"]["recall"] == pytest.approx(row["recall"], abs=2 / row["users"])
    r = CliRunner().invoke(main, ["build", "--data", str(synthetic_dir), "--preset", str(path), "--out",
                                  str(tmp_path / "art"), "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["index"]["spec"] == "hnsw16" and manifest["preset"] == str(path)
    assert manifest["user_encoder"]["weighting"] == preset["model"]["weighting"]
    r = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--preset", str(path), "--factors", "8"])
    assert r.exit_code == 2 and "--factors" in r.output
    r = CliRunner().invoke(main, ["presets", "--json"])
    assert r.exit_code == 0 and {p["name"] for p in json.loads(r.output)} >= {"best", "lab"}
