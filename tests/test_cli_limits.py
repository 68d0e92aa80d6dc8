"""Numeric flags at their extremes, values the user gave versus values left unset, bounded echoes of
huge inputs, and messages that name the real cause.

- A hypothesis test (derandomised) drives every numeric flag of every command with extreme values
  (C int and int64 limits and one past them, 0, -1, nan, inf, 1e309, text) and asserts a clean exit
  each time: 0, or 2 with ``Error: ...`` (click's usage errors included) and no traceback. Valid
  values that would start a long run (e.g. 10,000 ALS iterations) are left out of the draw.
- 0 is a value: ``--synthetic 0`` is refused (it never means "the default dataset").
- An error about a 1 MB field echoes at most ~80 characters of it.
- Causes are named right: a user without a train positive, a ``ratings.dat`` that is a directory,
  a zip whose members all have unsafe paths, a train split left empty.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from recvec.checks import C_INT_MAX
from recvec.cli import main
from recvec.errors import RecvecError

INT64 = 2**63
EXTREMES = [-INT64 - 1, -INT64, -C_INT_MAX - 2, -1, 0, 1, 2, 41, 42, 1000, 4096, 4097, 10_000, 10_001,
            C_INT_MAX, C_INT_MAX + 1, 2**32 - 1, 2**32, INT64 - 1, INT64, 2**64, 10**30]
TEXTS = ["nan", "inf", "-inf", "1e309", "-1e309", "1e-320", "0.5", "1.5", "-0", "0x10", "", " ", "abc", "1,2",
         "٣"]
VALUES = st.one_of(st.sampled_from(EXTREMES).map(str), st.sampled_from(TEXTS),
                   st.integers(-(2**70), 2**70).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def clean_exit(res) -> None:
    assert res.exit_code in (0, 2), (res.exit_code, res.output[-2000:], res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    if res.exit_code == 2:
        assert "Error" in res.stderr and len(res.stderr) < 2000, res.stderr[-2000:]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A small synthetic MovieLens-format dataset (each CLI call on it takes milliseconds)."""
    from recvec.engine.synthetic import write_synthetic_movielens

    return write_synthetic_movielens(tmp_path_factory.mktemp("tiny") / "ml", n_users=120, n_items=100,
                                     min_ratings=5, mean_ratings=10)


