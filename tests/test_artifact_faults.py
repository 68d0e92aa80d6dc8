"""Atomic publishing under SIGKILL: a build killed at any point mid-write, locally or to S3, leaves
the destination holding either the previous complete artifact (same answers) or, when there was
none, nothing that loads -- never a partial or mixed artifact that loads.

Two kinds of kill:

- **Deterministic sweeps.** A "zygote" subprocess imports numpy/FAISS/boto3 once and forks one child
  per kill point; the child runs ``save_artifact`` with its file writes, renames, deletes and S3
  requests wrapped so that at point *i* it SIGKILLs itself: before each file write, half-way
  through it (half the bytes on disk), before the publishing rename / exchange (and the fallback's
  two renames), before and half-way through removing the old version; on S3 before each request and
  half-way through each PUT's body (half the bytes sent, then the connection dies). A dry run lists
  the points; every one is then killed, and the test loads the destination. Kills before the commit
  (the rename locally, the manifest PUT on S3) must leave the previous artifact, kills after it the
  new one. After each kill a normal save to the same destination must succeed and leave no stray
  objects in the artifact's S3 prefix.
- **Real CLI builds** (``recvec build`` in a subprocess, made to pause after its N-th artifact file
  by a monkeypatch in that subprocess only) killed from outside with SIGKILL once N files have
  appeared in its temp directory or N new objects under its S3 prefix.

Kill counts go to ``reliability_counts`` ("faults injected: ...").
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from recvec.errors import ArtifactError
from recvec.indexes.artifact import Artifact, load_artifact, save_artifact
from recvec.indexes.backends.faiss_build import build_index
from recvec.indexes.spec import IndexSpec

TESTS = Path(__file__).resolve().parent
N, D = 300, 16
PREV_SEED, NEW_SEED = 1, 2
ZYGOTE_TIMEOUT_S = 60.0


def make(seed: int) -> dict:
    """The parts of a small flat artifact (arrays, catalog, manifest); seeds give different answers."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((N, D)).astype(np.float32)
    return dict(index=build_index(vectors, IndexSpec.parse("flat"), seed=seed),
                item_ids=np.arange(1, N + 1, dtype=np.int64) * (seed + 3),
                arrays={"item_vectors": vectors, "gram": (vectors.T @ vectors).astype(np.float32),
                        "popularity": rng.random(N).astype(np.float32)},
                catalog={"titles": [f"Movie {seed}-{i}" for i in range(N)]},
                manifest={"model": {"kind": "als", "params": {"seed": seed}}, "normalized": False,
                          "user_encoder": {"kind": "mean"}})


def answers(a: Artifact) -> tuple:
    """Everything a query can see of an artifact: search results (with and without exclusions),
    ids, arrays, catalog."""
    q = np.random.default_rng(7).standard_normal((6, D)).astype(np.float32)
    r1, s1 = a.index.search(q, 10)
    r2, s2 = a.index.search(q, 10, exclude=[np.arange(i * 20, i * 20 + 30) for i in range(6)])
    arrays = tuple((k, v.tobytes()) for k, v in sorted(a.arrays.items()))
    return (a.item_ids.tobytes(), r1.tobytes(), s1.tobytes(), r2.tobytes(), s2.tobytes(), arrays,
            json.dumps(a.catalog, sort_keys=True))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, tuple]:
    """Answers of the previous and of the new artifact, each saved cleanly and loaded."""
    root = tmp_path_factory.mktemp("reference")
    out = {}
    for name, seed in (("previous", PREV_SEED), ("new", NEW_SEED)):
        save_artifact(root / name, **make(seed))
        out[name] = answers(load_artifact(root / name))
    assert out["previous"] != out["new"]
    return out


