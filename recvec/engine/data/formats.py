"""The format interfaces: what a dataset format is to the loader.

Two kinds. A dataset *folder* format (``Format``: MovieLens) is a set of named files in a
directory, zip or S3 prefix. A *table* format (``TableFormat``: CSV, TSV, Parquet, JSON Lines) is
one file of named columns, read with pyarrow, whose columns a DatasetSpec maps (see tables.py and
tabular.py); its instance is listed in TABLE_FORMATS in recvec/engine/data/__init__.py.

A folder format is a Format subclass in its own module (e.g. movielens.py) whose instance is listed in
the registry, FORMATS in recvec/engine/data/__init__.py. It owns its detection (the file names
it needs: ``ratings`` and ``movies``, plus ``optional`` ones read when present) and its parsing
(``parse_ratings`` and ``parse_catalog``, built on the shared rules in parsing.py). The loader
reads the files, checks that none is empty and that every rated movie is in the catalogue, and
fingerprints the bytes; sources.py only asks whether a set of names looks like some format."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from recvec.engine.data.parsing import ParsedRatings
from recvec.engine.data.records import Catalog


class Format:
    """One dataset format. Subclasses set the class attributes and implement the two parsers."""

    name: str  # short id, as Dataset.format: "ml-1m"
    label: str  # shown in messages: "ml-1m / ml-10m ('::'-separated .dat)"
    ratings: str  # file name of the ratings: "ratings.dat"
    movies: str  # file name of the catalogue: "movies.dat"
    optional: tuple[str, ...] = ()  # further files read when present: ("u.genre",)

    def describe(self) -> str:
        """'label: ratings + movies (+ optional ...)', as listed in 'Known formats: ...'."""
        opt = f" (+ optional {', '.join(self.optional)})" if self.optional else ""
        return f"{self.label}: {self.ratings} + {self.movies}{opt}"

    def holds(self, name: str) -> str:
        """What file `name` holds, for 'X holds no ...: the file is empty'."""
        return {self.ratings: "ratings", self.movies: "movies"}.get(name, "data")

    def parse_ratings(self, raw: bytes) -> ParsedRatings:
        """The ratings file's bytes -> ParsedRatings (usually parsing._parse_ratings with this
        format's separator and header). Raises DataError naming the file and line."""
        raise NotImplementedError

    def parse_catalog(self, files: Mapping[str, bytes]) -> Catalog:
        """The catalogue from the files read (name -> bytes: movies and any optional ones).
        Raises DataError naming the file and line."""
        raise NotImplementedError

    def parse(self, files: Mapping[str, bytes]) -> tuple[ParsedRatings, Catalog]:
        """Ratings then catalogue (so a bad ratings file is reported first)."""
        return self.parse_ratings(files[self.ratings]), self.parse_catalog(files)


def looks_like_any(names: Iterable[str], formats: Iterable[Format]) -> bool:
    """Whether `names` (file names of one folder) hold the ratings or the catalogue of a format."""
    names = set(names)
    return any(f.ratings in names or f.movies in names for f in formats)


def describe_all(formats: Iterable[Format]) -> str:
    """The formats' describe() lines joined by '; '."""
    return "; ".join(f.describe() for f in formats)


class TableFormat:
    """One single-file table format (CSV, TSV, Parquet, JSON Lines): a file with named columns that
    holds interactions or items under any column names (see tables.py and DatasetSpec).

    A subclass sets the class attributes and implements ``column_names`` and ``read`` on a
    ``tables.TableSource`` (bytes or a path, decompressed as its suffix says). Both raise DataError
    naming the file, and for a bad value its row, line (text formats) and column."""

    name: str  # short id, as Dataset.format: "parquet"
    label: str  # shown in messages: "Parquet (.parquet)"
    suffixes: tuple[str, ...]  # file name endings, lower case, before any compression suffix: (".parquet",)
    compressible: bool = True  # whether a whole-file .gz / .zst of it can be read
    header_lines: int = 0  # lines before the first row (CSV: the header): line = row + header_lines

    def describe(self) -> str:
        """'label' plus ' (optionally .gz/.zst)' where the format may be compressed as a whole."""
        return self.label + (" (optionally .gz/.zst)" if self.compressible else "")

    def column_names(self, src) -> list[str]:
        """The file's column names, in file order."""
        raise NotImplementedError

    def read(self, src, columns: list[str], *, strings: tuple[str, ...] = (), floats: tuple[str, ...] = (),
             categories: tuple[str, ...] = (), threads: bool = True):
        """A pyarrow Table of ``columns`` (all present; see column_names). ``strings`` are read as text
        and ``floats`` as float64 where the format infers types (CSV, JSON); ``categories`` (id
        columns) may come dictionary-encoded when they hold text, where the format reads that
        faster; ``threads``: pyarrow's thread pool."""
        raise NotImplementedError
