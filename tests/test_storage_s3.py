"""storage.py: local helpers (safe names, atomic publish) and S3 against a real SeaweedFS server."""

from __future__ import annotations

import os
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recvec.engine import storage
from recvec.engine.data import load_dataset
from recvec.engine.storage import StorageError
from recvec.errors import DataError, RecvecError

# ------------------------------------------------------------------------------ local (no server)


def test_parse_and_is_s3():
    assert storage.is_s3("s3://b/x") and not storage.is_s3("/tmp/x") and not storage.is_s3(Path("s3:/x"))
    assert storage.parse_s3("s3://bucket/a/b/") == ("bucket", "a/b")
    assert storage.parse_s3("s3://bucket") == ("bucket", "")
    with pytest.raises(StorageError, match="no bucket"):
        storage.parse_s3("s3:///x")
    with pytest.raises(StorageError, match="not an S3 URI"):
        storage.parse_s3("/local/path")


@pytest.mark.parametrize("name", ["../x", "a/../../b", "/etc/passwd", "a//b", "", "..", "C:/x", "a\\..\\..\\b"])
def test_safe_relpath_rejects_escapes(name):
    with pytest.raises(StorageError, match="escape"):
        storage.safe_relpath(name)


def test_safe_relpath_accepts_nested():
    assert storage.safe_relpath("a/b/c.npy").parts == ("a", "b", "c.npy")
    assert storage.safe_relpath("./a").parts == ("a",)


def test_local_read_list_download(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"A")
    (src / "sub" / "b.txt").write_bytes(b"B")
    assert storage.list_files(src) == ["a.txt", "sub/b.txt"]
    assert storage.list_files(src, recursive=False) == ["a.txt"]
    assert storage.read_bytes(src / "sub" / "b.txt") == b"B"
    out = storage.download_dir(str(src), tmp_path / "dst")
    assert (out / "sub" / "b.txt").read_bytes() == b"B"
    with pytest.raises(StorageError, match="file not found"):
        storage.read_bytes(tmp_path / "missing")
    with pytest.raises(StorageError, match="directory not found"):
        storage.list_files(tmp_path / "missing")


def _make_dir(path: Path, content: dict[str, bytes]) -> Path:
    path.mkdir(parents=True)
    for name, data in content.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def test_publish_local_dir_creates_and_replaces(tmp_path):
    final = tmp_path / "artifact"
    v1 = storage.sibling_tmp_dir(final)
    (v1 / "manifest.json").write_bytes(b"1")
    (v1 / "old.bin").write_bytes(b"o")
    storage.publish_local_dir(v1, final)
    assert (final / "manifest.json").read_bytes() == b"1"
    v2 = storage.sibling_tmp_dir(final)
    (v2 / "manifest.json").write_bytes(b"2")
    storage.publish_local_dir(v2, final)
    assert sorted(p.name for p in final.iterdir()) == ["manifest.json"]  # the old files are gone
    assert (final / "manifest.json").read_bytes() == b"2"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]  # no temp or backup dirs left


def test_publish_fallback_without_rename_exchange(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "_rename_exchange", lambda a, b: False)
    final = _make_dir(tmp_path / "art", {"m": b"old"})
    new = storage.sibling_tmp_dir(final)
    (new / "m").write_bytes(b"new")
    storage.publish_local_dir(new, final)
    assert (final / "m").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_recover_after_crash_between_renames(tmp_path):
    # the fallback path crashed after moving the old version aside: the old one comes back
    backup = _make_dir(tmp_path / ".art.old", {"m": b"old"})
    storage.recover_local_dir(tmp_path / "art")
    assert (tmp_path / "art" / "m").read_bytes() == b"old" and not backup.exists()


def test_publish_from_another_directory(tmp_path):
    elsewhere = _make_dir(tmp_path / "build" / "out", {"f": b"x"})
    final = tmp_path / "published" / "art"
    storage.publish_local_dir(elsewhere, final)
    assert (final / "f").read_bytes() == b"x" and not elsewhere.exists()