def outcome(dest: str | Path, reference: dict, endpoint_url: str | None = None) -> str:
    """'previous' / 'new' when dest loads as that complete artifact, 'none' when it is refused; a
    load that gives anything else (a partial or mixed artifact) fails the test."""
    try:
        a = load_artifact(dest, endpoint_url=endpoint_url)
    except ArtifactError as e:
        assert "Traceback" not in str(e)
        return "none"
    got = answers(a)
    for name, want in reference.items():
        if got == want:
            return name
    pytest.fail(f"{dest} loaded as an artifact that is neither the previous nor the new one")


# ---------------------------------------------------------------------------- the zygote (subprocess side)


def _zygote() -> None:
    """Subprocess main: read one JSON command per line, fork a child that saves the new artifact and
    SIGKILLs itself at point ``kill_at`` (-1: never), answer with how the child ended."""
    import traceback

    import faiss  # noqa: F401  (imported once, before forking)

    if os.environ.get("AWS_ENDPOINT_URL"):
        import botocore.awsrequest  # noqa: F401
        import botocore.client  # noqa: F401

        from recvec.engine import storage

        storage.s3_client()  # parses the S3 API model once, before forking (no request is made)
    parts = make(NEW_SEED)
    for line in sys.stdin:
        cmd = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _child(cmd, parts)
            except BaseException:
                traceback.print_exc()
                code = 3
            sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(json.dumps({
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}) + "\n")
        sys.stdout.flush()


