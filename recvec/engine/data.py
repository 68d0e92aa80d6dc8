"""MovieLens readers: directory, .zip or s3:// URI; ML-1M/10M '::', ML-100K, ml-latest CSV.

I/O lives here; everything returned is plain arrays (and a Catalog).

Ratings are parsed by pandas' C tokenizer on the raw bytes ('::' rewritten to a tab first), which
reads ML-1M's ratings.dat in 0.1-0.3 s (the lab's python-engine read: ~5 s); only when that fast path fails (or the values are out
of range) does a line-by-line scan run, to name the first bad line.

What is checked (each failure a DataError naming the file and line): fields and delimiter, integer
ids and timestamps >= 0, ratings within 0.5-5, each (user, movie) pair once, every rated movie in the
catalogue, catalogue ids unique and titles non-empty text (UTF-8, else Latin-1 per line), CSV
headers naming the required columns (extra ones ignored), and exactly one dataset in a zip or
directory. Rows need not be in time order: the split sorts them."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np

from recvec.errors import DataError, UnknownIdError, shorten, shown

MIN_RATING = 0.5
MAX_RATING = 5.0

# ML-100K's genre columns (u.genre lists the same names).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)


@dataclass(frozen=True)
class Ratings:
    """Raw rating events in file order. All arrays have the same length."""

    users: np.ndarray  # int64 external user ids
    items: np.ndarray  # int64 external movie ids
    ratings: np.ndarray  # float32 stars
    timestamps: np.ndarray  # int64 unix seconds

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Catalog:
    """Movies: external ids with titles and genres ('A|B|C'), same order."""

    ids: np.ndarray  # int64
    titles: tuple[str, ...]
    genres: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def texts(self, sep: str = "[SEP]") -> list[str]:
        """The lab's item text: 'title [SEP] genres'."""
        return [f"{t} {sep} {g}" for t, g in zip(self.titles, self.genres)]

    @cached_property
    def _position(self) -> dict[int, int]:
        return {int(m): i for i, m in enumerate(self.ids)}

    def __contains__(self, movie_id) -> bool:
        try:
            return int(movie_id) in self._position
        except (TypeError, ValueError):
            return False

    def position(self, movie_id: int) -> int:
        """Row of movie_id in ids/titles/genres; UnknownIdError('movie', [id]) if absent."""
        try:
            return self._position[int(movie_id)]
        except (KeyError, TypeError, ValueError):
            raise UnknownIdError("movie", [movie_id]) from None

    def title_of(self, movie_id: int) -> str:
        return self.titles[self.position(movie_id)]

    def genres_of(self, movie_id: int) -> str:
        return self.genres[self.position(movie_id)]


@dataclass(frozen=True)
class Dataset:
    ratings: Ratings
    catalog: Catalog
    source: str  # what the user gave (path or URI)
    format: str  # "ml-1m" | "ml-100k" | "ml-latest"
    fingerprint: str  # sha256 over the raw bytes of the files read
    files: tuple[str, ...] = field(default=())  # names of the files read, in fingerprint order


# ------------------------------------------------------------------------------------ formats


@dataclass(frozen=True)
class _Format:
    name: str
    label: str
    ratings: str
    movies: str
    optional: tuple[str, ...] = ()

    def describe(self) -> str:
        opt = f" (+ optional {', '.join(self.optional)})" if self.optional else ""
        return f"{self.label}: {self.ratings} + {self.movies}{opt}"


FORMATS = (
    _Format("ml-1m", "ml-1m / ml-10m ('::'-separated .dat)", "ratings.dat", "movies.dat"),
    _Format("ml-100k", "ml-100k (tab-separated u.data, '|'-separated u.item)", "u.data", "u.item", ("u.genre",)),
    _Format("ml-latest", "ml-latest / ml-latest-small / ml-25m (CSV with header)", "ratings.csv", "movies.csv"),
)


def known_formats() -> str:
    return "; ".join(f.describe() for f in FORMATS)


# ------------------------------------------------------------------------------------ sources


