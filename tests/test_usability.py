"""What a new user meets: `recvec tune` saving under a results folder and never over someone else's
file, and a demo that says what it recommends for (the history, the query item, counts for the
popularity fallback)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from recvec.cli import main


def test_tune_saves_under_results_and_never_over_a_foreign_file(tmp_path, monkeypatch, synthetic_dir):
    from recvec.engine.synthetic import write_synthetic_movielens

    data = write_synthetic_movielens(tmp_path / "tiny", n_users=120, n_items=100, min_ratings=5, mean_ratings=10)
    monkeypatch.chdir(tmp_path)
    args = ["tune", "--data", str(data), "--budget", "1", "--no-hybrid", "--quiet"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    saved = tmp_path / "results" / "tune" / "tiny.json"
    assert saved.is_file() and f"saved {saved.relative_to(tmp_path)}" in res.output
    assert not (tmp_path / "recvec-tune.json").exists()
    assert {"chosen", "trials"} <= set(json.loads(saved.read_text()))
    res = CliRunner().invoke(main, args)  # its own earlier result: replaced
    assert res.exit_code == 0, res.output
    (tmp_path / "notes.json").write_text('{"mine": true}\n')
    res = CliRunner().invoke(main, [*args, "--out", "notes.json"])
    assert res.exit_code == 2 and "refusing to overwrite notes.json: it is not a recvec tune result" in res.output
    assert (tmp_path / "notes.json").read_text() == '{"mine": true}\n'


def test_demo_shows_the_history_the_query_item_and_popularity_counts(tmp_path):
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--quiet"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "the most-rated film (ALS, cosine)" in out
    assert "whose history of" in out and "its latest 5:" in out
    assert "popularity fallback (scores are the films' train positives)" in out
    tail = out[out.index("popularity fallback"):]
    assert "train positives" in tail.splitlines()[2]  # the table's column header says what the numbers are
