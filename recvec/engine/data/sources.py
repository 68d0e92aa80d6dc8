"""Where a dataset's files come from: a directory, a .zip (the one folder in it that holds a
dataset, unsafe member names refused), an s3:// prefix or an s3:// .zip, behind one small
interface (_Source: names, read, close). Which names make a dataset is the registry's business:
the functions here take the registered formats and only ask whether a folder looks like one."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from recvec.engine import storage
from recvec.engine.data.formats import Format, describe_all, looks_like_any
from recvec.errors import DataError


class _Source:
    """A flat set of named files: a directory, a zip, or an S3 prefix."""

    where: str  # shown in messages: the path or URI

    def names(self) -> set[str]:
        """Names of the files (no folders) in the set."""
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        """The bytes of file `name`; DataError (or StorageError from S3) naming it when unreadable."""
        raise NotImplementedError

    def dirs(self) -> set[str]:
        """Names that are folders where a file may be expected (for the error message)."""
        return set()

    def close(self) -> None:
        pass


class _DirSource(_Source):
    """The files directly in a local directory."""

    def __init__(self, root: Path):
        self.root = root
        self.where = str(root)

    def names(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_file()}

    def dirs(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_dir()}

    def read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as e:
            raise DataError(f"cannot read {name} in {self.where}: {e.strerror}") from None


# What zipfile raises on damaged or unsupported archives (CRC, truncation, bad headers, encryption,
# unknown compression): each becomes a DataError naming the zip.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, RuntimeError,
               NotImplementedError, zlib.error, struct.error, OverflowError, IndexError, KeyError)


def _escapes(member: str) -> bool:
    """A zip member name that would leave the folder it is unpacked into (absolute, '..', drive)."""
    name = member.replace("\\", "/")
    return name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in name.split("/")


def _folder_of(name: str) -> str:
    parent = PurePosixPath(name).parent
    return "" if str(parent) == "." else str(parent)


def _ambiguous(where: str, folders: list[str]) -> DataError:
    shown = ", ".join(f"{f}/" if f else "(top level)" for f in folders)
    return DataError(f"{where} holds more than one MovieLens dataset: {shown}. Give one dataset at a time "
                     "(unpack it and point --data at one folder)")


class _ZipSource(_Source):
    """The one folder of a zip (at any depth, the top level included) that holds MovieLens files.

    Two such folders are an error listing both: which files are read is never a guess."""

    def __init__(self, data: bytes | Path, where: str, formats: Sequence[Format]):
        self.where = where
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
            infos = self.zf.infolist()
        except _ZIP_ERRORS as e:
            raise DataError(f"{where} is not a readable zip file: {e}") from None
        members = [i.filename for i in infos if not i.is_dir()]
        self.unsafe = [m for m in members if _escapes(m)]
        files = [
            m for m in members
            if m not in self.unsafe and not m.startswith("__MACOSX/")
            and not any(part.startswith(".") for part in PurePosixPath(m).parts)  # ._x, .DS_Store
        ]
        by_folder: dict[str, dict[str, str]] = {}  # folder ('' = top level) -> {name: member}
        for f in files:
            by_folder.setdefault(_folder_of(f), {})[PurePosixPath(f).name] = f
        candidates = sorted(k for k, v in by_folder.items() if looks_like_any(v, formats))
        if len(candidates) > 1:
            self.zf.close()
            raise _ambiguous(where, candidates)
        if candidates:
            self.map = by_folder[candidates[0]]
        elif len(by_folder) == 1:  # one folder, no data: list its files in errors
            self.map = next(iter(by_folder.values()))
        else:
            self.map = {f: f for f in files}

    def names(self) -> set[str]:
        return set(self.map)

    def read(self, name: str) -> bytes:
        try:
            return self.zf.read(self.map[name])
        except _ZIP_ERRORS as e:
            raise DataError(f"cannot read {name} from {self.where} (damaged zip?): {e}") from None

    def close(self) -> None:
        self.zf.close()


class _S3Source(_Source):
    """The files directly under an s3:// prefix (listed once, read on demand)."""

    def __init__(self, uri: str, endpoint_url: str | None):
        self.uri = uri.rstrip("/")
        self.where = self.uri
        self.client = storage.s3_client(endpoint_url)
        self._names = set(storage.list_files(self.uri, recursive=False, client=self.client))

    def names(self) -> set[str]:
        return set(self._names)

    def read(self, name: str) -> bytes:
        return storage.read_bytes(f"{self.uri}/{name}", client=self.client)


def _open_source(path: str, endpoint_url: str | None, formats: Sequence[Format]) -> _Source:
    """The source at `path`: s3://bucket/prefix, s3://.../x.zip, a local directory (or its one
    sub-folder holding a dataset, when its top level holds none) or a local .zip.

    Raises DataError for a missing path, an empty S3 prefix, an unreadable zip, a file that is
    neither, or more than one dataset (folders) in a directory or zip; StorageError from S3."""
    if storage.is_s3(path):
        if path.lower().endswith(".zip"):
            return _ZipSource(storage.read_bytes(path, endpoint_url=endpoint_url), path, formats)
        src = _S3Source(path, endpoint_url)
        if not src._names:
            raise DataError(f"no files under {src.where} (endpoint {storage._endpoint_of(src.client)}). "
                            f"Expected one of the MovieLens formats: {describe_all(formats)}")
        return src
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data path not found: {p} (give a directory, a .zip, s3://bucket/prefix or 'synthetic')")
    if p.is_dir():
        src = _DirSource(p)
        if not looks_like_any(src.names(), formats):  # the files at the top level win; else one sub-folder
            subdirs = sorted(c for c in p.iterdir() if c.is_dir() and not c.name.startswith("."))
            with_data = [c for c in subdirs if looks_like_any(_DirSource(c).names(), formats)]
            if len(with_data) > 1:
                raise _ambiguous(str(p), [c.name for c in with_data])
            if with_data:
                return _DirSource(with_data[0])
        return src
    if zipfile.is_zipfile(p):
        return _ZipSource(p, str(p), formats)
    if p.suffix.lower() == ".zip":
        raise DataError(f"{p} is not a readable zip file")
    raise DataError(f"{p} is neither a directory nor a .zip file. Expected one of the MovieLens formats: "
                    f"{describe_all(formats)}")