class _Source:
    """A flat set of named files: a directory, a zip, or an S3 prefix."""

    where: str

    def names(self) -> set[str]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def dirs(self) -> set[str]:
        """Names that are folders where a file may be expected (for the error message)."""
        return set()

    def close(self) -> None:
        pass


class _DirSource(_Source):
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

    def __init__(self, data: bytes | Path, where: str):
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
        candidates = sorted(k for k, v in by_folder.items() if _has_any_format(set(v)))
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
    def __init__(self, uri: str, endpoint_url: str | None):
        from recvec.engine import storage

        self.uri = uri.rstrip("/")
        self.where = self.uri
        self.client = storage.s3_client(endpoint_url)
        self._names = set(storage.list_files(self.uri, recursive=False, client=self.client))

    def names(self) -> set[str]:
        return set(self._names)

    def read(self, name: str) -> bytes:
        from recvec.engine import storage

        return storage.read_bytes(f"{self.uri}/{name}", client=self.client)


def _open_source(path: str, endpoint_url: str | None) -> _Source:
    from recvec.engine import storage

    if storage.is_s3(path):
        if path.lower().endswith(".zip"):
            return _ZipSource(storage.read_bytes(path, endpoint_url=endpoint_url), path)
        src = _S3Source(path, endpoint_url)
        if not src._names:
            raise DataError(f"no files under {src.where} (endpoint {storage._endpoint_of(src.client)}). "
                            f"Expected one of the MovieLens formats: {known_formats()}")
        return src
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data path not found: {p} (give a directory, a .zip, s3://bucket/prefix or 'synthetic')")
    if p.is_dir():
        src = _DirSource(p)
        if not _has_any_format(src.names()):  # the files at the top level win; else one sub-folder
            subdirs = sorted(c for c in p.iterdir() if c.is_dir() and not c.name.startswith("."))
            with_data = [c for c in subdirs if _has_any_format(_DirSource(c).names())]
            if len(with_data) > 1:
                raise _ambiguous(str(p), [c.name for c in with_data])
            if with_data:
                return _DirSource(with_data[0])
        return src
    if zipfile.is_zipfile(p):
        return _ZipSource(p, str(p))
    if p.suffix.lower() == ".zip":
        raise DataError(f"{p} is not a readable zip file")
    raise DataError(f"{p} is neither a directory nor a .zip file. Expected one of the MovieLens formats: "
                    f"{known_formats()}")


def _has_any_format(names: set[str]) -> bool:
    return any(f.ratings in names or f.movies in names for f in FORMATS)


def _detect(src: _Source) -> _Format:
    names = src.names()
    for f in FORMATS:
        if f.ratings in names and f.movies in names:
            return f
    for f in FORMATS:
        folders = [n for n in (f.ratings, f.movies) if n in src.dirs()]
        if folders:
            what = "is a directory" if len(folders) == 1 else "are directories"
            raise DataError(f"{', '.join(folders)} in {src.where} {what}, not a file: the {f.label} format "
                            f"needs the files {f.ratings} and {f.movies}")
    for f in FORMATS:
        have = [n for n in (f.ratings, f.movies) if n in names]
        if have:
            missing = [n for n in (f.ratings, f.movies) if n not in names]
            raise DataError(
                f"{', '.join(missing)} missing in {src.where}: the {f.label} format needs "
                f"{f.ratings} and {f.movies}, found only {', '.join(have)}"
            )
    unsafe = getattr(src, "unsafe", [])
    if unsafe and not names:
        raise DataError(f"{src.where}: every member of the zip has an unsafe path that would escape the folder it "
                        f"is unpacked into ({', '.join(shorten(m, 60) for m in unsafe[:3])}"
                        f"{' ...' if len(unsafe) > 3 else ''}); refusing to read them")
    shown = ", ".join(sorted(names)[:12]) + (" ..." if len(names) > 12 else "")
    raise DataError(
        f"unknown data format in {src.where} (it holds: {shown or 'no files'}). "
        f"Known formats: {known_formats()}"
    )


# ------------------------------------------------------------------------------------ parsing

_INT = re.compile(r"\s*[+-]?[0-9]+\s*\Z")
_FLOAT = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*\Z")
_INT64_MAX = 2**63 - 1
# Control characters (tab excepted) cannot be part of a title: binary data or a wrong encoding.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_SEP_NAMES = {"\t": "tabs", ",": "','", "::": "'::'", "|": "'|'", ";": "';'", " ": "spaces"}


def _decode(raw: bytes, fname: str = "file") -> str:
    """Text of a catalogue file: UTF-8 when the whole file is; otherwise each line is UTF-8 or else
    Latin-1 (read as Windows-1252, its superset, so bytes 0x80-0x9f become the characters meant).
    A line in none of these raises a DataError naming it. A UTF-8 byte-order mark is dropped."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out = []
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        try:
            out.append(line.decode("utf-8"))
            continue
        except UnicodeDecodeError:
            pass
        try:
            out.append(line.decode("cp1252"))
        except UnicodeDecodeError as e:
            raise DataError(f"{fname} line {lineno}: text is neither UTF-8 nor Latin-1/Windows-1252 "
                            f"(byte 0x{line[e.start]:02x} at column {e.start + 1}); save the file as UTF-8") from None
    return "\n".join(out)


@dataclass(frozen=True)
class _Layout:
    """Where a ratings file's values are: separator, header lines, number of columns, and the
    columns of (user, movie, rating, timestamp). Non-plain layouts (a CSV whose header has extra
    or reordered columns) are read with the csv module."""

    sep: bytes
    skip: int = 0
    ncols: int = 4
    cols: tuple[int, int, int, int] = (0, 1, 2, 3)

    @property
    def plain(self) -> bool:
        return self.ncols == 4 and self.cols == (0, 1, 2, 3)


def _fast_ratings(raw: bytes, sep: bytes, skip: int):
    """Arrays via pandas' C tokenizer, or None when anything looks wrong (the slow scan then
    finds and names the bad line)."""
    import pandas as pd

    if raw.count(b"\r") != raw.count(b"\r\n"):  # a lone CR: pandas would split there, the scan not
        return None
    if sep != b"\t":
        if b"\t" in raw:
            return None
        raw = raw.replace(sep, b"\t")
    try:
        with np.errstate(all="ignore"):  # NaN -> int casts inside pandas warn; such input fails anyway
            df = pd.read_csv(
                io.BytesIO(raw), sep="\t", header=None, skiprows=skip, names=["u", "i", "r", "t"],
                dtype={"u": np.int64, "i": np.int64, "r": np.float64, "t": np.int64},
                engine="c", quoting=csv.QUOTE_NONE, skip_blank_lines=True, na_filter=False,
            )
    except Exception:  # ParserError, ValueError (non-numeric), OverflowError ...
        return None
    u = df["u"].to_numpy(dtype=np.int64)
    i = df["i"].to_numpy(dtype=np.int64)
    r = df["r"].to_numpy(dtype=np.float64)
    t = df["t"].to_numpy(dtype=np.int64)
    ok = (
        len(u) > 0
        and bool(np.all((r >= MIN_RATING) & (r <= MAX_RATING)))
        and int(u.min()) >= 0 and int(i.min()) >= 0 and int(t.min()) >= 0
    )
    if not ok:
        return None
    return u, i, r.astype(np.float32), t


def _parse_int(tok: str, what: str, fname: str, lineno: int) -> int:
    """A non-negative 64-bit integer; integral values in float notation ('978300760.0', as written
    by tools that stored the column as float) are accepted, as the fast path's parser does."""
    if _INT.match(tok):
        v = int(tok)
    elif _FLOAT.match(tok) and math.isfinite(f := float(tok)) and f.is_integer():
        v = int(f)
    else:
        raise DataError(f"{fname} line {lineno}: {what} {shown(tok.strip())} is not an integer")
    if v < 0:
        raise DataError(f"{fname} line {lineno}: {what} {v} is negative")
    if v > _INT64_MAX:
        raise DataError(f"{fname} line {lineno}: {what} {tok.strip()} is too large (over 2^63-1)")
    return v