def _child(cmd: dict, parts: dict) -> None:
    import itertools
    import shutil

    from recvec.engine import storage

    log = open(cmd["log"], "w")
    counter = itertools.count()
    dest = cmd["dest"]

    def point(label: str) -> None:
        log.write(label + "\n")
        log.flush()
        if next(counter) == cmd["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)

    if cmd["s3"]:
        _hook_s3(point)
    else:
        def write_bytes(self, data):
            point(f"before write {self.name}")
            with open(self, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                point(f"mid write {self.name}")
                f.write(data[len(data) // 2:])
            return len(data)

        def write_text(self, text, encoding=None, errors=None, newline=None):
            return write_bytes(self, text.encode(encoding or "utf-8"))

        def write_durable(path, data):
            write_bytes(Path(path), data)

        Path.write_bytes, Path.write_text = write_bytes, write_text
        storage.write_durable = write_durable
        real_exchange, real_rename, real_rmtree = storage._rename_exchange, os.rename, shutil.rmtree

        def exchange(a, b):
            if not cmd["exchange"]:
                return False
            point("before exchange")
            return real_exchange(a, b)

        def rename(a, b):
            role = "final" if Path(b) == Path(dest) else "backup" if Path(b).name.endswith(".old") else "other"
            point(f"before rename -> {role}")
            return real_rename(a, b)

        def rmtree(p, *a, **kw):
            point("before rmtree")
            files = sorted(Path(p).iterdir()) if Path(p).is_dir() else []
            for f in files[: len(files) // 2]:
                f.unlink()
            if files:
                point("mid rmtree")
            return real_rmtree(p, *a, **kw)

        storage._rename_exchange, os.rename, shutil.rmtree = exchange, rename, rmtree
    save_artifact(dest, **parts, endpoint_url=cmd.get("endpoint_url"))
    point("end")


def _hook_s3(point) -> None:
    """Kill points before every S3 request and half-way through every PUT body."""
    from botocore.awsrequest import AWSConnection
    from botocore.client import BaseClient

    real_call, real_send = BaseClient._make_api_call, AWSConnection.send

    def name_of(key: str) -> str:  # the object's name in the prefix, its upload tag (if any) masked
        return re.sub(r"\.[0-9a-f]{12}\.", ".<tag>.", key.split("?")[0].rsplit("/", 1)[-1])

    def call(self, op, params):
        point(f"before {op} {name_of(params.get('Key') or params.get('Prefix') or '')}")
        return real_call(self, op, params)

    def send(self, data):
        if isinstance(data, (bytes, bytearray)) and data.startswith(b"PUT "):
            self._kill_put = name_of(data.split(b" ", 2)[1].decode())
            return real_send(self, data)
        name = getattr(self, "_kill_put", None)
        if name and data:
            self._kill_put = None
            half = len(data) // 2
            real_send(self, data[:half])
            point(f"mid PUT {name}")
            return real_send(self, data[half:])
        return real_send(self, data)

    BaseClient._make_api_call, AWSConnection.send = call, send


# ---------------------------------------------------------------------------- the zygote (test side)


class Zygote:
    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.stderr = open(root / "zygote.stderr", "wb")
        boot = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_artifact_faults as t; t._zygote()"
        # a killed save leaves its staging directory behind: keep it in the test's folder, not in /tmp
        env = {**env, "TMPDIR": str(root)}
        self.proc = subprocess.Popen([sys.executable, "-c", boot], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=env, cwd=root)

    def run(self, dest: str, kill_at: int, **kw) -> tuple[dict, list[str]]:
        log = self.root / f"points-{uuid.uuid4().hex[:8]}.log"
        cmd = {"dest": str(dest), "kill_at": kill_at, "log": str(log), "s3": False, "exchange": True, **kw}
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], ZYGOTE_TIMEOUT_S)
        if not ready:
            pytest.fail(f"the save child did not finish within {ZYGOTE_TIMEOUT_S:.0f} s: {self.tail()}")
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail(f"the zygote died: {self.tail()}")
        labels = log.read_text().splitlines()
        log.unlink()
        return json.loads(line), labels

    def tail(self) -> str:
        self.stderr.flush()
        return (self.root / "zygote.stderr").read_text(errors="replace")[-3000:]

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.stderr.close()


def _zygote_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", **(extra or {}))
    return env


@pytest.fixture(scope="module")
def local_zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp("zygote-local"), _zygote_env())
    yield z
    z.close()


@pytest.fixture(scope="module")
def s3_zygote(s3_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("zygote-s3")
    z = Zygote(root, _zygote_env({**s3_server.env(), "AWS_MAX_ATTEMPTS": "1", "AWS_EC2_METADATA_DISABLED": "true",
                                  "AWS_CONFIG_FILE": str(root / "none"),
                                  "AWS_SHARED_CREDENTIALS_FILE": str(root / "none")}))
    yield z
    z.close()


def _sweep(zygote: Zygote, new_dest, prepare, check_after, reference: dict, *, commit: str,
           endpoint_url: str | None = None, **kw) -> dict[str, int]:
    """Kill the save at every point of a dry run; returns outcome counts."""
    dry_dest = new_dest()
    if prepare is not None:
        prepare(dry_dest)
    res, labels = zygote.run(dry_dest, -1, **kw)
    assert res == {"signal": None, "exit": 0}, zygote.tail()
    assert outcome(dry_dest, reference, endpoint_url) == "new"
    assert labels[-1] == "end" and commit in labels, labels
    commit_at = labels.index(commit)
    seen: dict[str, int] = {}
    had_previous = prepare is not None
    for i, label in enumerate(labels):
        dest = new_dest()
        if prepare is not None:
            prepare(dest)
        res, got = zygote.run(dest, i, **kw)
        assert res["signal"] == signal.SIGKILL, (label, res, zygote.tail())
        assert got[-1] == label, (i, label, got)  # the kill hit the point meant (the run is deterministic)
        result = outcome(dest, reference, endpoint_url)
        want = "new" if i > commit_at else "previous" if had_previous else "none"
        assert result == want, f"killed at point {i} ({label}): destination is {result!r}, expected {want!r}"
        seen[result] = seen.get(result, 0) + 1
        check_after(dest)
    return {"points": len(labels), **seen}


def _count(reliability_counts, where: str, stats: dict[str, int]) -> None:
    reliability_counts[f"faults injected: save killed (SIGKILL) mid-write, {where}"] += stats["points"]
    for result in ("previous", "new", "none"):
        reliability_counts[f"kill outcomes: {result}" + {"previous": " artifact intact",
                                                          "new": " artifact complete",
                                                          "none": " (nothing before, nothing loads)"}[result]] \
            += stats.get(result, 0)


# ---------------------------------------------------------------------------- local sweeps


@pytest.mark.parametrize("scenario", ["over previous", "over previous, no rename exchange", "fresh"])
def test_local_save_killed_at_every_point(local_zygote, reference, tmp_path, reliability_counts, scenario):
    exchange = "no rename exchange" not in scenario
    dirs = iter(range(10_000))

    def new_dest() -> Path:
        return tmp_path / f"d{next(dirs)}" / "artifact"

    def prepare(dest: Path) -> None:
        save_artifact(dest, **make(PREV_SEED))

    def check_after(dest: Path) -> None:
        # recovery: the next save succeeds over whatever the kill left, and only the artifact is there
        save_artifact(dest, **make(NEW_SEED))
        assert outcome(dest, reference) == "new"
        m = json.loads((dest / "manifest.json").read_text())
        assert {p.name for p in dest.iterdir()} == {*m["files"], "manifest.json"}
        assert not (dest.parent / f".{dest.name}.old").exists()

    stats = _sweep(local_zygote, new_dest, None if scenario == "fresh" else prepare, check_after, reference,
                   commit="before exchange" if exchange and scenario != "fresh" else "before rename -> final",
                   exchange=exchange)
    assert stats["points"] >= 12
    _count(reliability_counts, "local", stats)


# ---------------------------------------------------------------------------- S3 sweeps


@pytest.mark.s3
@pytest.mark.parametrize("scenario", ["over previous", "fresh"])
def test_s3_save_killed_at_every_point(s3_env, s3_zygote, reference, reliability_counts, scenario):
    ep = s3_env.endpoint_url
    bucket = s3_env.create_bucket()
    client = s3_env.client()
    prefixes = iter(range(10_000))

    def new_dest() -> str:
        return f"s3://{bucket}/p{next(prefixes)}/artifact"

    def prepare(dest: str) -> None:
        save_artifact(dest, **make(PREV_SEED), endpoint_url=ep)

    def check_after(dest: str) -> None:
        save_artifact(dest, **make(NEW_SEED), endpoint_url=ep)
        assert outcome(dest, reference, ep) == "new"
        prefix = dest.split("/", 3)[3]
        keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])}
        m = json.loads(client.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read())
        assert keys == {f"{prefix}/{name}" for name in [*m["files"], "manifest.json"]}, "stray objects left"

    stats = _sweep(s3_zygote, new_dest, prepare if scenario == "over previous" else None, check_after, reference,
                   commit="mid PUT manifest.json", endpoint_url=ep, s3=True)
    assert stats["points"] >= 12
    _count(reliability_counts, "S3", stats)


