"""recvec replaces only what it wrote, and every OS error on an output path is a clean message.

- ``recvec build --out`` (and ``save_artifact``) refuses, before any slow work is published, a
  destination that is not a recvec artifact: a folder of the user's own files, a MovieLens folder,
  an artifact with files added to it, ``.``/``..``/``""``, and on S3 a prefix holding objects that no
  recvec manifest or upload journal accounts for. The user's files are left byte for byte, and no
  temp directory is left behind.
- OS errors on the output side (parent not writable, a file where a directory is expected, a name
  too long, disk full, a read-only file system) end in ``Error: ...`` naming the path, exit 2, and
  the previous artifact stays loadable.

Each case counts in the reliability summary ("data-loss cases refused" / "OS errors reported").
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from recvec.cli import main
from recvec.engine import storage
from recvec.errors import ArtifactError, RecvecError
from recvec.indexes.artifact import load_artifact, save_artifact
from recvec.indexes.backends.faiss_build import build_index
from recvec.indexes.spec import IndexSpec

N, D = 120, 8


def parts(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, D)).astype(np.float32)
    return dict(index=build_index(x, IndexSpec.parse("flat"), seed=seed), item_ids=np.arange(N, dtype=np.int64) + 1,
                arrays={"item_vectors": x}, catalog={}, manifest={"model": {"kind": "als", "params": {}}})


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root (relative name -> bytes), for "left byte for byte" checks."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def build(*args: str):
    return CliRunner().invoke(main, ["build", "--iterations", "2", "--factors", "4", "--quiet", *args])


def assert_clean_refusal(res, *expected: str) -> None:
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit), res.exception  # no exception escaped
    assert res.stderr.startswith("Error: ") and "Traceback" not in res.output, res.output
    for text in expected:
        assert text in res.stderr, res.stderr


def no_temp_dirs(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".tmp-" in p.name]


# ----------------------------------------------------------------------------- local destinations


def test_a_folder_of_the_users_own_files_is_refused_and_kept(tmp_path, synthetic_dir, reliability_counts):
    notes = tmp_path / "notes"
    (notes / "drafts").mkdir(parents=True)
    (notes / "todo.txt").write_text("buy milk\n")
    (notes / "drafts" / "letter.md").write_text("Dear ...\n")
    before = snapshot(notes)
    res = build("--data", str(synthetic_dir), "--out", str(notes))
    assert_clean_refusal(res, f"refusing to replace {notes}", "not a recvec artifact", "no manifest.json",
                         "drafts, todo.txt")
    assert snapshot(notes) == before and no_temp_dirs(tmp_path)
    reliability_counts["data-loss cases refused (the user's files kept byte for byte)"] += 1


def test_the_movielens_folder_itself_is_refused_and_kept(tmp_path, synthetic_dir, reliability_counts):
    data = tmp_path / "ml"
    shutil.copytree(synthetic_dir, data)
    before = snapshot(data)
    res = build("--data", str(data), "--out", str(data))
    assert_clean_refusal(res, "not a recvec artifact", "movies.dat")
    assert snapshot(data) == before and no_temp_dirs(tmp_path)
    reliability_counts["data-loss cases refused (the user's files kept byte for byte)"] += 1


def test_an_artifact_with_a_file_added_is_refused(tmp_path, reliability_counts):
    dest = tmp_path / "art"
    save_artifact(dest, **parts(0))
    (dest / "my-notes.txt").write_text("mine\n")
    before = snapshot(dest)
    with pytest.raises(ArtifactError, match=r"its manifest does not list my-notes\.txt, which recvec did not write"):
        save_artifact(dest, **parts(1))
    assert snapshot(dest) == before and no_temp_dirs(tmp_path)
    (dest / "my-notes.txt").unlink()
    save_artifact(dest, **parts(1))  # an artifact and nothing else: replaced
    assert load_artifact(dest).manifest["n_items"] == N
    reliability_counts["data-loss cases refused (the user's files kept byte for byte)"] += 1


def test_a_directory_with_a_foreign_manifest_is_refused(tmp_path, reliability_counts):
    dest = tmp_path / "web"
    dest.mkdir()
    (dest / "manifest.json").write_text('{"name": "my web app", "icons": []}\n')
    before = snapshot(dest)
    with pytest.raises(ArtifactError, match="its manifest.json is not a recvec manifest"):
        save_artifact(dest, **parts(0))
    assert snapshot(dest) == before
    reliability_counts["data-loss cases refused (the user's files kept byte for byte)"] += 1


def test_empty_directories_and_new_paths_are_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    for dest in (tmp_path / "empty", tmp_path / "new" / "deeper" / "art"):
        save_artifact(dest, **parts(0))
        assert load_artifact(dest).n_items == N
        assert no_temp_dirs(dest.parent)


@pytest.mark.parametrize("out, message", [
    (".", "it is the current directory"),
    ("..", "it is a directory above the current one"),
    ("", "is an empty path"),
    ("sub/..", "it is the current directory"),
])
def test_dot_dotdot_and_empty_out_are_refused_cleanly(tmp_path, monkeypatch, synthetic_dir, out, message,
                                                      reliability_counts):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("x")
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    res = build("--data", str(synthetic_dir), "--out", out)
    assert_clean_refusal(res, message)
    assert snapshot(tmp_path) == before and no_temp_dirs(work) and no_temp_dirs(tmp_path)
    reliability_counts["data-loss cases refused (the user's files kept byte for byte)"] += 1


def test_symlink_and_file_destinations_are_refused(tmp_path):
    target = tmp_path / "target"
    save_artifact(target, **parts(0))
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="is a symbolic link, not a directory"):
        save_artifact(tmp_path / "link", **parts(1))
    with pytest.raises(ArtifactError, match="is a file, not a directory"):
        save_artifact(tmp_path / "file", **parts(1))
    with pytest.raises(ArtifactError, match=f"{tmp_path / 'file'} is a file, not a directory"):
        save_artifact(tmp_path / "file" / "art", **parts(1))
    assert (tmp_path / "file").read_text() == "x"


def test_temp_dirs_of_dead_builds_are_removed_live_ones_kept(tmp_path):
    dest = tmp_path / "art"
    dead = subprocess.run(["true"], check=True)  # a pid that no longer runs
    del dead
    proc = subprocess.Popen(["sleep", "0"])
    proc.wait()
    gone = tmp_path / f".art.tmp-{proc.pid}-abcd1234"
    live = tmp_path / f".art.tmp-{os.getpid()}-efgh5678"
    other = tmp_path / ".art.tmp-notapid"  # not of recvec's form: left alone
    for p in (gone, live, other):
        p.mkdir()
        (p / "index.faiss").write_bytes(b"x")
    save_artifact(dest, **parts(0))
    assert not gone.exists() and live.exists() and other.exists()


def test_publish_fsyncs_files_and_directories(tmp_path, monkeypatch):
    """Durable publish: every file is fsync'ed before the rename, the temp directory before and the
    parent directory after it."""
    calls: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    dest = tmp_path / "art"
    save_artifact(dest, **parts(0))
    manifest = json.loads((dest / "manifest.json").read_text())
    synced_files = {Path(c).name for c in calls if ".tmp-" in Path(c).parent.name}
    assert synced_files == {*manifest["files"], "manifest.json"}
    tmp_dirs = [c for c in calls if ".tmp-" in Path(c).name]
    assert len(tmp_dirs) == 1 and calls.index(tmp_dirs[0]) > max(
        i for i, c in enumerate(calls) if ".tmp-" in Path(c).parent.name)
    assert calls[-1] == str(tmp_path)  # the parent, after the rename


# ----------------------------------------------------------------------------- OS errors, locally


@contextlib.contextmanager
def unwritable(path: Path):
    """Make a directory refuse new entries, for root too (chattr +i) or by mode for other users."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("cannot make a directory unwritable for root here (no chattr +i on this file system)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("rebuild", [False, True], ids=["new artifact", "rebuild"])