def _parse_rating(tok: str, fname: str, lineno: int) -> float:
    try:
        if "_" in tok:
            raise ValueError(tok)
        v = float(tok)
    except ValueError:
        raise DataError(f"{fname} line {lineno}: rating {shown(tok.strip())} is not a number") from None
    if not (MIN_RATING <= v <= MAX_RATING):
        raise DataError(f"{fname} line {lineno}: rating {tok.strip()} is out of range "
                        f"({MIN_RATING:g} to {MAX_RATING:g} stars)")
    return v


def _sep_hint(line: str, sep: str, n: int) -> str:
    """' (it looks separated by tabs)' when another usual separator splits the line into n fields."""
    for other in ("::", "\t", ",", ";", "|", " "):
        if other != sep and len(line.strip().split(other)) == n:
            return f" (the line looks separated by {_SEP_NAMES[other]}: wrong delimiter?)"
    return ""


def _csv_records(text: str, skip: int, fname: str):
    """(first line number, fields) of each non-blank CSV record after the first `skip` records."""
    reader = csv.reader(io.StringIO(text, newline=""))
    prev = 0
    seen = 0
    try:
        for rec in reader:
            start, prev = prev + 1, reader.line_num
            seen += 1
            if seen <= skip or not rec or (len(rec) == 1 and not rec[0].strip()):
                continue
            yield start, rec
    except csv.Error as e:
        raise DataError(f"{fname} line {reader.line_num}: {e}") from None


