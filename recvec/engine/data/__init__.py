"""Dataset loading -> a Dataset of plain arrays and a Catalog, from either

- a directory, a .zip or an s3:// prefix holding one dataset in a registered folder format
  (ML-1M/10M '::', ML-100K, ml-latest CSV), or
- one table file (CSV, TSV, Parquet, JSON Lines; the text ones optionally .gz/.zst; local or
  s3://bucket/key) of interactions with any column names and integer or string ids, optionally
  with an item table: a DatasetSpec, or a dataset spec file (.toml) holding one.

The package: records.py (Ratings, Catalog, Dataset), sources.py (where folder files come from),
formats.py (the Format and TableFormat interfaces), parsing.py (the shared parsing and error
rules), movielens.py (the MovieLens formats), spec.py (DatasetSpec, column maps, spec files),
tables.py (table files and their formats, read with pyarrow), tabular.py (tables -> Dataset).
Here: the registries, FORMATS and TABLE_FORMATS, and the loader.

The MovieLens checks below; for tables see tabular.py.

What is checked (each failure a DataError naming the file and line): fields and delimiter, integer
ids and timestamps >= 0, ratings within 0.5-5, each (user, movie) pair once, every rated movie in the
catalogue, catalogue ids unique and titles non-empty text (UTF-8, else Latin-1 per line), CSV
headers naming the required columns (extra ones ignored), and exactly one dataset in a zip or
directory. Rows need not be in time order: the split sorts them.

Adding a format: a module with a Format subclass (see formats.py and movielens.py), and its
instance in FORMATS below (detection tries them in order); a table format: a TableFormat
subclass (see tables.py) and its instance in TABLE_FORMATS (chosen by the file's suffix)."""

from __future__ import annotations

import hashlib
import os

import numpy as np

from recvec.engine.data.formats import Format, describe_all
from recvec.engine.data.movielens import (
    ML1M,
    ML100K,
    ML100K_GENRES,
    MOVIES_CSV_COLUMNS,
    MLLatest,
    parse_movies_csv,
    parse_movies_dat,
    parse_u_genre,
    parse_u_item,
)
from recvec.engine.data.parsing import (
    MAX_RATING,
    MIN_RATING,
    _Layout,
    _row_lines,
    parse_ratings,
)

# private parsing helpers the tests call as recvec.engine.data._name (re-exported, 'x as x')
from recvec.engine.data.parsing import _fast_ratings as _fast_ratings
from recvec.engine.data.parsing import _ratings_layout as _ratings_layout
from recvec.engine.data.parsing import _scan_ratings as _scan_ratings
from recvec.engine.data.parsing import _slow_ratings as _slow_ratings
from recvec.engine.data.records import Catalog, Dataset, Ratings
from recvec.engine.data.sources import _DirSource, _open_source, _Source
from recvec.engine.data.spec import Columns, DatasetSpec, ItemColumns, spec_from_toml
from recvec.engine.data.tables import (
    CSVTable,
    JSONLinesTable,
    ParquetTable,
    TSVTable,
    format_for,
)
from recvec.engine.data.tabular import load_table_dataset
from recvec.engine.synthetic import default_dataset_dir
from recvec.errors import DataError, shorten
from recvec.progress import progress as progress_lines

__all__ = [
    "FORMATS", "MAX_RATING", "MIN_RATING", "ML100K_GENRES", "MOVIES_CSV_COLUMNS", "TABLE_FORMATS", "Catalog",
    "Columns", "Dataset", "DatasetSpec", "Format", "ItemColumns", "Ratings", "known_formats", "load_dataset", "parse_movies_csv", "parse_movies_dat", "parse_ratings",
    "parse_u_genre", "parse_u_item",
]

# The registry: every format the loader knows, in detection order.
FORMATS: tuple[Format, ...] = (
    ML1M(),
    ML100K(),
    MLLatest(),
)

# The table registry: single-file formats, chosen by the file's suffix (before any .gz/.zst).
TABLE_FORMATS = (
    CSVTable(),
    TSVTable(),
    ParquetTable(),
    JSONLinesTable(),
)


def known_formats() -> str:
    """The registered formats, one 'label: files' each, joined by '; ' (for error messages)."""
    return describe_all(FORMATS)