def test_default_client_retries_with_backoff(monkeypatch):
    pytest.importorskip("boto3")
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    c = storage.s3_client("http://127.0.0.1:9")
    assert c.meta.config.retries["mode"] == "standard"
    assert c.meta.config.retries.get("total_max_attempts", c.meta.config.retries.get("max_attempts")) >= 5
    assert c.meta.endpoint_url == "http://127.0.0.1:9"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:10")
    assert storage.s3_client().meta.endpoint_url == "http://127.0.0.1:10"


class _Recorder:
    """Wraps a boto3 client and records the keys of put/get calls in order."""

    def __init__(self, client):
        self._c = client
        self.puts: list[str] = []
        self.gets: list[str] = []

    def put_object(self, **kw):
        self.puts.append(kw["Key"])
        return self._c.put_object(**kw)

    def get_object(self, **kw):
        self.gets.append(kw["Key"])
        return self._c.get_object(**kw)

    def __getattr__(self, name):
        return getattr(self._c, name)


class _FakeListing:
    """A client whose listing holds a key that would escape the target directory."""

    meta = type("M", (), {"endpoint_url": "http://fake"})()

    def list_objects_v2(self, **kw):
        return {"Contents": [{"Key": "pfx/ok.txt"}, {"Key": "pfx/../../evil.txt"}], "IsTruncated": False}

    def get_object(self, **kw):  # pragma: no cover - must not be reached
        raise AssertionError("downloaded before checking names")


def test_download_refuses_escaping_keys(tmp_path):
    with pytest.raises(StorageError, match="escape"):
        storage.download_dir("s3://bucket/pfx", tmp_path / "out", client=_FakeListing())
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil.txt").exists()


# ------------------------------------------------------------------------------ S3 (SeaweedFS)

@pytest.fixture
def uploaded(s3_env, synthetic_dir):
    """The synthetic dataset uploaded under s3://<fresh bucket>/movielens/ml-1m."""
    bucket = s3_env.create_bucket()
    uri = f"s3://{bucket}/movielens/ml-1m"
    storage.upload_dir(synthetic_dir, uri, endpoint_url=s3_env.endpoint_url)
    return uri


def _same(a, b):
    for name in ("users", "items", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(a.ratings, name), getattr(b.ratings, name))
    np.testing.assert_array_equal(a.catalog.ids, b.catalog.ids)
    assert a.catalog.titles == b.catalog.titles and a.catalog.genres == b.catalog.genres
    assert a.format == b.format and a.fingerprint == b.fingerprint


@pytest.mark.s3
def test_s3_load_equals_local(uploaded, s3_env, synthetic_dir, monkeypatch):
    local = load_dataset(str(synthetic_dir))
    remote = load_dataset(uploaded, endpoint_url=s3_env.endpoint_url)
    _same(remote, local)
    assert remote.source == uploaded
    # the endpoint can also come from AWS_ENDPOINT_URL (set by s3_env); a trailing '/' is fine
    _same(load_dataset(uploaded + "/"), local)
    assert sorted(storage.list_files(uploaded)) == ["movies.dat", "ratings.dat", "users.dat"]


@pytest.mark.s3
def test_s3_zip_object(s3_env, synthetic_dir, tmp_path):
    z = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in synthetic_dir.iterdir():
            zf.write(f, f"ml-1m/{f.name}")
    bucket = s3_env.create_bucket()
    s3_env.client().put_object(Bucket=bucket, Key="zips/ml-1m.zip", Body=z.read_bytes())
    _same(load_dataset(f"s3://{bucket}/zips/ml-1m.zip"), load_dataset(str(synthetic_dir)))