def _scan_ratings(raw: bytes, layout: _Layout, fname: str):
    """Line-by-line parse: (users, items, ratings, timestamps, line numbers); raises DataError
    naming the first bad line (1-based)."""
    sep_s = layout.sep.decode()
    shown_sep = _SEP_NAMES.get(sep_s, repr(sep_s))
    text = raw.decode("latin-1")  # numbers are ASCII; never fails
    if layout.plain:
        records = ((n, line, line.split(sep_s)) for n, line in _numbered(text) if n > layout.skip and line.strip())
    else:
        records = ((n, "", rec) for n, rec in _csv_records(text, layout.skip, fname))
    u, i, r, t, lines = [], [], [], [], []
    cu, ci, cr, ct = layout.cols
    for lineno, line, parts in records:
        if len(parts) != layout.ncols:
            what = "" if layout.plain else " (as in the header)"
            hint = _sep_hint(line, sep_s, layout.ncols) if layout.plain else ""
            raise DataError(f"{fname} line {lineno}: expected {layout.ncols} fields separated by {shown_sep}"
                            f"{what}, got {len(parts)}{hint}")
        u.append(_parse_int(parts[cu], "user id", fname, lineno))
        i.append(_parse_int(parts[ci], "movie id", fname, lineno))
        r.append(_parse_rating(parts[cr], fname, lineno))
        t.append(_parse_int(parts[ct], "timestamp", fname, lineno))
        lines.append(lineno)
    if not u:
        raise DataError(f"{fname} holds no ratings")
    return (np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64), np.asarray(r, dtype=np.float32),
            np.asarray(t, dtype=np.int64), np.asarray(lines, dtype=np.int64))


def _slow_ratings(raw: bytes, sep: bytes, skip: int, fname: str):
    """Line-by-line parse of a plain 4-column file; raises DataError naming the first bad line."""
    return _scan_ratings(raw, _Layout(sep, skip), fname)[:4]


def _csv_header(raw: bytes, header: str, fname: str) -> tuple[list[str], str]:
    """(column names, shown first line) of a CSV file's header line."""
    end = raw.find(b"\n")
    first = (raw if end < 0 else raw[:end]).decode("utf-8", "replace").rstrip("\r").lstrip("\ufeff")
    try:
        names = next(csv.reader([first]), [])
    except csv.Error:
        names = []
    return [n.strip() for n in names], first