def _detect(src: _Source) -> Format:
    """The first registered format whose ratings and catalogue files are both in src; else a
    DataError saying what is wrong (a folder where a file is needed, a file missing, unsafe zip
    member names, or no known format)."""
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


def _fingerprint(files: list[tuple[str, bytes]]) -> str:
    """sha256 hex over (name, length, bytes) of each file, in order."""
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


def _check_rated_in_catalog(ratings: Ratings, catalog: Catalog, raw: bytes, layout: _Layout, fmt: Format) -> None:
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
    """Detect the format in src, read its files, check and parse them into a Dataset."""
    fmt = _detect(src)
    wanted = [fmt.ratings, fmt.movies] + [n for n in fmt.optional if n in src.names()]
    raw: dict[str, bytes] = {}
    with progress_lines(len(wanted), "loading data", "file", enabled=progress) as bar:
        for name in wanted:
            bar.set_postfix(file=name)
            raw[name] = src.read(name)
            bar.update(1)

    for name, data in raw.items():
        if not data.strip():
            raise DataError(f"{name} holds no {fmt.holds(name)}: the file is empty (in {src.where})")

    (ratings, layout, rraw), catalog = fmt.parse(raw)
    _check_rated_in_catalog(ratings, catalog, rraw, layout, fmt)
    files = list(raw.items())
    return Dataset(
        ratings=ratings, catalog=catalog, source=source, format=fmt.name,
        digest=_fingerprint(files), files=tuple(n for n, _ in files),
    )


def _is_spec_file(path: str) -> bool:
    return path.lower().endswith(".toml")


def as_spec(path, *, endpoint_url: str | None = None) -> DatasetSpec | None:
    """The DatasetSpec ``path`` stands for when it names a table file or a spec file (.toml; read
    here, from S3 too), else None (a folder format's directory, zip or prefix)."""
    if isinstance(path, DatasetSpec):
        return path
    path = os.fspath(path)
    if _is_spec_file(path):
        from recvec.engine import storage

        try:
            raw = storage.read_bytes(path if storage.is_s3(path) else os.path.expanduser(path),
                                     endpoint_url=endpoint_url)
        except storage.StorageError as e:
            raise DataError(f"dataset spec file {shorten(path, 160)}: {e}") from None
        return spec_from_toml(raw, path)
    if format_for(path, TABLE_FORMATS) is not None:
        return DatasetSpec(interactions=path)
    return None


def load_dataset(path, *, endpoint_url: str | None = None, progress: bool = False) -> Dataset:
    """Load a dataset: ``path`` is a directory, a .zip of one or an s3://bucket/prefix in a registered
    folder format (see known_formats); a table file (.csv, .tsv, .parquet, .jsonl, the text ones
    optionally .gz/.zst; local or s3://bucket/key) of interactions under the default column names;
    a dataset spec file (.toml); or a DatasetSpec (column maps, an item table).
    ``endpoint_url``: an S3-compatible endpoint; ``progress``: a bar on a terminal, plain lines in a log.

    ``"synthetic"`` loads the embedded default dataset (written once to the cache).

    Returns a Dataset: Ratings of n rows in file order (users, items int64 ids or string-id codes,
    timestamps int64 seconds; ratings float32) and a Catalog holding every rated item. Raises
    DataError (naming the file and line, or row and column) for anything wrong with the path or
    the data, StorageError for S3 failures. Nothing is returned half-loaded."""
    spec = as_spec(path, endpoint_url=endpoint_url)
    if spec is not None:
        ds = load_table_dataset(spec, TABLE_FORMATS, endpoint_url=endpoint_url, progress=progress)
        _say(ds.notes)
        return ds
    path = os.fspath(path)
    if path == "synthetic":
        src: _Source = _DirSource(default_dataset_dir())
        return _load_from_source(src, "synthetic", progress)
    src = _open_source(path, endpoint_url, FORMATS)
    try:
        return _load_from_source(src, path, progress)
    finally:
        src.close()


class DataNote(UserWarning):
    """How a table was read where that was a choice (time units, file order as time order, no
    ratings); the CLI prints these as 'note: ...'. Also in ``Dataset.notes``."""


def _say(notes) -> None:
    import warnings

    for note in notes:
        warnings.warn(note, DataNote, stacklevel=3)