# ---------------------------------------------------------------------------- real CLI builds, killed from outside

_HOLD_CLI = """
import os, sys, time, pathlib
hold_after = int(os.environ["KILLTEST_HOLD_AFTER"])  # 0: never hold
written = [0]
def wrote():  # an artifact file was written (locally) or uploaded (S3): after the N-th, wait to be killed
    written[0] += 1
    if written[0] == hold_after:
        with open(os.environ["KILLTEST_HELD"], "w") as f:  # tell the test where we stand
            f.write(str(written[0]))
        time.sleep(300)
def counted(fn):
    def wrapper(self, *a, **kw):
        out = fn(self, *a, **kw)
        if ".tmp-" in self.parent.name and not os.environ.get("AWS_ENDPOINT_URL"):
            wrote()
        return out
    return wrapper
pathlib.Path.write_bytes = counted(pathlib.Path.write_bytes)
pathlib.Path.write_text = counted(pathlib.Path.write_text)
from recvec.engine import storage
real_durable = storage.write_durable
def durable(path, data):
    real_durable(path, data)
    if ".tmp-" in pathlib.Path(path).parent.name and not os.environ.get("AWS_ENDPOINT_URL"):
        wrote()
storage.write_durable = durable
if os.environ.get("AWS_ENDPOINT_URL"):
    import botocore.client
    real = botocore.client.BaseClient._make_api_call
    def call(self, op, params):
        out = real(self, op, params)
        if op == "PutObject":
            wrote()
        return out
    botocore.client.BaseClient._make_api_call = call
from recvec.cli import main
main(sys.argv[1:], prog_name="recvec")
"""


