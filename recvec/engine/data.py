"""MovieLens readers: directory, .zip or s3:// URI; ML-1M/10M '::', ML-100K, ml-latest CSV.

I/O lives here; everything returned is plain arrays (and a Catalog).

Ratings are parsed by pandas' C tokenizer on the raw bytes ('::' rewritten to a tab first), which
reads ML-1M's ratings.dat in 0.1-0.3 s (the lab's python-engine read: ~5 s); only when that fast path fails (or the values are out
of range) does a line-by-line scan run, to name the first bad line."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np

from recvec.errors import DataError, UnknownIdError

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

    def close(self) -> None:
        pass


class _DirSource(_Source):
    def __init__(self, root: Path):
        self.root = root
        self.where = str(root)

    def names(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_file()}

    def read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as e:
            raise DataError(f"cannot read {name} in {self.where}: {e.strerror}") from None


class _ZipSource(_Source):
    def __init__(self, data: bytes | Path, where: str):
        self.where = where
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"{where} is not a readable zip file: {e}") from None
        files = [
            i.filename for i in self.zf.infolist()
            if not i.is_dir() and not i.filename.startswith("__MACOSX/")
            and not PurePosixPath(i.filename).name.startswith("._")
            and PurePosixPath(i.filename).name != ".DS_Store"
        ]
        by_folder: dict[str, dict[str, str]] = {}  # folder ('' = root) -> {name: member}
        for f in files:
            parts = PurePosixPath(f).parts
            if len(parts) == 1:
                by_folder.setdefault("", {})[parts[0]] = f
            elif len(parts) == 2:
                by_folder.setdefault(parts[0], {})[parts[1]] = f
        self.map = by_folder.get("", {})
        if not _has_any_format(set(self.map)):  # files inside one top folder (e.g. ml-1m/)
            folders = [k for k, v in by_folder.items() if k and _has_any_format(set(v))]
            if len(folders) == 1:
                self.map = by_folder[folders[0]]
            elif not self.map and len(by_folder) == 1:  # one folder, no data: list its files in errors
                self.map = next(iter(by_folder.values()))

    def names(self) -> set[str]:
        return set(self.map)

    def read(self, name: str) -> bytes:
        try:
            return self.zf.read(self.map[name])
        except (KeyError, zipfile.BadZipFile, OSError, EOFError) as e:
            raise DataError(f"cannot read {name} from {self.where}: {e}") from None

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
            raise DataError(f"no files under {src.where}. Expected one of the MovieLens formats: {known_formats()}")
        return src
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data path not found: {p} (give a directory, a .zip, s3://bucket/prefix or 'synthetic')")
    if p.is_dir():
        src = _DirSource(p)
        if not _has_any_format(src.names()):
            subdirs = [c for c in p.iterdir() if c.is_dir() and not c.name.startswith(".")]
            if len(subdirs) == 1 and _has_any_format(_DirSource(subdirs[0]).names()):
                return _DirSource(subdirs[0])
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
        have = [n for n in (f.ratings, f.movies) if n in names]
        if have:
            missing = [n for n in (f.ratings, f.movies) if n not in names]
            raise DataError(
                f"{', '.join(missing)} missing in {src.where}: the {f.label} format needs "
                f"{f.ratings} and {f.movies}, found only {', '.join(have)}"
            )
    shown = ", ".join(sorted(names)[:12]) + (" ..." if len(names) > 12 else "")
    raise DataError(
        f"unknown data format in {src.where} (it holds: {shown or 'no files'}). "
        f"Known formats: {known_formats()}"
    )


# ------------------------------------------------------------------------------------ parsing


def _decode(raw: bytes, encodings=("utf-8", "latin-1")) -> str:
    for enc in encodings:
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")  # latin-1 never fails


def _fast_ratings(raw: bytes, sep: bytes, skip: int):
    """Arrays via pandas' C tokenizer, or None when anything looks wrong (the slow scan then
    finds and names the bad line)."""
    import pandas as pd

    if sep != b"\t":
        if b"\t" in raw:
            return None
        raw = raw.replace(sep, b"\t")
    try:
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
        and int(u.min()) >= 0 and int(i.min()) >= 0
    )
    if not ok:
        return None
    return u, i, r.astype(np.float32), t


def _parse_int(tok: str, what: str, fname: str, lineno: int) -> int:
    try:
        v = int(tok)
    except ValueError:
        raise DataError(f"{fname} line {lineno}: {what} {tok.strip()!r} is not an integer") from None
    if what != "timestamp" and v < 0:
        raise DataError(f"{fname} line {lineno}: {what} {v} is negative")
    return v


def _parse_rating(tok: str, fname: str, lineno: int) -> float:
    try:
        v = float(tok)
    except ValueError:
        raise DataError(f"{fname} line {lineno}: rating {tok.strip()!r} is not a number") from None
    if not (MIN_RATING <= v <= MAX_RATING):
        raise DataError(f"{fname} line {lineno}: rating {tok.strip()} is out of range "
                        f"({MIN_RATING:g} to {MAX_RATING:g} stars)")
    return v


def _slow_ratings(raw: bytes, sep: bytes, skip: int, fname: str):
    """Line-by-line parse; raises DataError naming the first bad line (1-based)."""
    sep_s = sep.decode()
    shown_sep = {"\t": "tabs", ",": "','", "::": "'::'"}.get(sep_s, repr(sep_s))
    text = raw.decode("latin-1")  # numbers are ASCII; never fails
    u, i, r, t = [], [], [], []
    for lineno, line in _numbered(text):
        if lineno <= skip or not line.strip():
            continue
        parts = line.split(sep_s)
        if len(parts) != 4:
            raise DataError(f"{fname} line {lineno}: expected 4 fields separated by {shown_sep}, got {len(parts)}")
        u.append(_parse_int(parts[0], "user id", fname, lineno))
        i.append(_parse_int(parts[1], "movie id", fname, lineno))
        r.append(_parse_rating(parts[2], fname, lineno))
        t.append(_parse_int(parts[3], "timestamp", fname, lineno))
    if not u:
        raise DataError(f"{fname} holds no ratings")
    try:
        return (np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64),
                np.asarray(r, dtype=np.float32), np.asarray(t, dtype=np.int64))
    except OverflowError:
        raise DataError(f"{fname}: a number does not fit in 64 bits") from None


def parse_ratings(raw: bytes, *, sep: bytes, fname: str, header: str | None = None) -> Ratings:
    """Ratings from the raw bytes of a 4-column file (user, movie, rating, timestamp)."""
    skip = 0
    if header is not None:
        end = raw.find(b"\n")
        first = (raw if end < 0 else raw[:end]).decode("utf-8", "replace").strip().lstrip("\ufeff")
        if first.replace(" ", "").lower() != header.lower():
            raise DataError(f"{fname} line 1: expected the header {header!r}, got {first[:80]!r}")
        skip = 1
    arrays = _fast_ratings(raw, sep, skip)
    if arrays is None:
        arrays = _slow_ratings(raw, sep, skip, fname)
    return Ratings(*arrays)


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
    seen: dict[int, int] = {}
    for mid, _, _, lineno in rows:
        if mid in seen:
            raise DataError(f"{fname} line {lineno}: movie id {mid} already listed on line {seen[mid]}")
        seen[mid] = lineno
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
    for lineno, line in _lines(_decode(raw)):
        parts = line.split("::")
        if len(parts) != 3:
            raise DataError(f"{fname} line {lineno}: expected 3 fields separated by '::', got {len(parts)}")
        rows.append((_parse_int(parts[0], "movie id", fname, lineno), parts[1].strip(), parts[2].strip(), lineno))
    return _catalog(rows, fname)


def parse_u_genre(raw: bytes, fname: str = "u.genre") -> tuple[str, ...]:
    names: dict[int, str] = {}
    for lineno, line in _lines(raw.decode("latin-1")):
        parts = line.split("|")
        if len(parts) != 2:
            raise DataError(f"{fname} line {lineno}: expected 'name|index', got {len(parts)} fields")
        idx = _parse_int(parts[1], "genre index", fname, lineno)
        names[idx] = parts[0].strip()
    if sorted(names) != list(range(len(names))) or not names:
        raise DataError(f"{fname}: genre indices must be 0..n-1, got {sorted(names)}")
    return tuple(names[k] for k in range(len(names)))


def parse_u_item(raw: bytes, genres: tuple[str, ...] = ML100K_GENRES, fname: str = "u.item") -> Catalog:
    """'id|title|release|video release|url|flag*19' (latin-1); genres = names of the set flags."""
    n = 5 + len(genres)
    rows = []
    for lineno, line in _lines(raw.decode("latin-1")):
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


def parse_movies_csv(raw: bytes, fname: str = "movies.csv") -> Catalog:
    """'movieId,title,genres' with a header and quoted titles (utf-8)."""
    text = _decode(raw).lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["movieId", "title", "genres"]:
            raise DataError(f"{fname} line 1: expected the header 'movieId,title,genres', got {header!r}")
        for rec in reader:
            lineno = reader.line_num
            if not rec or (len(rec) == 1 and not rec[0].strip()):
                continue
            if len(rec) != 3:
                raise DataError(f"{fname} line {lineno}: expected 3 comma-separated fields "
                                f"(movieId,title,genres), got {len(rec)}")
            rows.append((_parse_int(rec[0], "movie id", fname, lineno), rec[1].strip(), rec[2].strip(), lineno))
    except csv.Error as e:
        raise DataError(f"{fname} line {reader.line_num}: {e}") from None
    return _catalog(rows, fname)


# ------------------------------------------------------------------------------------ loading


def _fingerprint(files: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


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

    if fmt.name == "ml-1m":
        ratings = parse_ratings(raw["ratings.dat"], sep=b"::", fname="ratings.dat")
        catalog = parse_movies_dat(raw["movies.dat"])
    elif fmt.name == "ml-100k":
        genres = parse_u_genre(raw["u.genre"]) if "u.genre" in raw else ML100K_GENRES
        ratings = parse_ratings(raw["u.data"], sep=b"\t", fname="u.data")
        catalog = parse_u_item(raw["u.item"], genres)
    else:
        ratings = parse_ratings(raw["ratings.csv"], sep=b",", fname="ratings.csv",
                                header="userId,movieId,rating,timestamp")
        catalog = parse_movies_csv(raw["movies.csv"])
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
