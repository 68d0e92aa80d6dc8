"""Single-file tables read with pyarrow: where a table's bytes are (TableSource: a local file or an
S3 object, decompressed as its suffix says: .gz, .zst) and the table formats (CSV, TSV, Parquet,
JSON Lines), each a TableFormat registered in TABLE_FORMATS (recvec/engine/data/__init__.py).

No hand-written parser: pyarrow reads, multi-threaded. When its read fails, the file is read again
on one thread, where pyarrow knows the row, so the DataError names the file, row and column.
Rows are counted 1-based over the data (a CSV header and blank lines not counted)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from recvec.engine import storage
from recvec.engine.data.formats import TableFormat
from recvec.errors import DataError, shorten, shown

#: Whole-file compression suffixes and pyarrow's codec names.
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}


@dataclass(frozen=True)
class TableSource:
    """One table file: a local ``path`` or the ``data`` of an S3 object, its format and compression."""

    where: str  # the path or URI as given (for messages)
    format: TableFormat
    compression: str | None = None  # pyarrow codec: "gzip" | "zstd" | None
    path: Path | None = None
    data: bytes | None = None

    @property
    def name(self) -> str:
        """The file's name (what messages call it)."""
        return self.where.rstrip("/").rsplit("/", 1)[-1]

    def stream(self):
        """A fresh pyarrow input stream over the (decompressed) bytes."""
        import pyarrow as pa

        raw = pa.py_buffer(self.data) if self.data is not None else str(self.path)
        if self.data is not None:
            raw = pa.BufferReader(raw)
            return pa.CompressedInputStream(raw, self.compression) if self.compression else raw
        return pa.input_stream(raw, compression=self.compression)

    def random_access(self):
        """The file for a random-access reader (Parquet): its path, or a buffer over the S3 bytes."""
        import pyarrow as pa

        return str(self.path) if self.data is None else pa.BufferReader(pa.py_buffer(self.data))


def split_suffix(name: str) -> tuple[str, str | None]:
    """(the format suffix, the compression codec or None) of a file name: 'a.csv.gz' -> ('.csv', 'gzip')."""
    lower = name.lower()
    for suffix, codec in COMPRESSIONS.items():
        if lower.endswith(suffix):
            return Path(lower[: -len(suffix)]).suffix, codec
    return Path(lower).suffix, None


def format_for(name: str, formats: Sequence[TableFormat]) -> tuple[TableFormat, str | None] | None:
    """The registered table format and compression a file name says, or None."""
    suffix, codec = split_suffix(name)
    for f in formats:
        if suffix in f.suffixes:
            return f, codec
    return None


def describe_tables(formats: Sequence[TableFormat]) -> str:
    """The table formats for messages: 'CSV (.csv) (optionally .gz/.zst), ...'."""
    return ", ".join(f.describe() for f in formats)


def open_table(path: str, formats: Sequence[TableFormat], *, endpoint_url: str | None = None,
               what: str = "interactions") -> TableSource:
    """The table at ``path`` (local or s3://bucket/key). DataError for a name no registered format
    reads (listing them), a compressed format that cannot be, a missing local file; StorageError
    from S3."""
    found = format_for(path, formats)
    if found is None:
        raise DataError(f"{shorten(path, 160)}: not a table file recvec reads for the {what} "
                        f"(known: {describe_tables(formats)})")
    fmt, codec = found
    if codec and not fmt.compressible:
        raise DataError(f"{shorten(path, 160)}: a {fmt.label} file is compressed inside; it cannot be read "
                        f"from a .{codec} file (decompress it first)")
    if storage.is_s3(path):
        return TableSource(path, fmt, codec, data=storage.read_bytes(path, endpoint_url=endpoint_url))
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{what} file not found: {shorten(str(p), 160)}")
    if not p.is_file():
        raise DataError(f"{shorten(str(p), 160)} is not a file (the {what} table must be one file)")
    return TableSource(str(p), fmt, codec, path=p)