def test_parent_not_writable_is_a_clean_error_and_keeps_the_old_artifact(tmp_path, synthetic_dir, rebuild,
                                                                         reliability_counts):
    parent = tmp_path / "parent"
    parent.mkdir()
    dest = parent / "art"
    if rebuild:
        assert build("--data", str(synthetic_dir), "--out", str(dest)).exit_code == 0
    before = snapshot(parent)
    with unwritable(parent):
        res = build("--data", str(synthetic_dir), "--out", str(dest))
    assert_clean_refusal(res, f"cannot write the artifact {dest}", str(parent))
    assert ("Permission denied" in res.stderr) or ("Operation not permitted" in res.stderr)
    assert snapshot(parent) == before
    if rebuild:
        assert load_artifact(dest).n_items > 0
    reliability_counts["OS errors reported cleanly (Error: naming the path, exit 2)"] += 1


def test_name_too_long_is_a_clean_error_with_the_path_cut(tmp_path, synthetic_dir, reliability_counts):
    out = tmp_path / ("a" * 300)
    res = build("--data", str(synthetic_dir), "--out", str(out))
    assert_clean_refusal(res, "File name too long", "…")
    assert len(res.stderr) < 600 and no_temp_dirs(tmp_path)
    reliability_counts["OS errors reported cleanly (Error: naming the path, exit 2)"] += 1