@pytest.fixture(scope="module")
def indexes(tiny_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("limits")
    out = {}
    for spec in ("flat", "hnsw", "ivf4"):
        out[spec.rstrip("4")] = root / spec
        res = CliRunner().invoke(main, ["build", "--data", str(tiny_dir), "--index", spec, "--out",
                                        str(root / spec), "--factors", "8", "--iterations", "2", "--quiet"])
        assert res.exit_code == 0, res.output
    return out


QUERY_FLAGS = [("user", "-k"), ("user", "--ef-search"), ("user", "--nprobe"), ("similar", "-k"),
               ("similar", "--ef-search"), ("similar", "--item"), ("user", "--user")]


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(which=st.sampled_from(QUERY_FLAGS), spec=st.sampled_from(["flat", "hnsw", "ivf"]), value=VALUES)
def test_query_flags_at_extremes_exit_cleanly(indexes, tiny_dir, reliability_counts, which, spec, value):
    command, flag = which
    args = ["query", command, "--index", str(indexes[spec])]
    if flag == "--user":
        args += ["--data", str(tiny_dir), "--user", value]
    else:
        args += ["--items", "1,2,3"] if command == "user" else ([] if flag == "--item" else ["--item", "1"])
        args += [flag, value]
    clean_exit(CliRunner().invoke(main, args))
    reliability_counts["numeric flags driven with extreme values (hypothesis), each a clean exit"] += 1


#: (command prefix, flag, largest valid value drawn, the flag's largest valid value): valid values between the
#: two would start long work (a 4,096-factor fit, a tuning run) and are left out of the draw.
INF = float("inf")
ALS = ["eval", "--model", "als", "--factors", "2", "--iterations", "1"]
RUN_FLAGS = [
    (["eval", "--model", "popular"], "-k", INF, INF), (["eval", "--model", "popular"], "--threshold", INF, INF),
    (["eval", "--model", "als", "--iterations", "1"], "--factors", 8, 4096),
    (["eval", "--model", "als", "--factors", "2"], "--iterations", 2, 10_000),
    (ALS, "--alpha", INF, INF), (ALS, "--regularization", INF, INF), (ALS, "--seed", INF, INF),
    (["tune", "--no-hybrid"], "--budget", 0, INF), (["tune", "--no-hybrid"], "--sequence-epochs", 0, INF),
    (["tune", "--no-hybrid"], "-k", 0, INF),
    (["bench", "accuracy", "--report-only"], "--synthetic", INF, INF),
    *[(["bench", "latency", "--report-only"], flag, INF, INF)
      for flag in ("--queries", "--single", "--repeats", "--threads", "-k", "--synthetic", "--ef-search", "--dims",
                   "--norm-sigma")],
]


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(which=st.sampled_from(RUN_FLAGS), value=VALUES)
def test_run_flags_at_extremes_exit_cleanly(tiny_dir, tmp_path_factory, reliability_counts, which, value):
    prefix, flag, cap, hi = which
    x = _number(value)
    assume(x is None or not cap < x <= hi)
    data = [] if prefix[0] == "bench" else ["--data", str(tiny_dir)]
    out = ["--out", str(tmp_path_factory.mktemp("out") / "o")] if prefix[0] in ("bench", "tune") else []
    clean_exit(CliRunner().invoke(main, [*prefix, *data, *out, flag, value, "--quiet"]))
    reliability_counts["numeric flags driven with extreme values (hypothesis), each a clean exit"] += 1


# ----------------------------------------------------------------------------- 0 is a value


def test_zero_is_validated_not_taken_for_unset(tmp_path):
    res = CliRunner().invoke(main, ["bench", "accuracy", "--synthetic", "0", "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "--synthetic" in res.output and "0 is not in the range" in res.output
    assert not (tmp_path / "b").exists()
    from recvec.benchmarks.accuracy import AccuracyConfig, bench_accuracy

    with pytest.raises(RecvecError, match="synthetic .* must be an integer from 42"):
        bench_accuracy(AccuracyConfig(), tmp_path / "c", synthetic=0)
    for flag in ("--single", "--queries", "--repeats"):
        res = CliRunner().invoke(main, ["bench", "latency", "--quick", flag, "0", "--out", str(tmp_path / "d")])
        assert res.exit_code == 2 and flag in res.output, res.output


# ----------------------------------------------------------------------------- bounded echoes

HUGE = "x" * 1_000_000


@pytest.mark.parametrize("args", [
    ["query", "user", "--index", "{flat}", "--items", f"1,{HUGE}"],
    ["query", "user", "--index", "{flat}", "--items", ",".join(str(10**6 + i) for i in range(100_000)),
     "--skip-unknown"],
    ["build", "--data", "{data}", "--index", HUGE, "--out", "{tmp}/o"],
    ["eval", "--data", "{data}", "--preset", HUGE],
    ["eval", "--data", f"/nonexistent/{HUGE}"],
    ["bench", "accuracy", "--models", HUGE, "--out", "{tmp}/b"],
    ["bench", "latency", "--synthetic", HUGE, "--out", "{tmp}/b"],
    ["query", "user", "--index", f"/nonexistent/{HUGE}", "--items", "1"],
])
def test_errors_echo_at_most_a_short_cut_of_a_huge_field(indexes, synthetic_dir, tmp_path, args,
                                                         reliability_counts):
    args = [a.format(flat=indexes["flat"], data=synthetic_dir, tmp=tmp_path) if "{" in a[:8] else a for a in args]
    res = CliRunner().invoke(main, args)
    if "--skip-unknown" in args:  # it answers, and names 10 of the 100,000 unknown ids
        assert res.exit_code == 0 and "and 99,990 more" in res.output and len(res.output) < 2000, res.output[:3000]
        return
    clean_exit(res)
    assert res.exit_code == 2 and len(res.stderr) < 1000, len(res.stderr)
    assert "…" in res.stderr
    reliability_counts["huge inputs echoed cut to ~80 characters"] += 1


def test_a_huge_field_in_a_data_file_is_cut_in_the_message(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "ratings.dat").write_text(f"1::10::{HUGE}::978300760\n")
    (d / "movies.dat").write_text("10::Toy Story (1995)::Comedy\n")
    res = CliRunner().invoke(main, ["eval", "--data", str(d)])
    clean_exit(res)
    assert res.exit_code == 2 and "ratings.dat line 1: rating" in res.stderr and len(res.stderr) < 500


# ----------------------------------------------------------------------------- causes named right


def _ml(d: Path, ratings: str) -> Path:
    d.mkdir(parents=True)
    (d / "ratings.dat").write_text(ratings)
    (d / "movies.dat").write_text("10::A (1995)::Comedy\n20::B (1996)::Drama\n30::C (1997)::Drama\n")
    return d


def test_user_in_the_data_without_a_train_positive_is_not_unknown(tmp_path, indexes, reliability_counts):
    d = _ml(tmp_path / "d", "1::10::5::1\n1::20::5::2\n2::10::5::1\n3::10::2::1\n3::20::1::2\n")
    cases = [("2", "user 2 is in the data but has no train positive: their only rating >= 4 is the last one"),
             ("3", "user 3 is in the data but has no train positive: none of their 2 ratings is >= 4"),
             ("99", "unknown user id: 99")]
    for user, message in cases:
        res = CliRunner().invoke(main, ["query", "user", "--index", str(indexes["flat"]), "--data", str(d),
                                        "--user", user])
        assert res.exit_code == 2 and message in res.stderr, res.output
        reliability_counts["bad-input cases (CLI exit 2, no traceback)"] += 1


def test_ratings_file_that_is_a_directory_is_named_so(tmp_path):
    d = tmp_path / "d"
    (d / "ratings.dat").mkdir(parents=True)
    (d / "movies.dat").write_text("10::A (1995)::Comedy\n")
    res = CliRunner().invoke(main, ["eval", "--data", str(d)])
    assert res.exit_code == 2 and "ratings.dat in" in res.stderr and "is a directory, not a file" in res.stderr


def test_zip_of_only_unsafe_members_says_so(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../ratings.dat", "1::10::5::1\n")
        zf.writestr("/etc/movies.dat", "10::A::B\n")
    res = CliRunner().invoke(main, ["eval", "--data", str(z)])
    assert res.exit_code == 2 and "every member of the zip has an unsafe path" in res.stderr, res.stderr
    assert "../ratings.dat" in res.stderr and "holds no files" not in res.stderr


def test_one_line_ratings_file_says_the_train_split_is_empty(tmp_path):
    d = _ml(tmp_path / "d", "1::10::5::1\n")
    for command in (["eval"], ["build", "--out", str(tmp_path / "o")]):
        res = CliRunner().invoke(main, [*command, "--data", str(d)])
        assert res.exit_code == 2 and "the train split is empty: the one user with a rating >= 4" in res.stderr, \
            res.stderr
        assert "index vectors" not in res.stderr


def test_out_of_range_model_flags_name_the_flag(synthetic_dir):
    for flag, value in (("--factors", "0"), ("--iterations", "0"), ("--alpha", "0"), ("--regularization", "-1")):
        res = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--model", "als", flag, value])
        assert res.exit_code == 2 and f"Invalid value for '{flag}'" in res.stderr, res.stderr