def _columns(names: list[str], wanted: tuple[str, ...], first: str, fname: str) -> tuple[int, ...]:
    """Positions of the wanted columns (case-insensitive); DataError naming missing or repeated ones."""
    lower = [n.lower() for n in names]
    missing = [w for w in wanted if w.lower() not in lower]
    expected = f"{fname} line 1: expected the header {shown(','.join(wanted))} (extra columns are ignored)"
    if missing:
        cols = ", ".join(repr(m) for m in missing)
        raise DataError(f"{expected}; missing column{'s' if len(missing) > 1 else ''} {cols} in {first[:80]!r}")
    twice = [w for w in wanted if lower.count(w.lower()) > 1]
    if twice:
        raise DataError(f"{expected}; column {shown(twice[0])} appears more than once in {first[:80]!r}")
    return tuple(lower.index(w.lower()) for w in wanted)


def _ratings_layout(raw: bytes, sep: bytes, fname: str, header: str | None) -> _Layout:
    if header is None:
        return _Layout(sep)
    names, first = _csv_header(raw, header, fname)
    cols = _columns(names, tuple(header.split(",")), first, fname)
    return _Layout(sep, skip=1, ncols=len(names), cols=cols)  # type: ignore[arg-type]


def _first_duplicate(users: np.ndarray, items: np.ndarray) -> tuple[int, int, int] | None:
    """(earlier row, later row, number of repeats) of the first repeated (user, movie) pair in file
    order, or None."""
    import pandas as pd

    if len(users) < 2:
        return None
    if int(users.max()) < 2**31 and int(items.max()) < 2**32:  # ids are >= 0 here
        dup = pd.Series((users << 32) | items).duplicated().to_numpy()
    else:
        dup = pd.DataFrame({"u": users, "i": items}).duplicated().to_numpy()
    if not dup.any():
        return None
    later = int(np.argmax(dup))
    earlier = int(np.flatnonzero((users[:later] == users[later]) & (items[:later] == items[later]))[0])
    return earlier, later, int(dup.sum())


def _row_lines(raw: bytes, layout: _Layout, fname: str, n_rows: int) -> np.ndarray:
    """Line number of every data row (for messages about rows found by array checks)."""
    lines = _scan_ratings(raw, layout, fname)[4]
    return lines if len(lines) == n_rows else np.arange(1, n_rows + 1) + layout.skip


def _parse_ratings(raw: bytes, *, sep: bytes, fname: str, header: str | None = None) -> tuple[Ratings, _Layout, bytes]:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise DataError(f"{fname} holds no ratings: the file is empty")
    layout = _ratings_layout(raw, sep, fname, header)
    arrays = _fast_ratings(raw, sep, layout.skip) if layout.plain else None
    if arrays is None:
        arrays = _scan_ratings(raw, layout, fname)[:4]
    ratings = Ratings(*arrays)
    dup = _first_duplicate(ratings.users, ratings.items)
    if dup is not None:
        earlier, later, count = dup
        lines = _row_lines(raw, layout, fname, len(ratings))
        more = f"; {count} repeated pairs in all" if count > 1 else ""
        raise DataError(f"{fname} line {lines[later]}: user {ratings.users[later]} rated movie {ratings.items[later]} "
                        f"again (first on line {lines[earlier]}); each (user, movie) pair may appear once{more}")
    return ratings, layout, raw


def parse_ratings(raw: bytes, *, sep: bytes, fname: str, header: str | None = None) -> Ratings:
    """Ratings from the raw bytes of a file of (user, movie, rating, timestamp) rows.

    ``header`` (CSV) names the required columns, e.g. 'userId,movieId,rating,timestamp': they may
    come in any order, extra columns are ignored, a missing one is an error naming it. Ids and
    timestamps are non-negative integers, ratings within 0.5-5 stars, and each (user, movie) pair
    appears once; rows need not be in time order."""
    return _parse_ratings(raw, sep=sep, fname=fname, header=header)[0]


def _numbered(text: str):
    """(1-based line number, line) split on '\\n' only (str.splitlines would also split on
    characters such as U+0085 that can occur inside latin-1 titles)."""
    for lineno, line in enumerate(text.split("\n"), start=1):
        yield lineno, line[:-1] if line.endswith("\r") else line


def _lines(text: str):
    for lineno, line in _numbered(text):
        if line.strip():
            yield lineno, line