@pytest.mark.parametrize("err, where", [
    (errno.ENOSPC, "write"), (errno.EROFS, "write"), (errno.EIO, "write"), (errno.ENOSPC, "rename"),
])
def test_disk_full_read_only_and_io_errors_keep_the_old_artifact(tmp_path, monkeypatch, err, where,
                                                                  reliability_counts):
    """The OS refusing mid-publish (injected at the one write or rename call it would fail in)."""
    dest = tmp_path / "art"
    save_artifact(dest, **parts(0))
    before = snapshot(tmp_path)

    def fail(*a, **kw):
        raise OSError(err, os.strerror(err), str(a[0]))

    if where == "write":
        monkeypatch.setattr(storage, "write_durable", fail)
    else:
        monkeypatch.setattr(storage, "_rename_exchange", fail)
    with pytest.raises(ArtifactError, match=f"cannot write the artifact {dest}: {os.strerror(err)}"):
        save_artifact(dest, **parts(1))
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    assert load_artifact(dest).arrays["item_vectors"].tobytes() == parts(0)["arrays"]["item_vectors"].tobytes()
    reliability_counts["OS errors reported cleanly (Error: naming the path, exit 2)"] += 1


def test_unreadable_artifact_and_data_files_are_clean_errors(tmp_path, monkeypatch, reliability_counts):
    dest = tmp_path / "art"
    save_artifact(dest, **parts(0))
    real = Path.read_bytes

    def denied(self):
        if self.name == "item_ids.npy":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    res = CliRunner().invoke(main, ["query", "user", "--index", str(dest), "--items", "1,2"])
    assert_clean_refusal(res, "cannot read artifact file", "item_ids.npy", "Permission denied")
    reliability_counts["OS errors reported cleanly (Error: naming the path, exit 2)"] += 1


def test_os_errors_the_library_did_not_translate_still_exit_2(tmp_path, monkeypatch, synthetic_dir):
    """The CLI's last line: any OSError becomes 'Error: <reason>: <path>' (never a traceback)."""
    import recvec.engine.data as data

    def boom(*a, **kw):
        raise OSError(errno.EIO, "Input/output error", "/dev/sdz1")

    monkeypatch.setattr(data, "load_dataset", boom)
    res = CliRunner().invoke(main, ["eval", "--data", str(synthetic_dir)])
    assert_clean_refusal(res, "Error: Input/output error: /dev/sdz1")


# ----------------------------------------------------------------------------- S3 prefixes


