"""Shared parsing rules for dataset formats: the ratings-file parser (a fast pandas path with a
line-by-line scan behind it), text decoding, line scanning, and building a checked Catalog.

Every error is a DataError naming the file and its 1-based line. What is checked: fields and
delimiter, integer ids and timestamps >= 0, ratings within MIN_RATING..MAX_RATING, each (user,
movie) pair once, catalogue ids unique and titles non-empty text (UTF-8, else Latin-1 per line),
CSV headers naming the required columns (extra ones ignored).

Ratings are parsed by pyarrow's CSV reader on the raw bytes ('::' as a ':' delimiter whose
doubled colon leaves empty columns), far faster than the lab's read with pandas' python engine;
only when that fast path fails (or the values fail a check) does the line-by-line scan run, to
name the first bad line. A format module (see formats.py) calls these; none of them knows any
file name."""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from recvec.engine.data.records import Catalog, Ratings
from recvec.errors import DataError, shown

MIN_RATING = 0.5
MAX_RATING = 5.0

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
    """Arrays via pyarrow's CSV reader (one thread), or None when anything looks wrong (the slow
    scan then finds and names the bad line).

    A one-byte separator is the reader's delimiter; '::' is read with delimiter ':' as 7 columns
    whose 2nd, 4th and 6th must be empty (the doubled colon). Quotes are not special, empty values
    are nulls (a null anywhere fails the read); the values must then pass the range checks."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    if b"\r" in raw and raw.count(b"\r") != raw.count(b"\r\n"):  # a lone CR: pyarrow would split there
        return None
    if sep == b"::":
        names = ["u", "_a", "i", "_b", "r", "_c", "t"]
        delimiter = ":"
    elif len(sep) == 1 and sep not in b"\r\n\"":
        names = ["u", "i", "r", "t"]
        delimiter = sep.decode("latin-1")
    else:
        return None
    types = {"u": pa.int64(), "i": pa.int64(), "r": pa.float64(), "t": pa.int64(),
             **{n: pa.null() for n in names if n.startswith("_")}}
    try:
        table = pacsv.read_csv(
            pa.py_buffer(raw),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False, double_quote=False,
                                             escape_char=False, newlines_in_values=False, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=["u", "i", "r", "t"],
                                                 null_values=[""], strings_can_be_null=True),
        )
    except (pa.ArrowException, ValueError, OverflowError):
        return None
    if any(table.column(c).null_count for c in ("u", "i", "r", "t")):
        return None
    u, i, r, t = (table.column(c).to_numpy() for c in ("u", "i", "r", "t"))
    ok = (
        len(u) > 0
        and bool(np.all((r >= MIN_RATING) & (r <= MAX_RATING)))
        and int(u.min()) >= 0 and int(i.min()) >= 0 and int(t.min()) >= 0
    )
    if not ok:
        return None
    return (np.ascontiguousarray(u, dtype=np.int64), np.ascontiguousarray(i, dtype=np.int64),
            r.astype(np.float32), np.ascontiguousarray(t, dtype=np.int64))


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
    """A rating within MIN_RATING..MAX_RATING stars; DataError naming the line otherwise."""
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
    """The layout of a ratings file: plain 4 columns when header is None, else the positions of
    header's columns in the file's first line (DataError naming missing or repeated ones)."""
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
    width = int(items.max()) + 1  # ids are >= 0 here
    if (int(users.max()) + 1) * width <= 1 << 27:  # the usual case: a bitmap of every pair, 128 MB at most
        seen = np.zeros((int(users.max()) + 1) * width, dtype=np.bool_)
        seen[users * width + items] = True
        if np.count_nonzero(seen) == len(users):
            return None
    if int(users.max()) < 2**31 and int(items.max()) < 2**32:
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


class ParsedRatings(NamedTuple):
    """A parsed ratings file: the Ratings, the layout they were read with, and the raw bytes (the
    BOM dropped); layout and raw let later checks name the line of a row (see _row_lines)."""

    ratings: Ratings
    layout: _Layout
    raw: bytes


def _parse_ratings(raw: bytes, *, sep: bytes, fname: str, header: str | None = None) -> ParsedRatings:
    """parse_ratings, also returning the layout and BOM-less bytes (a ParsedRatings)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw or raw.isspace():
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
    return ParsedRatings(ratings, layout, raw)


def parse_ratings(raw: bytes, *, sep: bytes, fname: str, header: str | None = None) -> Ratings:
    """Ratings from the raw bytes of a file of (user, movie, rating, timestamp) rows.

    ``header`` (CSV) names the required columns, e.g. 'userId,movieId,rating,timestamp': they may
    come in any order, extra columns are ignored, a missing one is an error naming it. Ids and
    timestamps are non-negative integers, ratings within 0.5-5 stars, and each (user, movie) pair
    appears once; rows need not be in time order.

    Returns Ratings of n rows (users, items, timestamps int64; ratings float32), in file order.
    Raises DataError naming the file and the first bad line (or 'holds no ratings')."""
    return _parse_ratings(raw, sep=sep, fname=fname, header=header)[0]


def _numbered(text: str):
    """(1-based line number, line) split on '\\n' only (str.splitlines would also split on
    characters such as U+0085 that can occur inside latin-1 titles)."""
    for lineno, line in enumerate(text.split("\n"), start=1):
        yield lineno, line[:-1] if line.endswith("\r") else line


def _lines(text: str):
    """(1-based line number, line) of each non-blank line, as _numbered splits them."""
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


