"""Local and S3 file access (boto3) and atomic publishing of a directory.

S3 uses boto3's standard credential chain (environment, profile, instance role); the endpoint is
the argument, else ``AWS_ENDPOINT_URL``, else AWS. Every botocore failure becomes a
:class:`StorageError` (a ``RecvecError``) whose message names the bucket/key and endpoint and never
holds credentials. boto3 is imported lazily (``recvec --help`` must stay fast).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath

from recvec.errors import RecvecError, shown

S3_SCHEME = "s3://"
DEFAULT_MAX_ATTEMPTS = 5  # total attempts per request (AWS_MAX_ATTEMPTS overrides)
DEFAULT_CONNECT_TIMEOUT_S = 5.0  # RECVEC_S3_CONNECT_TIMEOUT overrides
DEFAULT_READ_TIMEOUT_S = 30.0  # RECVEC_S3_READ_TIMEOUT overrides


class StorageError(RecvecError):
    """Reading or writing local/S3 storage failed. ``code`` is the S3 error code when there is one."""

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------------- URIs


def is_s3(uri) -> bool:
    """Whether ``uri`` is a string starting with ``s3://``."""
    return isinstance(uri, str) and uri.startswith(S3_SCHEME)


def parse_s3(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b/' -> ('bucket', 'a/b'). The prefix has no leading or trailing '/'."""
    if not is_s3(uri):
        raise StorageError(f"not an S3 URI (expected s3://bucket/prefix): {shown(uri)}")
    rest = uri[len(S3_SCHEME):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StorageError(f"S3 URI has no bucket (expected s3://bucket/prefix): {shown(uri)}")
    return bucket, prefix.strip("/")


def _join_key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def safe_relpath(name: str, *, where: str = "") -> PurePosixPath:
    """A relative name that stays inside its directory: no '..', no absolute path, no empty name."""
    s = str(name).replace("\\", "/")
    p = PurePosixPath(s)
    if not s or p.is_absolute() or any(part in ("..", "") for part in s.split("/")) \
            or s.startswith("~") or (len(s) > 1 and s[1] == ":"):
        loc = f" in {where}" if where else ""
        raise StorageError(f"refusing unsafe file name {shown(name)}{loc}: it would escape the target directory")
    return PurePosixPath(*[part for part in p.parts if part != "."])


# --------------------------------------------------------------------------------------- S3 client


def _setting(value, env: str, default, cast, what: str):
    """An explicit argument, else the environment variable, else the default; must be positive."""
    if value is None:
        raw = os.environ.get(env)
        if raw is None or not raw.strip():
            return default
        try:
            value = cast(raw)
        except ValueError:
            raise StorageError(f"{env} must be {what}, got {shown(raw)}") from None
        src = env
    else:
        src = what
    if not value > 0:
        raise StorageError(f"{src} must be positive, got {shown(value)}")
    return value


def s3_client(endpoint_url: str | None = None, *, connect_timeout: float | None = None,
              read_timeout: float | None = None, max_attempts: int | None = None):
    """A boto3 S3 client: standard credential chain, endpoint from the argument or AWS_ENDPOINT_URL,
    standard-mode retries with exponential backoff and jitter for throttling, 5xx and connection
    errors (max_attempts total attempts per request, else AWS_MAX_ATTEMPTS, else 5), and bounded
    timeouts so that a dead or stalled server gives an error, never a hang (connect 5 s, read 30 s;
    the arguments, else RECVEC_S3_CONNECT_TIMEOUT / RECVEC_S3_READ_TIMEOUT in seconds)."""
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    attempts = _setting(max_attempts, "AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, int, "an integer")
    config = Config(
        retries={"total_max_attempts": int(attempts), "mode": "standard"},
        connect_timeout=_setting(connect_timeout, "RECVEC_S3_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT_S, float,
                                 "a number of seconds"),
        read_timeout=_setting(read_timeout, "RECVEC_S3_READ_TIMEOUT", DEFAULT_READ_TIMEOUT_S, float,
                              "a number of seconds"),
    )
    try:
        session = boto3.session.Session(botocore_session=_botocore_session())
        client = session.client("s3", endpoint_url=endpoint, config=config)
    except Exception as e:  # ProfileNotFound, bad endpoint URL, bad region...
        raise StorageError(f"cannot create an S3 client (endpoint {endpoint or 'AWS default'}): "
                           f"{_scrub(str(e), None)}") from None
    return client


_DATA_LOADER: list = []  # botocore's loader of API models, shared by every session of this process


def _botocore_session():
    """A fresh botocore session (credentials, profile and region resolved anew, as the environment
    says now) that shares one data loader: the S3 API model JSON is parsed once per process, not once
    per client (a client then takes ~15 ms instead of ~130 ms)."""
    import botocore.session

    session = botocore.session.get_session()
    if _DATA_LOADER:
        session.register_component("data_loader", _DATA_LOADER[0])
    else:
        _DATA_LOADER.append(session.get_component("data_loader"))
    return session


def _attempts_of(client) -> int:
    try:
        retries = client.meta.config.retries or {}
        return max(1, int(retries.get("total_max_attempts") or retries.get("max_attempts") or 1))
    except Exception:  # a stand-in client in tests
        return 1


def _secrets_of(client) -> list[str]:
    try:
        creds = client._request_signer._credentials  # noqa: SLF001 - only used to scrub messages
        if creds is None:
            return []
        frozen = creds.get_frozen_credentials()
        return [s for s in (frozen.access_key, frozen.secret_key, frozen.token) if s]
    except Exception:
        return []


def _scrub(message: str, client) -> str:
    for env in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        v = os.environ.get(env)
        if v and len(v) >= 4:
            message = message.replace(v, "***")
    if client is not None:
        for s in _secrets_of(client):
            if len(s) >= 4:
                message = message.replace(s, "***")
    return message


def _endpoint_of(client) -> str:
    try:
        return client.meta.endpoint_url
    except Exception:
        return "?"


def _translate(e: BaseException, client, *, bucket: str, key: str | None, action: str) -> StorageError:
    """botocore exception -> StorageError with a clear message and no credentials."""
    from botocore import exceptions as bx

    where = f"s3://{bucket}/{key}" if key is not None else f"s3://{bucket}"
    ep = _endpoint_of(client)
    if isinstance(e, bx.ClientError):
        err = e.response.get("Error", {}) or {}
        code = str(err.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            msg = f"S3 bucket '{bucket}' does not exist (endpoint {ep}) while trying to {action} {where}"
        elif code in ("NoSuchKey", "404", "NotFound") or (status == 404 and code != "NoSuchBucket"):
            msg = f"S3 object {where} not found (endpoint {ep})"
            code = "NoSuchKey"
        elif code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            msg = (f"access denied to {where} (endpoint {ep}) while trying to {action} it: "
                   "the credentials in use are not allowed to do this")
            code = "AccessDenied"
        elif code == "SignatureDoesNotMatch":
            msg = (f"S3 rejected the request signature for {where} (endpoint {ep}): the secret access key "
                   "does not match the access key id (check AWS_SECRET_ACCESS_KEY / your profile)")
        elif code == "InvalidAccessKeyId":
            msg = (f"S3 does not know the access key id in use for {where} (endpoint {ep}): "
                   "check AWS_ACCESS_KEY_ID / your profile")
        elif code in ("InvalidBucketName",):
            msg = f"invalid S3 bucket name '{bucket}' (endpoint {ep})"
        else:
            detail = err.get("Message") or str(e)
            msg = f"S3 error {code or status} while trying to {action} {where} (endpoint {ep}): {detail}"
        return StorageError(_scrub(msg, client), code=code or None)
    if isinstance(e, bx.NoCredentialsError):
        return StorageError(f"no AWS credentials found to {action} {where}: set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY, or configure a profile (AWS_PROFILE)", code="NoCredentials")
    if isinstance(e, bx.PartialCredentialsError):
        return StorageError(f"incomplete AWS credentials while trying to {action} {where}: "
                            f"{_scrub(str(e), client)}", code="PartialCredentials")
    if isinstance(e, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ConnectionClosedError)):
        return StorageError(f"cannot reach the S3 endpoint {ep} to {action} {where} "
                            "(check --endpoint-url / AWS_ENDPOINT_URL and the network)", code="EndpointUnreachable")
    if isinstance(e, bx.ReadTimeoutError):
        return StorageError(f"timed out reading {where} from {ep} (no data within the read timeout; "
                            "RECVEC_S3_READ_TIMEOUT sets it)", code="ReadTimeout")
    if isinstance(e, (bx.ResponseStreamingError, bx.IncompleteReadError)):
        return StorageError(f"the connection to {ep} broke off while trying to {action} {where}: "
                            f"{_scrub(str(e), client)}", code="DownloadInterrupted")
    if isinstance(e, bx.BotoCoreError):
        return StorageError(f"S3 failure while trying to {action} {where} (endpoint {ep}): "
                            f"{_scrub(str(e), client)}")
    return StorageError(f"S3 failure while trying to {action} {where} (endpoint {ep}): "
                        f"{type(e).__name__}: {_scrub(str(e), client)}")


def _call(client, fn, *, bucket: str, key: str | None, action: str, **kwargs):
    from botocore import exceptions as bx

    try:
        return fn(**kwargs)
    except (bx.BotoCoreError, bx.ClientError) as e:
        raise _translate(e, client, bucket=bucket, key=key, action=action) from None


# --------------------------------------------------------------------------------------- reading


_STREAM_RETRY_BASE_S = 0.2
_STREAM_RETRY_MAX_S = 5.0


def _get_object_bytes(client, bucket: str, key: str) -> bytes:
    """GET one object and read its body. botocore retries the request itself; a body that breaks
    off mid-download (connection reset, server gone, short read) is fetched again, with the same
    number of attempts and exponential backoff, then reported as a StorageError."""
    import random
    import time
    from http.client import HTTPException

    from botocore import exceptions as bx

    attempts = _attempts_of(client)
    attempt = 1
    while True:
        resp = _call(client, client.get_object, bucket=bucket, key=key, action="read", Bucket=bucket, Key=key)
        try:
            return resp["Body"].read()
        except (bx.BotoCoreError, bx.ClientError, OSError, HTTPException) as e:
            if attempt >= attempts:
                if isinstance(e, (bx.BotoCoreError, bx.ClientError)):
                    raise _translate(e, client, bucket=bucket, key=key, action="read") from None
                raise StorageError(f"the connection to {_endpoint_of(client)} broke off while trying to read "
                                   f"s3://{bucket}/{key}: {type(e).__name__}", code="DownloadInterrupted") from None
        finally:
            resp["Body"].close()
        time.sleep(random.uniform(0, min(_STREAM_RETRY_MAX_S, _STREAM_RETRY_BASE_S * 2 ** (attempt - 1))))
        attempt += 1


def read_bytes(uri_or_path, *, endpoint_url: str | None = None, client=None) -> bytes:
    """The whole content of a local file or an S3 object."""
    if is_s3(uri_or_path):
        bucket, key = parse_s3(uri_or_path)
        if not key:
            raise StorageError(f"S3 URI names a bucket, not an object: {shown(uri_or_path)}")
        client = client or s3_client(endpoint_url)
        return _get_object_bytes(client, bucket, key)
    path = Path(uri_or_path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StorageError(f"file not found: {path}", code="NoSuchKey") from None
    except IsADirectoryError:
        raise StorageError(f"expected a file but found a directory: {path}") from None
    except OSError as e:
        raise StorageError(f"cannot read {path}: {e.strerror}") from None


def _list_s3_keys(client, bucket: str, prefix: str, *, recursive: bool = True) -> list[tuple[str, str]]:
    """(relative name, key) for every object under the prefix, sorted by name; with
    recursive=False only the objects directly under it."""
    list_prefix = prefix + "/" if prefix else ""
    out = []
    token = None
    while True:
        kw = {"Bucket": bucket, "Prefix": list_prefix}
        if not recursive:
            kw["Delimiter"] = "/"
        if token:
            kw["ContinuationToken"] = token
        resp = _call(client, client.list_objects_v2, bucket=bucket, key=list_prefix or None, action="list", **kw)
        for obj in resp.get("Contents", []) or []:
            key = obj["Key"]
            rel = key[len(list_prefix):]
            if not rel or rel.endswith("/"):  # the prefix itself or a "directory marker"
                continue
            out.append((rel, key))
        if resp.get("IsTruncated"):
            token = resp.get("NextContinuationToken")
            if not token:
                break
        else:
            break
    out.sort()
    return out


def list_files(dir_uri, *, endpoint_url: str | None = None, recursive: bool = True, client=None) -> list[str]:
    """Relative posix names of the files under a local directory or S3 prefix (sorted); with
    recursive=False only those directly in it."""
    if is_s3(dir_uri):
        bucket, prefix = parse_s3(dir_uri)
        client = client or s3_client(endpoint_url)
        return [rel for rel, _ in _list_s3_keys(client, bucket, prefix, recursive=recursive)]
    root = Path(dir_uri)
    if not root.exists():
        raise StorageError(f"directory not found: {root}", code="NoSuchKey")
    if not root.is_dir():
        raise StorageError(f"expected a directory but found a file: {root}")
    found = root.rglob("*") if recursive else root.iterdir()
    return sorted(p.relative_to(root).as_posix() for p in found if p.is_file())


def download_dir(uri, local_dir, *, endpoint_url: str | None = None, first: str | None = "manifest.json",
                 client=None) -> Path:
    """Copy every object under an S3 prefix (or files of a local directory) into local_dir.

    ``first`` is fetched before the others (the mirror of upload_dir's ``last``). Names that would
    escape local_dir are refused before anything is written."""
    local = Path(local_dir)
    if not is_s3(uri):
        src = Path(uri)
        names = list_files(src)
        rels = [safe_relpath(n, where=str(src)) for n in names]
        local.mkdir(parents=True, exist_ok=True)
        for rel in rels:
            dst = local.joinpath(*rel.parts)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src.joinpath(*rel.parts), dst)
        return local
    bucket, prefix = parse_s3(uri)
    client = client or s3_client(endpoint_url)
    entries = _list_s3_keys(client, bucket, prefix)
    if not entries:
        raise StorageError(f"no objects under {uri} (endpoint {_endpoint_of(client)})", code="NoSuchKey")
    checked = [(safe_relpath(rel, where=uri), key) for rel, key in entries]
    if first is not None:
        checked.sort(key=lambda t: t[0].as_posix() != first)
    local.mkdir(parents=True, exist_ok=True)
    for rel, key in checked:
        dst = local.joinpath(*rel.parts)
        dst.parent.mkdir(parents=True, exist_ok=True)
        data = read_bytes(f"s3://{bucket}/{key}", client=client)
        tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.part")
        tmp.write_bytes(data)
        os.replace(tmp, dst)
    return local


# --------------------------------------------------------------------------------------- writing


def upload_dir(local_dir, uri: str, *, endpoint_url: str | None = None, last: str | None = "manifest.json",
               client=None) -> list[str]:
    """Upload every file of local_dir under the S3 prefix; ``last`` (relative name) goes last, so a
    reader that reads it first never sees a partial artifact. Returns the uploaded relative names
    in upload order."""
    bucket, prefix = parse_s3(uri)
    src = Path(local_dir)
    names = list_files(src)
    if not names:
        raise StorageError(f"nothing to upload: {src} holds no files")
    rels = [safe_relpath(n, where=str(src)).as_posix() for n in names]
    if last is not None:
        rels.sort(key=lambda r: r == last)  # stable: keeps the others in name order
    client = client or s3_client(endpoint_url)
    for rel in rels:
        key = _join_key(prefix, rel)
        body = (src / rel).read_bytes()
        _call(client, client.put_object, bucket=bucket, key=key, action="write", Bucket=bucket, Key=key, Body=body)
    return rels


def put_bytes(uri: str, data: bytes, *, endpoint_url: str | None = None, client=None) -> None:
    """Write one S3 object (``s3://bucket/key``)."""
    bucket, key = parse_s3(uri)
    if not key:
        raise StorageError(f"S3 URI names a bucket, not an object: {shown(uri)}")
    client = client or s3_client(endpoint_url)
    _call(client, client.put_object, bucket=bucket, key=key, action="write", Bucket=bucket, Key=key, Body=data)


def delete_files(dir_uri: str, names, *, endpoint_url: str | None = None, client=None) -> list[str]:
    """Delete the named objects directly under an S3 prefix (plain relative names only); a name that is
    already gone is not an error. Returns the names deleted, in order."""
    bucket, prefix = parse_s3(dir_uri)
    rels = [safe_relpath(n, where=dir_uri).as_posix() for n in names]
    client = client or s3_client(endpoint_url)
    for rel in rels:
        key = _join_key(prefix, rel)
        _call(client, client.delete_object, bucket=bucket, key=key, action="delete", Bucket=bucket, Key=key)
    return rels


def output_dir(dest, *, what: str = "output directory") -> Path:
    """The absolute, normalised local path of a directory recvec is to create or replace.

    Symbolic links are not followed (``..`` is resolved textually, as the shell does). Refused with a
    StorageError: an empty path, the current directory or any directory above it (``.``, ``..``,
    ``/``): publishing swaps the whole directory, and those hold the caller's own files."""
    text = os.fspath(dest) if not isinstance(dest, str) else dest
    if not text.strip():
        raise StorageError(f"the {what} is an empty path: name a directory to create")
    final = Path(os.path.abspath(text))
    cwd = Path(os.path.abspath(os.getcwd()))
    if final == cwd or final in cwd.parents:
        which = "the current directory" if final == cwd else "a directory above the current one"
        raise StorageError(f"refusing to use {shown(text)} ({final}) as the {what}: it is {which}, and recvec "
                           "replaces the whole directory it publishes; name a new directory inside it instead")
    return final


_TMP_MARK = ".tmp-"


def sibling_tmp_dir(final_dir) -> Path:
    """A fresh empty directory next to final_dir (same filesystem, so publish_local_dir can rename),
    named ``.NAME.tmp-<pid>-<random>``. Directories of that form left by processes of this host
    that no longer run (killed builds) are removed first: nothing else makes names of that form."""
    final = Path(final_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_tmp_dirs(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{_TMP_MARK}{os.getpid()}-", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the published directory should read like any other
    return tmp


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or not a pid we can ask about): leave it alone
    return True


def remove_dead_tmp_dirs(final_dir) -> list[Path]:
    """Remove the temp directories of publishes to final_dir whose process is gone; returns them."""
    final = Path(final_dir)
    pattern = re.compile(re.escape(f".{final.name}{_TMP_MARK}") + r"([0-9]+)-[A-Za-z0-9_]+$")
    removed = []
    try:
        siblings = list(final.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        m = pattern.match(p.name)
        if m and p.is_dir() and not p.is_symlink() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def fsync_dir(path) -> None:
    """fsync a directory, so that the names created or renamed in it survive a power loss."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path, data: bytes) -> None:
    """Write a file and fsync it (its directory is fsync'ed by whoever publishes the directory)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE). False when unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    rc = fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _backup_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def published_dir(final_dir) -> Path:
    """Where the current complete version of a directory published with publish_local_dir is: final_dir,
    or, when a publish without rename exchange stopped between its two renames (crashed, or is still
    running), the previous version in its backup. Read-only: recover_local_dir puts it back."""
    final = Path(final_dir)
    if not final.is_dir():
        backup = _backup_name(final)
        if backup.is_dir():
            return backup
    return final


def recover_local_dir(final_dir) -> None:
    """Finish a publish that crashed between its two renames (only the fallback path has such a
    window): if final_dir is missing and its backup exists, put the backup back."""
    final = Path(final_dir)
    backup = _backup_name(final)
    if not final.exists() and backup.is_dir():
        os.rename(backup, final)


def publish_local_dir(tmp_dir, final_dir) -> Path:
    """Make the complete directory tmp_dir appear at final_dir, replacing any previous one.

    On Linux the swap is one atomic renameat2(RENAME_EXCHANGE): a crash leaves either the old or the
    new complete directory at final_dir. Elsewhere the old one is first renamed to '.NAME.old' and
    recover_local_dir() (also run at the start of every publish) restores it if a crash hit between
    the two renames. tmp_dir should be a sibling of final_dir (see sibling_tmp_dir); one on another
    filesystem is copied next to final_dir first.

    Durability: tmp_dir (whose files the caller has fsync'ed, see write_durable) is fsync'ed before
    the rename and the parent directory after it, so once this returns the new version survives a
    power loss; a power loss before that leaves the previous version (or none) at final_dir.
    Whether final_dir may be replaced at all is the caller's decision (it is replaced whole)."""
    tmp = Path(tmp_dir)
    final = Path(final_dir)
    if not tmp.is_dir():
        raise StorageError(f"cannot publish {tmp}: not a directory")
    final.parent.mkdir(parents=True, exist_ok=True)
    if tmp.resolve().parent != final.resolve().parent:
        staged = sibling_tmp_dir(final)
        shutil.rmtree(staged)
        shutil.copytree(tmp, staged)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp = staged
    recover_local_dir(final)
    backup = _backup_name(final)
    if final.exists() and backup.is_dir():  # debris of a publish killed while removing its backup
        shutil.rmtree(backup, ignore_errors=True)
    fsync_dir(tmp)
    if not final.exists():
        os.rename(tmp, final)
        fsync_dir(final.parent)
        return final
    if final.is_symlink() or not final.is_dir():
        raise StorageError(f"cannot publish to {final}: it exists and is not a directory")
    if _rename_exchange(tmp, final):
        fsync_dir(final.parent)
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous version
        return final
    if backup.exists():
        shutil.rmtree(backup)
    os.rename(final, backup)
    os.rename(tmp, final)
    fsync_dir(final.parent)
    shutil.rmtree(backup, ignore_errors=True)
    return final
