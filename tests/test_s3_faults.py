"""S3 faults: every one a clear StorageError (CLI: 'Error: ...', exit code 2), never a hang or a
traceback, and never a credential in any output, error or log record.

- against the suite's SeaweedFS (auth enforced): wrong secret, unknown access key, missing bucket,
  missing key, through the CLI; credentials grepped out of stdout, stderr, --json and every log
  record (DEBUG, boto's loggers included);
- against a fresh short-lived SeaweedFS: stalled (SIGSTOP: read timeout) and killed by PID in the
  middle of a download;
- against a tiny local HTTP server on 127.0.0.1: transient 503s and bodies cut short, retried with
  backoff, and the attempts bounded.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import signal
import threading
import time
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from recvec.cli import main
from recvec.engine import storage
from recvec.engine.data import load_dataset
from recvec.engine.storage import StorageError

pytest.importorskip("boto3")

# ------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def data_bucket(s3_server, synthetic_dir):
    """A bucket with the synthetic dataset under ml/ and a zip of it at zips/ml.zip."""
    c = s3_server.client()
    bucket = s3_server.create_bucket()
    for f in sorted(synthetic_dir.iterdir()):
        c.put_object(Bucket=bucket, Key=f"ml/{f.name}", Body=f.read_bytes())
    return bucket


def _invoke(args: list[str]):
    return CliRunner().invoke(main, args)


def _no_secret_anywhere(texts: list[str], secrets: list[str]) -> None:
    for text in texts:
        for s in secrets:
            assert s not in text, f"a credential leaked into: {text[:300]!r}"


def _log_texts(caplog) -> list[str]:
    out = [caplog.text]
    for rec in caplog.records:
        out.append(rec.getMessage())
        out.append(repr(rec.args))
        if rec.exc_text:
            out.append(rec.exc_text)
    return out


# ------------------------------------------------------------------------------ CLI faults (SeaweedFS, auth on)


@pytest.mark.s3
@pytest.mark.parametrize("fault, env, uri, code_text", [
    ("wrong secret", {"AWS_SECRET_ACCESS_KEY": "WRONG-secret-value-abcdef123456"}, "s3://{b}/ml",
     "rejected the request signature"),
    ("unknown access key", {"AWS_ACCESS_KEY_ID": "nobody-knows-this-key-id"}, "s3://{b}/ml",
     "does not know the access key id"),
    ("missing bucket", {}, "s3://recvec-no-such-bucket-x/ml", "S3 bucket 'recvec-no-such-bucket-x' does not exist"),
    ("missing key", {}, "s3://{b}/zips/missing.zip", "S3 object s3://{b}/zips/missing.zip not found"),
    ("empty prefix", {}, "s3://{b}/nothing-here", "no files under s3://{b}/nothing-here"),
])
def test_cli_s3_faults_are_clear_and_secret_free(s3_env, data_bucket, monkeypatch, caplog, reliability_counts,
                                                 fault, env, uri, code_text):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    caplog.set_level(logging.DEBUG)
    t0 = time.monotonic()
    res = _invoke(["eval", "--data", uri.format(b=data_bucket), "--model", "popular", "--json"])
    assert time.monotonic() - t0 < 30
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)
    assert res.stderr.startswith("Error: ") and code_text.format(b=data_bucket) in res.stderr, res.stderr
    assert s3_env.endpoint_url in res.stderr  # says which server
    assert res.stdout == "" and "Traceback" not in res.output
    # secret keys: in no output and no log record. Access key ids (not secret; botocore's own DEBUG
    # log of the Authorization header shows them): in no output of ours.
    _no_secret_anywhere([res.stdout, res.stderr] + _log_texts(caplog),
                        [s3_env.secret_key, os.environ["AWS_SECRET_ACCESS_KEY"]])
    _no_secret_anywhere([res.stdout, res.stderr], [os.environ["AWS_ACCESS_KEY_ID"], s3_env.access_key])
    reliability_counts[f"S3 faults injected: {fault}"] += 1


@pytest.mark.s3
def test_cli_json_and_debug_logs_hold_no_credentials(s3_env, data_bucket, caplog, monkeypatch):
    """A successful S3 run with every logger at DEBUG: the secret appears in no output and no record."""
    caplog.set_level(logging.DEBUG)
    res = _invoke(["eval", "--data", f"s3://{data_bucket}/ml", "--model", "popular", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["model"] == "popular" and out["users"] > 0 and out["data"] == f"s3://{data_bucket}/ml"
    logs = _log_texts(caplog)
    assert any(r.name.startswith("botocore") for r in caplog.records)  # boto's own DEBUG logging was captured
    _no_secret_anywhere([res.stdout, res.stderr] + logs, [s3_env.secret_key])
    _no_secret_anywhere([res.stdout, res.stderr], [s3_env.access_key])
    # the same with the wrong secret, and the zip path
    caplog.clear()
    wrong = "WRONG-secret-value-zyx987654321"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    res = _invoke(["eval", "--data", f"s3://{data_bucket}/ml", "--json"])
    assert res.exit_code == 2 and "SignatureDoesNotMatch" not in res.stdout
    _no_secret_anywhere([res.stdout, res.stderr] + _log_texts(caplog), [wrong, s3_env.secret_key])


# ------------------------------------------------------------------------------ a server that stalls or dies


class _KillDuringBody:
    """Wraps a boto3 client: the first get_object of `key` reads `after` bytes of the body, then
    kills the server process by PID, so the rest of the download meets a dead server."""

    def __init__(self, client, proc, key: str, after: int = 1 << 20):
        self._c, self._proc, self._key, self._after = client, proc, key, after
        self.killed_at = None

    def get_object(self, **kw):
        resp = self._c.get_object(**kw)
        if kw["Key"] == self._key and self.killed_at is None:
            body = resp["Body"]
            head = body.read(self._after)
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
            self.killed_at = len(head)
            resp["Body"] = _Prefixed(head, body)
        return resp

    def __getattr__(self, name):
        return getattr(self._c, name)


class _Prefixed:
    def __init__(self, head: bytes, body):
        self._head, self._body = head, body

    def read(self, amt=None):
        return self._head + self._body.read()

    def close(self):
        self._body.close()


@pytest.mark.s3
def test_server_stalled_then_killed_mid_download(s3_env, s3_server_factory, tmp_path, reliability_counts):
    server, proc = s3_server_factory()
    c = server.client()
    bucket = server.create_bucket()
    # a valid ratings.dat of ~24 MB, so the download is in flight when the server dies
    rng = np.random.default_rng(0)
    n = 1_000_000
    users = np.repeat(np.arange(1, n // 100 + 1), 100)
    movies = np.tile(np.arange(1, 101), n // 100)
    lines = [f"{u}::{m}::{r}::{t}\n" for u, m, r, t in
             zip(users.tolist(), movies.tolist(), rng.integers(1, 6, n).tolist(), rng.integers(9e8, 1e9, n).tolist())]
    big = "".join(lines).encode()
    c.put_object(Bucket=bucket, Key="ml/ratings.dat", Body=big)
    c.put_object(Bucket=bucket, Key="ml/movies.dat",
                 Body="".join(f"{m}::Movie {m} (1990)::Drama\n" for m in range(1, 101)).encode())

    # 1. stalled: the process is stopped (SIGSTOP), so the TCP connection opens but nothing answers:
    #    a read timeout, not a hang
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        client = storage.s3_client(server.endpoint_url, connect_timeout=1, read_timeout=1, max_attempts=1)
        t0 = time.monotonic()
        with pytest.raises(StorageError) as ei:
            storage.read_bytes(f"s3://{bucket}/ml/movies.dat", client=client)
        assert time.monotonic() - t0 < 10
        assert ei.value.code == "ReadTimeout" and f"s3://{bucket}/ml/movies.dat" in str(ei.value)
        reliability_counts["S3 faults injected: server stalled (SIGSTOP)"] += 1
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    client = storage.s3_client(server.endpoint_url, max_attempts=1)
    assert storage.read_bytes(f"s3://{bucket}/ml/movies.dat", client=client).startswith(b"1::Movie 1")

    # 2. killed by PID after the first MiB of a 24 MB download
    killer = _KillDuringBody(client, proc, "ml/ratings.dat")
    t0 = time.monotonic()
    with pytest.raises(StorageError) as ei:
        storage.read_bytes(f"s3://{bucket}/ml/ratings.dat", client=killer)
    assert time.monotonic() - t0 < 20
    assert killer.killed_at == 1 << 20 and proc.poll() is not None
    assert ei.value.code == "DownloadInterrupted"
    assert f"broke off while trying to read s3://{bucket}/ml/ratings.dat" in str(ei.value)
    reliability_counts["S3 faults injected: server killed mid-download"] += 1

    # 3. the server is gone: loading (list, then get) fails fast and clearly, also with retries on
    t0 = time.monotonic()
    with pytest.raises(StorageError) as ei:
        load_dataset(f"s3://{bucket}/ml", endpoint_url=server.endpoint_url)
    assert ei.value.code == "EndpointUnreachable" and server.endpoint_url in str(ei.value)
    client = storage.s3_client(server.endpoint_url, connect_timeout=1, max_attempts=3)
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint"):
        storage.download_dir(f"s3://{bucket}/ml", tmp_path / "copy", client=client)
    assert time.monotonic() - t0 < 20
    assert not (tmp_path / "copy").exists() or not any((tmp_path / "copy").iterdir())
    reliability_counts["S3 faults injected: server gone between requests"] += 1


# ------------------------------------------------------------------------------ transient errors (local HTTP)


class _FlakyS3(http.server.ThreadingHTTPServer):
    """127.0.0.1 stand-in for S3 GET: `plan` lists what each request gets ('503', 'cut' = a body
    that stops half-way and the connection closes, 'ok'); after the plan, every request gets
    the last entry. It shuts itself down after `lifetime` seconds whatever happens."""

    daemon_threads = True

    def __init__(self, plan: list[str], body: bytes, lifetime: float = 60.0):
        super().__init__(("127.0.0.1", 0), _FlakyHandler)
        self.plan, self.body, self.requests = plan, body, []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.shutdown)
        self._timer.daemon = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        srv: _FlakyS3 = self.server  # type: ignore[assignment]
        srv.requests.append((time.monotonic(), self.path, "Authorization" in self.headers))
        what = srv.plan[min(len(srv.requests), len(srv.plan)) - 1]
        if what == "503":
            err = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
                   b"<Message>Please reduce your request rate.</Message></Error>")
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(err)))
            self.end_headers()
            self.wfile.write(err)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(srv.body)))
        if what == "cut":
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(srv.body[: len(srv.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.end_headers()
        self.wfile.write(srv.body)


@pytest.fixture
def fake_creds(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fake-access-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key-0123456789")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


BODY = bytes(range(256)) * 64  # 16 KiB


def test_503_twice_then_ok_is_retried_with_backoff(fake_creds, reliability_counts):
    with _FlakyS3(["503", "503", "ok"], BODY) as srv:
        client = storage.s3_client(srv.url)
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": storage.DEFAULT_MAX_ATTEMPTS}
        assert storage.read_bytes("s3://bucket/data/file.bin", client=client) == BODY
    assert len(srv.requests) == 3 and all(p == "/bucket/data/file.bin" and auth for _, p, auth in srv.requests)
    assert srv.requests[-1][0] - srv.requests[0][0] < 10
    reliability_counts["S3 faults injected: transient 503 (retried)"] += 2


def test_503_forever_gives_up_after_the_attempts(fake_creds, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    with _FlakyS3(["503"], BODY) as srv:
        t0 = time.monotonic()
        with pytest.raises(StorageError) as ei:
            load_dataset("s3://bucket/data.zip", endpoint_url=srv.url)
        assert time.monotonic() - t0 < 10
    assert len(srv.requests) == 3  # AWS_MAX_ATTEMPTS counts every attempt, the first included
    assert ei.value.code == "ServiceUnavailable"
    assert "S3 error ServiceUnavailable while trying to read s3://bucket/data.zip" in str(ei.value)
    assert "fake-secret-key-0123456789" not in str(ei.value)


def test_body_cut_short_is_fetched_again(fake_creds, reliability_counts, tmp_path):
    with _FlakyS3(["cut", "ok"], BODY) as srv:
        assert storage.read_bytes("s3://bucket/k", client=storage.s3_client(srv.url)) == BODY
    assert len(srv.requests) == 2
    with _FlakyS3(["cut"], BODY) as srv:
        with pytest.raises(StorageError) as ei:
            storage.read_bytes("s3://bucket/k", client=storage.s3_client(srv.url, max_attempts=2))
    assert len(srv.requests) == 2 and ei.value.code == "DownloadInterrupted"
    assert "broke off while trying to read s3://bucket/k" in str(ei.value)
    reliability_counts["S3 faults injected: body cut short"] += 3


def test_zip_cut_short_never_loads(fake_creds, tmp_path, synthetic_dir):
    """A truncated zip body is refetched; if every attempt is cut, a clear error, not a partial dataset."""
    z = tmp_path / "ml.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(synthetic_dir.iterdir()):
            zf.write(f, f"ml-1m/{f.name}")
    with _FlakyS3(["cut"], z.read_bytes()) as srv:
        with pytest.raises(StorageError, match="broke off"):
            load_dataset("s3://bucket/ml.zip", endpoint_url=srv.url)
    assert len(srv.requests) == storage.DEFAULT_MAX_ATTEMPTS


def test_timeouts_are_bounded_and_overridable(monkeypatch):
    monkeypatch.delenv("RECVEC_S3_CONNECT_TIMEOUT", raising=False)
    monkeypatch.delenv("RECVEC_S3_READ_TIMEOUT", raising=False)
    c = storage.s3_client("http://127.0.0.1:9")
    assert (c.meta.config.connect_timeout, c.meta.config.read_timeout) == (5.0, 30.0)
    monkeypatch.setenv("RECVEC_S3_CONNECT_TIMEOUT", "2.5")
    monkeypatch.setenv("RECVEC_S3_READ_TIMEOUT", "7")
    c = storage.s3_client("http://127.0.0.1:9")
    assert (c.meta.config.connect_timeout, c.meta.config.read_timeout) == (2.5, 7.0)
    c = storage.s3_client("http://127.0.0.1:9", connect_timeout=1, read_timeout=2, max_attempts=1)
    assert (c.meta.config.connect_timeout, c.meta.config.read_timeout) == (1, 2)
    assert c.meta.config.retries["total_max_attempts"] == 1
    for env, value in (("RECVEC_S3_READ_TIMEOUT", "soon"), ("RECVEC_S3_READ_TIMEOUT", "0"), ("AWS_MAX_ATTEMPTS", "-1")):
        monkeypatch.setenv(env, value)
        with pytest.raises(StorageError, match=env):
            storage.s3_client("http://127.0.0.1:9")
        monkeypatch.delenv(env)