def _arrow_failure(src: TableSource, e: BaseException) -> DataError:
    """A DataError for a pyarrow error that has no better translation (damaged or wrongly
    compressed file, unreadable bytes)."""
    text = shorten(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, 200)
    how = f" ({src.compression}-compressed, as its name says)" if src.compression else ""
    return DataError(f"{src.name}: not a readable {src.format.label} file{how}: {text}")


_CONVERSION = re.compile(r"In CSV column #(\d+): Row #(\d+): CSV conversion error to (\w+): invalid value '(.*)'",
                         re.S)
_CONVERSION_NO_ROW = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)", re.S)
_CSV_ROW = re.compile(r"Row #(\d+): (.*)", re.S)
_JSON_ROW = re.compile(r"JSON parse error: (.*) in row (\d+)", re.S)


class _NeedsText(Exception):
    """A CSV column pyarrow inferred as a number holds text further down: read it as text."""

    def __init__(self, column: str):
        self.column = column


class DelimitedTable(TableFormat):
    """A delimited text file with a header line (CSV, TSV): pyarrow.csv, types inferred except
    where the caller asks for text or floats."""

    delimiter = ","
    header_lines = 1

    def _parse_options(self, handler=None):
        from pyarrow import csv as pacsv

        return pacsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=handler)

    def column_names(self, src: TableSource) -> list[str]:
        """The header's names (pyarrow's open_csv reads only the first block)."""
        return list(self._first_block_schema(src).names)

    def _first_block_schema(self, src: TableSource):
        """The schema pyarrow infers from the first block (names, and types so far)."""
        import pyarrow as pa
        from pyarrow import csv as pacsv

        try:
            with pacsv.open_csv(src.stream(), parse_options=self._parse_options(),
                                convert_options=pacsv.ConvertOptions(column_types={})) as reader:
                return reader.schema
        except (pa.ArrowException, OSError, ValueError) as e:
            if "Empty CSV file" in str(e):
                raise DataError(f"{src.name} holds no rows: the file is empty") from None
            raise self._translate(src, e, []) from None

    def read(self, src: TableSource, columns: list[str], *, strings: tuple[str, ...] = (),
             floats: tuple[str, ...] = (), categories: tuple[str, ...] = (), threads: bool = True):
        """The columns as a pyarrow Table; a column pyarrow inferred as a number but holding text
        further down is read again as text (ids then are strings; a time column is parsed later).
        ``categories`` that are text (in the first block, or in ``strings``) come dictionary-encoded."""
        import pyarrow as pa

        strings = tuple(strings)
        first = self._first_block_schema(src)
        text = {n for n in first.names if pa.types.is_string(first.field(n).type)}
        while True:
            cats = tuple(c for c in categories if c in strings or c in text)
            try:
                return self._read(src, columns, strings, floats, cats, threads)
            except _NeedsText as e:
                strings = strings + (e.column,)

    def _read(self, src, columns, strings, floats, cats, threads):
        import pyarrow as pa
        from pyarrow import csv as pacsv

        types = {**{c: pa.float64() for c in floats}, **{c: pa.string() for c in strings},
                 **{c: pa.dictionary(pa.int32(), pa.string()) for c in cats}}
        first_bad: list = []

        def handler(row):
            first_bad.append(row)
            return "error"

        try:
            # The system allocator: pyarrow's default pool (mimalloc) spent 2-3x the kernel time on the
            # CSV reader's many block buffers here (25M rows: 3.2-3.8 s against 4.1-5.0 s, alternating).
            return pacsv.read_csv(
                src.stream(), read_options=pacsv.ReadOptions(use_threads=threads),
                parse_options=self._parse_options(None if threads else handler),
                convert_options=pacsv.ConvertOptions(include_columns=columns, column_types=types),
                memory_pool=pa.system_memory_pool())
        except (pa.ArrowException, OSError, ValueError) as e:
            if threads and isinstance(e, pa.ArrowInvalid):  # on one thread pyarrow knows the row
                return self._read(src, columns, strings, floats, cats, False)
            names = self.column_names(src)
            m = _CONVERSION.search(str(e)) or _CONVERSION_NO_ROW.search(str(e))
            if m is not None:
                col = names[int(m.group(1))] if int(m.group(1)) < len(names) else f"#{m.group(1)}"
                if col not in floats and col not in strings and col not in cats:
                    raise _NeedsText(col) from None
            raise self._translate(src, e, names, first_bad) from None

    def _translate(self, src: TableSource, e: BaseException, names: list[str], bad=()) -> DataError:
        msg = str(e)
        m = _CONVERSION.search(msg)
        if m is not None:
            idx, row, to, value = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            col = names[idx] if idx < len(names) else f"#{idx}"
            what = "a number" if to in ("double", "float") else f"a {to}"
            return DataError(f"{src.name} row {row - self.header_lines}, column {shown(col)}: "
                             f"{shown(value)} is not {what}")
        if bad:
            row = bad[0]
            where = f" row {row.number - self.header_lines}" if row.number is not None else ""
            return DataError(f"{src.name}{where}: expected {row.expected_columns} fields separated by "
                             f"{shown(self.delimiter)} (as in the header), got {row.actual_columns}: "
                             f"{shown(row.text)}")
        m = _CSV_ROW.search(msg)
        if m is not None:
            return DataError(f"{src.name} row {int(m.group(1)) - self.header_lines}: {shorten(m.group(2), 200)}")
        return _arrow_failure(src, e)


