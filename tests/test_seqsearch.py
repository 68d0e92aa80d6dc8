"""`recvec bench sequence`: the validation runs that choose SequenceConfig settings, one factor at a
time around a base; every epoch scored on validation only (test never read), finished runs reused,
the choice the best run and epoch; bad --vary / --set values named. And `recvec bench similar`'s rows."""

from __future__ import annotations

import json

import pytest

from recvec.benchmarks.seqsearch import SequenceSearch, parse_vary, run_search
from recvec.engine.data import load_dataset
from recvec.engine.models.sequence import SequenceConfig
from recvec.engine.split import Split, leave_last_out
from recvec.errors import RecvecError
from clirun import run

BASE = SequenceConfig(dim=8, max_len=8, layers=1, heads=1, epochs=2, batch_size=64, negatives=0, seed=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from recvec.engine.synthetic import write_synthetic_movielens

    d = write_synthetic_movielens(tmp_path_factory.mktemp("seqsearch"), n_users=80, n_items=60, seed=5)
    return d, load_dataset(str(d))


class Untouchable:
    """Stands in for split.test: any read fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read ({name})")

    def __len__(self):
        raise AssertionError("the test split was read (len)")


def test_runs_one_factor_at_a_time_on_validation_only(data, tmp_path):
    _, ds = data
    split = leave_last_out(ds.ratings)
    blind = Split(train=split.train, test=Untouchable(), users=split.users, items=split.items,
                  threshold=split.threshold)
    search = SequenceSearch(base=BASE, vary=parse_vary(["layers=1,2", "tied=false"], BASE))
    assert [c.layers for c in search.configs()] == [1, 2, 1] and search.configs()[2].tied is False
    r = run_search(blind, search, tmp_path, data="synthetic", fingerprint=ds.fingerprint)
    assert [x["changed"] for x in r["runs"]] == ["base", "layers=2", "tied=False"]
    for x in r["runs"]:
        assert x["epochs_run"] == 2 and [e["epoch"] for e in x["log"]] == [1, 2] and x["fit_s"] > 0
        assert all(0 <= e["val_recall"] <= 1 for e in x["log"])
    best = max((e["val_recall"], e["val_ndcg"]) for x in r["runs"] for e in x["log"])
    assert (r["chosen"]["val_recall"], r["chosen"]["val_ndcg"]) == best
    assert r["chosen"]["config"]["epochs"] == r["chosen"]["epoch"]
    again = run_search(blind, search, tmp_path, data="synthetic", fingerprint=ds.fingerprint)  # all reused
    assert [x["fit_s"] for x in again["runs"]] == [x["fit_s"] for x in r["runs"]]


def test_the_cli_reports_and_refuses_bad_settings(data, tmp_path):
    d, _ = data
    sets = ["--set", "dim=8", "--set", "max_len=8", "--set", "layers=1", "--set", "heads=1", "--set", "epochs=1",
            "--set", "negatives=0"]
    r = json.loads(run("bench", "sequence", "--data", d, *sets, "--vary", "lr=0.01", "--out", tmp_path / "s",
                       "--json", "--quiet").stdout)
    assert [x["changed"] for x in r["runs"]] == ["base", "lr=0.01"] and r["base"]["dim"] == 8
    assert json.loads((tmp_path / "s" / "sequence_search.json").read_text())["chosen"] == r["chosen"]
    assert "dropout_rate" in run("bench", "sequence", "--data", d, "--vary", "dropout_rate=0.1", "--out", tmp_path / "x",
                                 code=2).output
    assert "is not an integer" in run("bench", "sequence", "--data", d, "--vary", "layers=two", "--out", tmp_path / "x",
                              code=2).output
    assert "--set" in run("bench", "sequence", "--data", d, "--set", "layers=1,2", "--out", tmp_path / "x",
                          code=2).output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "sequence_search.json").write_text("my notes")
    assert "not a sequence search recvec wrote" in run("bench", "sequence", "--data", d, *sets, "--out",
                                                       tmp_path / "mine", code=2).output
    assert (tmp_path / "mine" / "sequence_search.json").read_text() == "my notes"
    with pytest.raises(RecvecError, match="seed"):
        SequenceSearch(base=BASE, vary=(("seed", (1,)),))


def test_bench_similar_rows(tmp_path):
    r = json.loads(run("bench", "similar", "--synthetic", 3000, "--dims", 8, "--items", 20, "--ef-search", "16,64",
                       "--similar-index", "hnsw16", "--json").stdout)
    rows = r["rows"]
    assert [x["method"] for x in rows] == ["exact scan", "similar index hnsw16", "raw FAISS (same index)"] * 1 + \
        ["similar index hnsw16", "raw FAISS (same index)"]
    assert rows[0]["recall@10"] == 1.0 and all(x["p50_ms"] > 0 for x in rows)
    index_rows = [x for x in rows if x["method"].startswith("similar index")]
    assert all(x["reachable_share"] == 1.0 and x["recall@10"] >= 0.9 for x in index_rows)
    assert r["machine"]["threads"]["cpus_available"] >= 1
    assert "--synthetic" in run("bench", "similar", "--synthetic", "ten", code=2).output