@pytest.mark.s3
def test_s3_prefix_with_the_users_objects_is_refused_and_kept(s3_env, reliability_counts):
    ep = s3_env.endpoint_url
    bucket = s3_env.create_bucket()
    client = s3_env.client()
    client.put_object(Bucket=bucket, Key="reports/q3.csv", Body=b"a,b\n1,2\n")
    client.put_object(Bucket=bucket, Key="reports/img/logo.png", Body=b"\x89PNG")

    def keys(prefix: str) -> dict[str, bytes]:
        objs = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in objs}

    before = keys("reports/")
    with pytest.raises(ArtifactError, match=r"it has no manifest.json and holds img/logo.png, q3.csv, which recvec"):
        save_artifact(f"s3://{bucket}/reports", **parts(0), endpoint_url=ep)
    assert keys("reports/") == before
    # an artifact prefix with an object added to it: the same
    save_artifact(f"s3://{bucket}/art", **parts(0), endpoint_url=ep)
    client.put_object(Bucket=bucket, Key="art/notes.npy", Body=b"mine")
    before = keys("art/")
    with pytest.raises(ArtifactError, match=r"its manifest does not list notes.npy"):
        save_artifact(f"s3://{bucket}/art", **parts(1), endpoint_url=ep)
    assert keys("art/") == before
    client.delete_object(Bucket=bucket, Key="art/notes.npy")
    save_artifact(f"s3://{bucket}/art", **parts(1), endpoint_url=ep)
    m = json.loads(client.get_object(Bucket=bucket, Key="art/manifest.json")["Body"].read())
    assert set(keys("art/")) == {f"art/{n}" for n in [*m["files"], "manifest.json"]}  # the journal is gone too
    reliability_counts["data-loss cases refused (the user's files kept byte for byte)"] += 2


@pytest.mark.s3
def test_s3_killed_upload_debris_is_recognised_by_its_journal(s3_env):
    """What a killed upload leaves (its journal and some files) is recvec's: the next build cleans it."""
    ep = s3_env.endpoint_url
    bucket = s3_env.create_bucket()
    client = s3_env.client()
    journal = {"writes": ["index.faiss", "item_ids.npy"], "replaces": []}
    client.put_object(Bucket=bucket, Key="a/.recvec-upload.0123456789ab.json", Body=json.dumps(journal).encode())
    client.put_object(Bucket=bucket, Key="a/index.faiss", Body=b"half")
    save_artifact(f"s3://{bucket}/a", **parts(0), endpoint_url=ep)
    names = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="a/")["Contents"]}
    m = json.loads(client.get_object(Bucket=bucket, Key="a/manifest.json")["Body"].read())
    assert names == {f"a/{n}" for n in [*m["files"], "manifest.json"]}
    assert load_artifact(f"s3://{bucket}/a", endpoint_url=ep).n_items == N


# ----------------------------------------------------------------------------- Milvus collections


def test_a_milvus_collection_recvec_did_not_create_is_not_dropped(tmp_path, reliability_counts):
    pytest.importorskip("milvus_lite")
    from pymilvus import MilvusClient

    from recvec.indexes.backends.milvus import MilvusIndex

    db = str(tmp_path / "m.db")
    client = MilvusClient(db)
    client.create_collection("orders", dimension=D)
    client.insert("orders", [{"id": 1, "vector": [0.5] * D}])
    client.close()
    x = parts(0)["arrays"]["item_vectors"]
    with pytest.raises(RecvecError, match="'orders' .* was not written by recvec"):
        MilvusIndex.create(db, "orders", x, IndexSpec.parse("flat"))
    client = MilvusClient(db)
    try:
        assert client.has_collection("orders") and client.get(collection_name="orders", ids=[1])
    finally:
        client.close()
    for _ in range(2):  # its own collection recvec replaces
        ix = MilvusIndex.create(db, "items", x, IndexSpec.parse("flat"))
        assert ix.ntotal == N
        ix.close()
    reliability_counts["data-loss cases refused (the user's files kept byte for byte)"] += 1