class CSVTable(DelimitedTable):
    """Comma-separated values with a header line (.csv)."""

    name = "csv"
    label = "CSV (.csv)"
    suffixes = (".csv",)


class TSVTable(DelimitedTable):
    """Tab-separated values with a header line (.tsv, .tab)."""

    name = "tsv"
    label = "TSV (.tsv)"
    suffixes = (".tsv", ".tab")
    delimiter = "\t"


class ParquetTable(TableFormat):
    """Apache Parquet (.parquet, .pq): typed columns, compressed inside the file."""

    name = "parquet"
    label = "Parquet (.parquet)"
    suffixes = (".parquet", ".pq")
    compressible = False

    def column_names(self, src: TableSource) -> list[str]:
        """The schema's top-level names (read from the footer only)."""
        import pyarrow as pa
        from pyarrow import parquet as pq

        try:
            return list(pq.read_schema(src.random_access()).names)
        except (pa.ArrowException, OSError, ValueError) as e:
            raise _arrow_failure(src, e) from None

    def read(self, src: TableSource, columns: list[str], *, strings: tuple[str, ...] = (),
             floats: tuple[str, ...] = (), categories: tuple[str, ...] = (), threads: bool = True):
        """The columns as stored (Parquet carries its types); text ``categories`` dictionary-encoded
        (Parquet's own dictionary pages: a dictionary per row group, unified later, instead of every
        value decoded to text and hashed again)."""
        import pyarrow as pa
        from pyarrow import parquet as pq

        try:
            schema = pq.read_schema(src.random_access())
            cats = [c for c in categories if c in schema.names
                    and (pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type))]
            if all(_fixed_width(schema.field(c).type) for c in columns):
                table = _contiguous(src, columns, threads)
                if table is not None:
                    return table
            return pq.read_table(src.random_access(), columns=columns, use_threads=threads,
                                 read_dictionary=cats or None)
        except (pa.ArrowException, OSError, ValueError) as e:
            raise _arrow_failure(src, e) from None


