"""The MovieLens formats: ML-1M/10M ('::'-separated .dat), ML-100K (u.data, u.item, optional
u.genre) and ml-latest / ml-25m (CSV with a header); each a Format registered in __init__.py,
with the catalogue parsers they use."""

from __future__ import annotations

import csv
from collections.abc import Mapping

from recvec.engine.data.formats import Format
from recvec.engine.data.parsing import (
    ParsedRatings,
    _catalog,
    _columns,
    _csv_records,
    _decode,
    _lines,
    _parse_int,
    _parse_ratings,
    _sep_hint,
)
from recvec.engine.data.records import Catalog
from recvec.errors import DataError

# ML-100K's genre columns (u.genre lists the same names).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)


def parse_movies_dat(raw: bytes, fname: str = "movies.dat") -> Catalog:
    """'id::title::genres' (ML-1M: latin-1; ML-10M: utf-8) -> Catalog (ids int64, in file order).
    DataError naming the line for a wrong field count, a bad or repeated id, an empty title."""
    rows = []
    for lineno, line in _lines(_decode(raw, fname)):
        parts = line.split("::")
        if len(parts) != 3:
            raise DataError(f"{fname} line {lineno}: expected 3 fields separated by '::', got {len(parts)}"
                            f"{_sep_hint(line, '::', 3)}")
        rows.append((_parse_int(parts[0], "movie id", fname, lineno), parts[1].strip(), parts[2].strip(), lineno))
    return _catalog(rows, fname)


def parse_u_genre(raw: bytes, fname: str = "u.genre") -> tuple[str, ...]:
    """'name|index' lines (latin-1) -> the genre names in index order; the indices must be
    0..n-1, each once (DataError naming the line or the indices otherwise)."""
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
    """'id|title|release|video release|url|flag*19' (latin-1) -> Catalog; an item's genres are the
    names of its set flags, joined by '|'. DataError naming the line for a wrong field count, a
    flag other than 0/1, a bad or repeated id, an empty title."""
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
    order and extra columns are ignored; a missing one is an error naming it. Returns a Catalog
    (ids int64, in file order); DataError naming the line as parse_movies_dat."""
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



# ------------------------------------------------------------------------------------ formats


class ML1M(Format):
    """ML-1M / ML-10M: 'user::movie::rating::timestamp' ratings.dat, 'id::title::genres' movies.dat."""

    name = "ml-1m"
    label = "ml-1m / ml-10m ('::'-separated .dat)"
    ratings = "ratings.dat"
    movies = "movies.dat"

    def parse_ratings(self, raw: bytes) -> ParsedRatings:
        """Parse ratings.dat: '::'-separated user, movie, rating, timestamp."""
        return _parse_ratings(raw, sep=b"::", fname=self.ratings)

    def parse_catalog(self, files: Mapping[str, bytes]) -> Catalog:
        """Parse movies.dat: 'id::title::genres'."""
        return parse_movies_dat(files[self.movies], self.movies)


class ML100K(Format):
    """ML-100K: tab-separated u.data, '|'-separated u.item with genre flags named by u.genre
    (ML100K_GENRES when u.genre is absent)."""

    name = "ml-100k"
    label = "ml-100k (tab-separated u.data, '|'-separated u.item)"
    ratings = "u.data"
    movies = "u.item"
    optional = ("u.genre",)

    def holds(self, name: str) -> str:
        """As Format.holds, and u.genre holds "genres"."""
        return "genres" if name == "u.genre" else super().holds(name)

    def parse_ratings(self, raw: bytes) -> ParsedRatings:
        """Parse u.data: tab-separated user, movie, rating, timestamp."""
        return _parse_ratings(raw, sep=b"\t", fname=self.ratings)

    def parse_catalog(self, files: Mapping[str, bytes]) -> Catalog:
        """Parse u.item ('|'-separated, genre flags named by u.genre, else ML100K_GENRES)."""
        return parse_u_item(files[self.movies], self._genres(files), self.movies)

    def parse(self, files: Mapping[str, bytes]) -> tuple[ParsedRatings, Catalog]:
        """As Format.parse, but u.genre is checked first (its errors come before u.data's)."""
        genres = self._genres(files)
        ratings = self.parse_ratings(files[self.ratings])
        return ratings, parse_u_item(files[self.movies], genres, self.movies)

    @staticmethod
    def _genres(files: Mapping[str, bytes]) -> tuple[str, ...]:
        return parse_u_genre(files["u.genre"]) if "u.genre" in files else ML100K_GENRES


class MLLatest(Format):
    """ml-latest / ml-latest-small / ml-25m: ratings.csv and movies.csv, each with a header."""

    name = "ml-latest"
    label = "ml-latest / ml-latest-small / ml-25m (CSV with header)"
    ratings = "ratings.csv"
    movies = "movies.csv"

    def parse_ratings(self, raw: bytes) -> ParsedRatings:
        """Parse ratings.csv, whose header must be userId,movieId,rating,timestamp."""
        return _parse_ratings(raw, sep=b",", fname=self.ratings, header="userId,movieId,rating,timestamp")

    def parse_catalog(self, files: Mapping[str, bytes]) -> Catalog:
        """Parse movies.csv (movieId, title and genres columns found by its header)."""
        return parse_movies_csv(files[self.movies], self.movies)