def _cli(synthetic_dir: Path, out: str, *, factors: int, hold_after: int = 0, work: Path | None = None):
    """``recvec build`` in a subprocess. Without hold_after: the process. With hold_after=N it stops
    after writing (uploading) its N-th artifact file and waits there to be killed: (process, held())
    where held() says whether it is there yet."""
    args = ["build", "--data", str(synthetic_dir), "--out", out, "--factors", str(factors), "--iterations", "2",
            "--quiet"]
    held = (work or Path(".")) / f"held-{uuid.uuid4().hex[:8]}"  # written only when hold_after is set
    env = {**os.environ, "KILLTEST_HOLD_AFTER": str(hold_after), "KILLTEST_HELD": str(held),
           "OPENBLAS_NUM_THREADS": "1"}
    if work is not None:  # a killed build leaves its staging directory behind: keep it in the test's folder
        env["TMPDIR"] = str(work)
    p = subprocess.Popen([sys.executable, "-c", _HOLD_CLI, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    return p if not hold_after else (p, held.exists)


def _finish(p: subprocess.Popen) -> None:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode(errors="replace")[-2000:]


def _kill_all_when(runs: list[tuple[subprocess.Popen, object, str]], timeout: float = 60.0) -> None:
    """SIGKILL each build (runs: (process, held()), observed(), what) from outside as soon as it holds
    there, after checking that what it wrote is visible (observed())."""
    deadline = time.monotonic() + timeout
    pending = list(runs)
    try:
        while pending:
            for run in list(pending):
                (p, held), observed, what = run
                if held():
                    assert observed(), f"the build paused but {what} is not what the destination shows"
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(timeout=10)
                    assert p.returncode == -signal.SIGKILL
                    pending.remove(run)
                elif p.poll() is not None:
                    _, err = p.communicate()
                    pytest.fail(f"a build ended (code {p.returncode}) before {what}: "
                                f"{err.decode(errors='replace')[-1500:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for: {', '.join(what for _, _, what in pending)}")
            time.sleep(0.005)
    finally:
        for (p, _), _, _ in runs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


def _served_answers(dest: str, endpoint_url: str | None = None) -> tuple:
    from recvec.indexes.build import open_index

    loaded = open_index(dest, endpoint_url=endpoint_url)
    ids = loaded.artifact.item_ids
    histories = [ids[i: i + 5].tolist() for i in range(0, 60, 6)]
    recs = loaded.recommender.recommend_batch(histories, 10)
    return tuple((r.ids.tobytes(), r.scores.tobytes()) for r in recs)


def test_cli_build_killed_mid_write_locally(tmp_path, synthetic_dir, reliability_counts):
    """Builds over copies of a previous artifact killed after the first file and after the last one
    (every file written, not yet published), and one with no previous artifact, all at once."""
    import shutil

    fresh = tmp_path / "fresh" / "art"
    fresh_run = (_cli(synthetic_dir, str(fresh), factors=16, hold_after=2, work=tmp_path),
                 lambda: any(len(list(t.iterdir())) >= 2 for t in fresh.parent.glob(".art.tmp-*")),
                 "2 files written (no previous artifact)")
    prev = tmp_path / "prev" / "art"
    building = _cli(synthetic_dir, str(prev), factors=8)
    _kill_all_when([fresh_run])
    _finish(building)
    previous = _served_answers(str(prev))
    n_files = len(json.loads((prev / "manifest.json").read_text())["files"]) + 1
    runs, over = [fresh_run], {}
    for after in (1, n_files):
        dest = tmp_path / f"after{after}" / "art"
        shutil.copytree(prev, dest)
        over[after] = dest

        def written(parent=dest.parent, after=after) -> bool:
            return any(len(list(t.iterdir())) >= after for t in parent.glob(".art.tmp-*"))

        runs.append((_cli(synthetic_dir, str(dest), factors=16, hold_after=after, work=tmp_path), written,
                     f"{after} files written"))
    with pytest.raises(ArtifactError, match="no artifact at"):
        load_artifact(fresh)
    rebuild = _cli(synthetic_dir, str(fresh), factors=16)  # over the killed build's debris
    _kill_all_when(runs[1:])
    for after, dest in over.items():
        assert _served_answers(str(dest)) == previous, f"killed after {after} files: the previous artifact changed"
    _finish(rebuild)
    assert _served_answers(str(fresh)) != previous
    m = json.loads((fresh / "manifest.json").read_text())
    assert {p.name for p in fresh.iterdir()} == {*m["files"], "manifest.json"}
    reliability_counts["faults injected: CLI build killed (SIGKILL) from outside, local"] += len(runs)


@pytest.mark.s3
def test_cli_build_killed_mid_upload_to_s3(s3_env, synthetic_dir, tmp_path, reliability_counts):
    """The same against S3: killed after the first new object and after every data file (manifest
    not yet up), over copies of a previous artifact, and one on an empty prefix."""
    ep = s3_env.endpoint_url
    bucket = s3_env.create_bucket()
    client = s3_env.client()

    def objects(prefix: str) -> set[tuple[str, str]]:
        return {(o["Key"], o["ETag"]) for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}

    fresh = f"s3://{bucket}/fresh/art"
    fresh_run = (_cli(synthetic_dir, fresh, factors=16, hold_after=2, work=tmp_path),
                 lambda: len(objects("fresh/art/")) >= 2,
                 "2 objects uploaded (no previous artifact)")
    building = _cli(synthetic_dir, f"s3://{bucket}/prev/art", factors=8)
    _kill_all_when([fresh_run])
    _finish(building)
    previous = _served_answers(f"s3://{bucket}/prev/art", ep)
    prev_keys = sorted(k for k, _ in objects("prev/art/"))
    runs, over = [fresh_run], {}
    # the upload journal goes first, then the data files, the manifest last: after len(prev_keys) PUTs
    # every data file is up and the manifest is not
    for after in (1, len(prev_keys)):
        prefix = f"after{after}/art/"
        for key in prev_keys:
            client.copy_object(Bucket=bucket, Key=prefix + key.rsplit("/", 1)[-1],
                               CopySource={"Bucket": bucket, "Key": key})
        before = objects(prefix)
        over[after] = f"s3://{bucket}/{prefix.rstrip('/')}"
        runs.append((_cli(synthetic_dir, over[after], factors=16, hold_after=after, work=tmp_path),
                     lambda prefix=prefix, before=before, after=after: len(objects(prefix) - before) >= after,
                     f"{after} objects uploaded"))
    with pytest.raises(ArtifactError, match="no artifact at"):
        load_artifact(fresh, endpoint_url=ep)
    rebuild = _cli(synthetic_dir, fresh, factors=16)  # over the killed upload's debris
    _kill_all_when(runs[1:])
    for after, uri in over.items():
        assert _served_answers(uri, ep) == previous, f"killed after {after} uploads: the previous artifact changed"
    _finish(rebuild)
    assert _served_answers(fresh, ep) != previous
    m = json.loads(client.get_object(Bucket=bucket, Key="fresh/art/manifest.json")["Body"].read())
    assert {k for k, _ in objects("fresh/art/")} == {f"fresh/art/{n}" for n in [*m["files"], "manifest.json"]}
    reliability_counts["faults injected: CLI build killed (SIGKILL) from outside, S3"] += len(runs)