def _catalog(rows: list[tuple[int, str, str, int]], fname: str) -> Catalog:
    """Catalog from (movie id, title, genres, line) rows: ids unique, every title non-empty text."""
    seen: dict[int, int] = {}
    for mid, title, genres, lineno in rows:
        if mid in seen:
            raise DataError(f"{fname} line {lineno}: movie id {mid} already listed on line {seen[mid]}")
        seen[mid] = lineno
        if not title:
            raise DataError(f"{fname} line {lineno}: movie {mid} has no title")
        bad = _CONTROL.search(title) or _CONTROL.search(genres)
        if bad:
            raise DataError(f"{fname} line {lineno}: movie {mid} has the control character U+{ord(bad.group()):04X} "
                            "in its title or genres (binary data, or text in an encoding other than UTF-8/Latin-1?)")
    if not rows:
        raise DataError(f"{fname} lists no movies")
    return Catalog(
        ids=np.asarray([r[0] for r in rows], dtype=np.int64),
        titles=tuple(r[1] for r in rows),
        genres=tuple(r[2] for r in rows),
    )


def parse_movies_dat(raw: bytes, fname: str = "movies.dat") -> Catalog:
    """'id::title::genres' (ML-1M: latin-1; ML-10M: utf-8)."""
    rows = []
    for lineno, line in _lines(_decode(raw, fname)):
        parts = line.split("::")
        if len(parts) != 3:
            raise DataError(f"{fname} line {lineno}: expected 3 fields separated by '::', got {len(parts)}"
                            f"{_sep_hint(line, '::', 3)}")
        rows.append((_parse_int(parts[0], "movie id", fname, lineno), parts[1].strip(), parts[2].strip(), lineno))
    return _catalog(rows, fname)


def parse_u_genre(raw: bytes, fname: str = "u.genre") -> tuple[str, ...]:
    names: dict[int, str] = {}
    for lineno, line in _lines(raw.decode("latin-1")):
        parts = line.split("|")
        if len(parts) != 2:
            raise DataError(f"{fname} line {lineno}: expected 'name|index', got {len(parts)} fields")
        idx = _parse_int(parts[1], "genre index", fname, lineno)
        if idx in names:
            raise DataError(f"{fname} line {lineno}: genre index {idx} is listed twice")
        names[idx] = parts[0].strip()
    if not names:
        raise DataError(f"{fname} lists no genres")
    if sorted(names) != list(range(len(names))):
        shown = ", ".join(str(k) for k in sorted(names)[:20])
        raise DataError(f"{fname}: genre indices must be 0..{len(names) - 1}, got {shown}")
    return tuple(names[k] for k in range(len(names)))


def parse_u_item(raw: bytes, genres: tuple[str, ...] = ML100K_GENRES, fname: str = "u.item") -> Catalog:
    """'id|title|release|video release|url|flag*19' (latin-1); genres = names of the set flags."""
    n = 5 + len(genres)
    rows = []
    for lineno, line in _lines(_decode(raw, fname)):
        parts = line.split("|")
        if len(parts) != n:
            raise DataError(f"{fname} line {lineno}: expected {n} fields separated by '|' "
                            f"(5 + {len(genres)} genre flags), got {len(parts)}")
        flags = parts[5:]
        if any(f.strip() not in ("0", "1") for f in flags):
            raise DataError(f"{fname} line {lineno}: genre flags must be 0 or 1")
        g = "|".join(name for name, f in zip(genres, flags) if f.strip() == "1")
        rows.append((_parse_int(parts[0], "movie id", fname, lineno), parts[1].strip(), g, lineno))
    return _catalog(rows, fname)


MOVIES_CSV_COLUMNS = ("movieId", "title", "genres")