@pytest.mark.s3
def test_upload_dir_puts_manifest_last_and_download_reads_it_first(s3_env, tmp_path):
    src = _make_dir(tmp_path / "art", {"manifest.json": b"{}", "a.npy": b"a", "z.faiss": b"z", "sub/x.bin": b"x"})
    bucket = s3_env.create_bucket()
    rec = _Recorder(storage.s3_client())
    order = storage.upload_dir(src, f"s3://{bucket}/idx/v1", client=rec)
    assert rec.puts[-1] == "idx/v1/manifest.json" and order[-1] == "manifest.json"
    assert sorted(rec.puts) == sorted(f"idx/v1/{n}" for n in ("manifest.json", "a.npy", "z.faiss", "sub/x.bin"))
    rec2 = _Recorder(storage.s3_client())
    out = storage.download_dir(f"s3://{bucket}/idx/v1", tmp_path / "copy", client=rec2)
    assert rec2.gets[0] == "idx/v1/manifest.json"
    assert storage.list_files(out) == storage.list_files(src)
    assert all((out / n).read_bytes() == (src / n).read_bytes() for n in storage.list_files(src))
    assert storage.read_bytes(f"s3://{bucket}/idx/v1/sub/x.bin") == b"x"
    assert storage.list_files(f"s3://{bucket}/idx/v1", recursive=False) == ["a.npy", "manifest.json", "z.faiss"]


@pytest.mark.s3
def test_missing_bucket(s3_env):
    with pytest.raises(StorageError) as ei:
        load_dataset("s3://recvec-no-such-bucket/ml-1m")
    assert ei.value.code == "NoSuchBucket"
    assert "bucket 'recvec-no-such-bucket' does not exist" in str(ei.value)
    assert s3_env.endpoint_url in str(ei.value)


@pytest.mark.s3
def test_missing_key_and_missing_files(s3_env, uploaded, tmp_path):
    bucket = storage.parse_s3(uploaded)[0]
    with pytest.raises(StorageError, match=rf"S3 object s3://{bucket}/nothing/here\.dat not found") as ei:
        storage.read_bytes(f"s3://{bucket}/nothing/here.dat")
    assert ei.value.code == "NoSuchKey"
    with pytest.raises(DataError, match=rf"no files under s3://{bucket}/empty-prefix"):
        load_dataset(f"s3://{bucket}/empty-prefix")
    s3_env.client().put_object(Bucket=bucket, Key="half/ratings.dat", Body=b"1::1::5::1\n")
    with pytest.raises(DataError, match=rf"movies\.dat missing in s3://{bucket}/half"):
        load_dataset(f"s3://{bucket}/half")
    with pytest.raises(StorageError, match="no objects under"):
        storage.download_dir(f"s3://{bucket}/empty-prefix", tmp_path / "never-created")
    assert not (tmp_path / "never-created").exists()


@pytest.mark.s3
def test_wrong_secret_is_clear_and_secret_free(s3_env, uploaded, monkeypatch):
    wrong = "WRONG-secret-value-abcdef123456"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    with pytest.raises(RecvecError) as ei:
        load_dataset(uploaded)
    msg = str(ei.value)
    assert isinstance(ei.value, StorageError) and ei.value.code == "SignatureDoesNotMatch"
    assert "secret access key" in msg
    for secret in (wrong, s3_env.secret_key, s3_env.access_key):
        assert secret not in msg and secret not in repr(ei.value)
    assert ei.value.__cause__ is None and ei.value.__suppress_context__


@pytest.mark.s3
def test_unknown_access_key(s3_env, uploaded, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody-knows-this-key")
    with pytest.raises(StorageError) as ei:
        storage.read_bytes(uploaded + "/movies.dat")
    assert ei.value.code == "InvalidAccessKeyId" and "access key id" in str(ei.value)
    assert "nobody-knows-this-key" not in str(ei.value)


@pytest.mark.s3
def test_no_credentials(s3_env, uploaded, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError, match="no AWS credentials found"):
        load_dataset(uploaded)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.s3
def test_unreachable_endpoint(s3_env):
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(StorageError, match=rf"cannot reach the S3 endpoint {url}") as ei:
        load_dataset("s3://bucket/ml-1m", endpoint_url=url)
    assert ei.value.code == "EndpointUnreachable"
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in str(ei.value)
