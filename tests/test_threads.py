"""The thread policy (recvec/threads.py) and progress output (recvec/progress.py): the counts each
stage gives each library, where the count comes from, that a stage really sets and restores the
libraries' pools, passive OpenMP waiting, and plain progress lines when stderr is not a terminal."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from recvec import threads
from recvec.cli import main
from recvec.errors import RecvecError
from recvec.progress import PlainProgress, progress


@pytest.fixture(autouse=True)
def _no_pinned_threads(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv(threads.POLICY_ENV, raising=False)
    threads.set_threads(None)
    yield
    threads.set_threads(None)


def test_each_stage_gives_each_library_its_count():
    want = {  # (blas, openmp, torch) with 4 threads
        "fit": (1, 4, 4), "score": (4, 1, 1), "search_batch": (1, 4, 1), "search_single": (1, 1, 1),
        "train": (1, 4, 4), "encode": (1, 4, 4),
    }
    assert set(want) == set(threads.STAGES)
    for stage, counts in want.items():
        p = threads.policy(stage, 4)
        assert (p.blas, p.openmp, p.torch) == counts, stage
    with pytest.raises(RecvecError, match="unknown thread stage 'nope'"):
        threads.policy("nope")


def test_the_count_comes_from_the_flag_then_the_environment_then_the_cores(monkeypatch):
    assert threads.threads() == threads.available_cores() >= 1
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.threads() == 3 and threads.policy("score").blas == 3
    threads.set_threads(5)
    assert threads.threads() == 5
    threads.set_threads(None)
    for bad in ("zero", "0", "-2", "99999"):
        monkeypatch.setenv(threads.ENV, bad)
        with pytest.raises(RecvecError, match="RECVEC_THREADS must be an integer from 1"):
            threads.threads()
    with pytest.raises(RecvecError, match="threads must be an integer"):
        threads.set_threads(0)


def test_a_stage_sets_the_pools_and_restores_them():
    import faiss  # noqa: F401  (its OpenMP runtime and OpenBLAS are what the stage must reach)
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_info

    def counts():  # numpy's BLAS and FAISS's OpenMP (FAISS's OpenBLAS is an OpenMP build and follows it;
        info = threadpool_info()  # torch's own OpenMP runtime follows torch's count when torch is loaded)
        return ({i["num_threads"] for i in info if i["user_api"] == "blas" and "numpy" in i["filepath"]},
                {i["num_threads"] for i in info if i["user_api"] == "openmp" and "faiss" in i["filepath"]})

    before = counts()
    with threads.stage("search_single") as p:
        assert (p.blas, p.openmp) == (1, 1) and counts() == ({1}, {1})
    with threads.stage("score", 2):
        assert counts() == ({2}, {1})
    with threads.stage("search_batch", 2):
        assert counts() == ({1}, {2})
    assert counts() == before


def test_policy_off_leaves_the_libraries_alone(monkeypatch):
    from threadpoolctl import threadpool_info

    monkeypatch.setenv(threads.POLICY_ENV, "off")
    before = [i["num_threads"] for i in threadpool_info()]
    with threads.stage("search_single") as p:
        assert (p.blas, p.openmp, p.torch) == (0, 0, 0)
        assert [i["num_threads"] for i in threadpool_info()] == before


def test_importing_recvec_makes_openmp_wait_passively_before_the_runtimes_load():
    code = ("import os, json, recvec, faiss, torch; from recvec.threads import runtime_report; "
            "r = runtime_report(); print(json.dumps([os.environ.get('OMP_WAIT_POLICY'), r['openmp_runtimes'], r['policy']]))")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_WAIT_POLICY", threads.POLICY_ENV)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    policy, runtimes, on = json.loads(out.strip().splitlines()[-1])
    # FAISS and torch each bring a copy of GNU OpenMP: two runtimes, both passive now
    assert policy == "PASSIVE" and runtimes == 2 and on == "on"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's own choice wins
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1])[0] == "ACTIVE"


def test_the_cli_flag_applies_to_its_command_only(synthetic_dir):
    seen = []
    import recvec.engine.models.fit as fit

    real = fit.fit_model

    def spy(*a, **kw):
        seen.append(threads.threads())
        return real(*a, **kw)

    fit.fit_model = spy
    try:
        res = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--model", "popular", "--threads", "1",
                                        "--quiet"])
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--model", "popular", "--quiet"])
        assert res.exit_code == 0, res.output
    finally:
        fit.fit_model = real
    assert seen == [1, threads.available_cores()]
    res = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--threads", "0"])
    assert res.exit_code == 2 and "--threads" in res.output


# ------------------------------------------------------------------------------ progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_plain_progress_prints_at_most_every_ten_seconds_and_at_the_end():
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(100, "ALS fit", "iteration", file=out, clock=clock)
    for t in (1, 2, 3):  # 30 steps over 3 s: nothing yet
        clock.t = t
        bar.update(10)
    assert out.getvalue() == ""
    clock.t = 10
    bar.update(20)  # 10 s: the first line
    bar.set_postfix(loss="0.1234")
    clock.t = 12
    bar.update(10)  # 12 s: too soon for another
    lines = out.getvalue().splitlines()
    assert lines == ["[ALS fit] 50/100 iteration (5.0 iteration/s, ETA 10s, elapsed 10s)"]
    bar.close()
    last = out.getvalue().splitlines()[-1]
    assert last == "[ALS fit] 60/100 iteration (5.0 iteration/s, ETA 8s, elapsed 12s) loss=0.1234"
    bar.close()  # closing twice prints nothing more
    assert len(out.getvalue().splitlines()) == 2


def test_progress_picks_lines_for_a_log_and_nothing_when_quiet():
    log = io.StringIO()
    assert isinstance(progress(10, "x", file=log), PlainProgress)
    quiet = progress(10, "x", enabled=False, file=log)
    quiet.update(5)
    quiet.close()
    assert log.getvalue() == ""


def test_cli_prints_plain_progress_lines_when_stderr_is_not_a_terminal(synthetic_dir, monkeypatch):
    import recvec.progress

    monkeypatch.setattr(recvec.progress, "PLAIN_EVERY_S", 0.0)  # a line at every step of this short run
    res = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--model", "als", "--iterations", "3"])
    assert res.exit_code == 0, res.output
    assert "[ALS fit] 1/3 iteration (" in res.stderr and "[ALS fit] 3/3 iteration (" in res.stderr
    assert "[loading data] 2/2 file" in res.stderr and "\r" not in res.stderr
    res = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir), "--model", "als", "--iterations", "3",
                                    "--quiet"])
    assert res.exit_code == 0 and res.stderr == ""