def parse_movies_csv(raw: bytes, fname: str = "movies.csv") -> Catalog:
    """'movieId,title,genres' with a header and quoted titles (utf-8). The columns may come in any
    order and extra columns are ignored; a missing one is an error naming it."""
    text = _decode(raw, fname)
    first = text.split("\n", 1)[0].rstrip("\r")
    try:
        header = next(csv.reader([first]), [])
    except csv.Error:
        header = []
    names = [h.strip() for h in header]
    ci, ct, cg = _columns(names, MOVIES_CSV_COLUMNS, first, fname)
    plain = len(names) == 3 and (ci, ct, cg) == (0, 1, 2)
    rows = []
    for lineno, rec in _csv_records(text, 1, fname):
        if len(rec) != len(names):
            what = "(movieId,title,genres)" if plain else "(as in the header)"
            raise DataError(f"{fname} line {lineno}: expected {len(names)} comma-separated fields "
                            f"{what}, got {len(rec)}")
        rows.append((_parse_int(rec[ci], "movie id", fname, lineno), rec[ct].strip(), rec[cg].strip(), lineno))
    return _catalog(rows, fname)


# ------------------------------------------------------------------------------------ loading


def _fingerprint(files: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


def _check_rated_in_catalog(ratings: Ratings, catalog: Catalog, raw: bytes, layout: _Layout, fmt: _Format) -> None:
    """Every rated movie must be in the catalogue (true of every MovieLens release): a rating of an
    unlisted movie is an error naming its line, never silently dropped or kept."""
    known = np.isin(ratings.items, catalog.ids)
    if known.all():
        return
    bad = np.flatnonzero(~known)
    first = int(bad[0])
    line = _row_lines(raw, layout, fmt.ratings, len(ratings))[first]
    n_movies = len(np.unique(ratings.items[bad]))
    raise DataError(f"{fmt.ratings} line {line}: movie id {ratings.items[first]} is not in {fmt.movies} "
                    f"({len(bad)} rating{'s' if len(bad) > 1 else ''} of {n_movies} movie id"
                    f"{'s' if n_movies > 1 else ''} missing from the catalogue; every rated movie must be listed)")


def _load_from_source(src: _Source, source: str, progress: bool) -> Dataset:
    fmt = _detect(src)
    wanted = [fmt.ratings, fmt.movies] + [n for n in fmt.optional if n in src.names()]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(wanted), desc="loading data", unit="file", leave=False)
    raw: dict[str, bytes] = {}
    for name in wanted:
        raw[name] = src.read(name)
        if bar is not None:
            bar.set_postfix_str(name)
            bar.update(1)
    if bar is not None:
        bar.close()

    what = {fmt.ratings: "ratings", fmt.movies: "movies", "u.genre": "genres"}
    for name, data in raw.items():
        if not data.strip():
            raise DataError(f"{name} holds no {what.get(name, 'data')}: the file is empty (in {src.where})")

    if fmt.name == "ml-1m":
        ratings, layout, rraw = _parse_ratings(raw["ratings.dat"], sep=b"::", fname="ratings.dat")
        catalog = parse_movies_dat(raw["movies.dat"])
    elif fmt.name == "ml-100k":
        genres = parse_u_genre(raw["u.genre"]) if "u.genre" in raw else ML100K_GENRES
        ratings, layout, rraw = _parse_ratings(raw["u.data"], sep=b"\t", fname="u.data")
        catalog = parse_u_item(raw["u.item"], genres)
    else:
        ratings, layout, rraw = _parse_ratings(raw["ratings.csv"], sep=b",", fname="ratings.csv",
                                               header="userId,movieId,rating,timestamp")
        catalog = parse_movies_csv(raw["movies.csv"])
    _check_rated_in_catalog(ratings, catalog, rraw, layout, fmt)
    files = list(raw.items())
    return Dataset(
        ratings=ratings, catalog=catalog, source=source, format=fmt.name,
        fingerprint=_fingerprint(files), files=tuple(n for n, _ in files),
    )


def load_dataset(path: str, *, endpoint_url: str | None = None, progress: bool = False) -> Dataset:
    """Load MovieLens from a directory, a .zip of one, or s3://bucket/prefix.

    ``"synthetic"`` loads the embedded default dataset (written once to the cache)."""
    path = os.fspath(path)
    if path == "synthetic":
        from recvec.engine.synthetic import default_dataset_dir

        src: _Source = _DirSource(default_dataset_dir())
        return _load_from_source(src, "synthetic", progress)
    src = _open_source(path, endpoint_url)
    try:
        return _load_from_source(src, path, progress)
    finally:
        src.close()