def _fixed_width(t) -> bool:
    """Whether a column of type ``t`` converts to numpy as it is (integers, floats): no text, no nesting."""
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _contiguous(src: TableSource, columns: list[str], threads: bool):
    """The numeric ``columns`` of a Parquet file as a Table of one chunk per column, each row group
    decoded straight into its slice of preallocated numpy arrays (row groups side by side on the
    thread policy's threads, each thread its own reader); None when a column has missing values (the
    caller then reads the file whole, and the loader names the row).

    Why: ``read_table`` gives a chunk per row group, and turning those into the contiguous arrays the
    loader holds costs a second full copy in freshly mapped memory (at 25M rows about as long as the
    read itself); this writes every value once, and holds one row group per thread besides the result."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pyarrow as pa
    from pyarrow import parquet as pq

    from recvec.threads import threads as policy

    first = pq.ParquetFile(src.random_access())
    meta = first.metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    out = [np.empty(meta.num_rows, first.schema_arrow.field(c).type.to_pandas_dtype()) for c in columns]
    local = threading.local()
    local.reader = first

    def decode(g: int) -> bool:
        reader = getattr(local, "reader", None)
        if reader is None:
            reader = local.reader = pq.ParquetFile(src.random_access())
        part = reader.read_row_group(g, columns=columns, use_threads=False)
        if part.num_rows != sizes[g]:
            raise ValueError(f"row group {g}: the footer says {sizes[g]:,} rows but {part.num_rows:,} were read")
        at = int(starts[g])
        for dst, col in zip(out, part.columns):
            if col.null_count:
                return False
            dst[at:at + sizes[g]] = col.chunk(0).to_numpy() if col.num_chunks == 1 else col.to_numpy()
        return True

    workers = min(policy(), len(sizes)) if threads else 1
    if workers <= 1:
        complete = all(decode(g) for g in range(len(sizes)))
    else:
        with ThreadPoolExecutor(workers) as pool:
            complete = all(pool.map(decode, range(len(sizes))))
    return pa.table({c: a for c, a in zip(columns, out)}) if complete else None


class JSONLinesTable(TableFormat):
    """JSON Lines (.jsonl, .ndjson): one object per line; types from JSON (a quoted id is a string)."""

    name = "jsonl"
    label = "JSON Lines (.jsonl)"
    suffixes = (".jsonl", ".ndjson")

    def column_names(self, src: TableSource) -> list[str]:
        """The keys of the objects (all of them: the whole file is read)."""
        return list(self._read_all(src, (), True).schema.names)

    def read(self, src: TableSource, columns: list[str], *, strings: tuple[str, ...] = (),
             floats: tuple[str, ...] = (), categories: tuple[str, ...] = (), threads: bool = True):
        """The columns; ``floats`` read as float64 (JSON 4 and 4.5 in one column); ``categories``
        as they come (plain text)."""
        return self._read_all(src, floats, threads).select(columns)

    def _read_all(self, src: TableSource, floats, threads: bool, whole: bytes | None = None):
        import pyarrow as pa
        from pyarrow import json as pajson

        schema = pa.schema([(c, pa.float64()) for c in floats]) if floats else None
        options = pajson.ReadOptions(use_threads=threads) if whole is None else \
            pajson.ReadOptions(use_threads=False, block_size=min(len(whole) + 1, 2**31 - 1))
        try:
            return pajson.read_json(src.stream() if whole is None else pa.BufferReader(whole), read_options=options,
                                    parse_options=pajson.ParseOptions(explicit_schema=schema,
                                                                      unexpected_field_behavior="infer"))
        except (pa.ArrowException, OSError, ValueError) as e:
            m = _JSON_ROW.search(str(e))
            if m is None:
                if "Empty JSON" in str(e):
                    raise DataError(f"{src.name} holds no rows: the file is empty") from None
                raise _arrow_failure(src, e) from None
            if whole is None:  # pyarrow counts rows within a block: read again as one block to know the row
                try:
                    data = src.stream().read()
                except (pa.ArrowException, OSError) as e2:
                    raise _arrow_failure(src, e2) from None
                if len(data) < 2**31 - 1:
                    return self._read_all(src, floats, False, data)
                raise DataError(f"{src.name}: {shorten(m.group(1), 200)}") from None
            raise DataError(f"{src.name} row {int(m.group(2)) + 1}: {shorten(m.group(1), 200)}") from None
