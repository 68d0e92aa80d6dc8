"""A dataset from tables: one interactions file (any column names, integer or string ids) and an
optional item table, as a DatasetSpec describes them, turned into Ratings and a Catalog.

What is read, and checked (each failure a DataError naming the file, and for a value its row and
column; nothing is returned half-loaded):

- the columns: the spec's, else the default names (spec.DEFAULT_NAMES); a missing one is named
  with the file's columns listed;
- ids: integer columns (or floats that are all integral) are integer ids; text columns are string
  ids (empty ones and ones over MAX_ID_CHARS refused), held as codes into sorted labels
  (records.py); a missing value is an error naming its row;
- ratings: any finite numbers (no rating column: every row is a positive);
- times: integers as epoch seconds, milliseconds, microseconds or nanoseconds (detected from the
  largest magnitude, and said), floats as epoch seconds, timestamps and dates, or ISO 8601 text;
  all become int64 seconds. No time column: file order is the time order (said);
- the item table: ids unique and of the interactions' kind, every item with events listed; titles
  and text columns as text (missing values empty).

Repeated (user, item) events are kept; the split counts each positive pair once (split.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recvec.engine.data.records import Catalog, Dataset, Ratings
from recvec.engine.data.spec import (
    DEFAULT_NAMES,
    ITEM_DEFAULT_NAMES,
    ITEM_TEXT_DEFAULT,
    DatasetSpec,
)
from recvec.engine.data.tables import TableSource, open_table
from recvec.errors import DataError, shown

#: Longest string id accepted (ids are stored as fixed-width numpy unicode).
MAX_ID_CHARS = 256
_INT64_MAX = np.iinfo(np.int64).max
#: Epoch integer units by the largest magnitude they reach: (upper bound, name, units per second).
_TIME_UNITS = ((10**11, "seconds", 1), (10**14, "milliseconds", 10**3), (10**17, "microseconds", 10**6),
               (None, "nanoseconds", 10**9))


def _holds(names: Sequence[str]) -> str:
    shown_names = ", ".join(shown(n, 40) for n in names[:30])
    return shown_names + (f" and {len(names) - 30} more" if len(names) > 30 else "")


def _find(names: Sequence[str], wanted: str) -> str | None:
    """The file's column called ``wanted`` (exactly, else case-insensitively when unambiguous)."""
    if wanted in names:
        return wanted
    lower = [n for n in names if n.lower() == wanted.lower()]
    return lower[0] if len(lower) == 1 else None


def _role_column(names: list[str], role: str, given: str | None, defaults: tuple[str, ...], src: TableSource,
                 flag: str, required: bool) -> str | None:
    """The column holding ``role``: the one given (``""``: none), else the first default name present."""
    if given == "":
        return None
    if given is not None:
        col = _find(names, given)
        if col is None:
            raise DataError(f"{src.name} has no column {shown(given)} (given as {role}={given} in {flag}); "
                            f"the file holds: {_holds(names)}", params=(flag,))
        return col
    for name in defaults:
        col = _find(names, name)
        if col is not None:
            return col
    if required:
        tried = ", ".join(repr(d) for d in defaults)
        raise DataError(f"{src.name} has no {role} column: none of {tried} is there; name it in {flag} as "
                        f"{role}=COLUMN. The file holds: {_holds(names)}", params=(flag,))
    return None


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _at(src: TableSource, j: int, col: str) -> str:
    return f"{src.name} row {j + 1}, column {shown(col)}"


def _null_row(col) -> int:
    import pyarrow.compute as pc

    return _first(np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False)))


def _to_numpy(col) -> np.ndarray:
    """A null-free pyarrow ChunkedArray as one numpy array (zero-copy for a single chunk)."""
    if col.num_chunks == 1:
        return col.chunk(0).to_numpy(zero_copy_only=False)
    return col.to_numpy()


def _string_codes(col, src: TableSource, name: str, role: str) -> tuple[np.ndarray, np.ndarray]:
    """(int64 codes, sorted unique 'U' labels) of a text column, plain or dictionary-encoded: one
    dictionary for every chunk (pyarrow's dictionary_encode, or unify_dictionaries of a column read
    encoded), then the small dictionary sorted and the codes renumbered in its order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    enc = col.unify_dictionaries() if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col)
    chunks = [c for c in enc.chunks if len(c)]
    dictionary = chunks[0].dictionary if chunks else pa.array([], pa.string())
    lengths = pc.utf8_length(dictionary).to_numpy(zero_copy_only=False)
    labels = np.asarray(dictionary.to_numpy(zero_copy_only=False).astype(str))
    bad = (lengths == 0) | (lengths > MAX_ID_CHARS)
    if bad.any():
        code = _first(bad)
        row = _first(np.concatenate([c.indices.to_numpy(zero_copy_only=False) == code for c in chunks]))
        why = "is empty" if lengths[code] == 0 else f"is {int(lengths[code]):,} characters long (at most {MAX_ID_CHARS})"
        raise DataError(f"{_at(src, row, name)}: the {role} id {why}")
    order = np.argsort(labels, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    indices = pa.chunked_array([c.indices for c in chunks], type=chunks[0].indices.type) if chunks else None
    codes = rank[_to_numpy(indices)] if indices is not None else np.zeros(0, np.int64)
    return codes, labels[order]


def id_values(col, src: TableSource, name: str, role: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A column of ids -> (int64 values, None) for integer ids, (int64 codes, sorted 'U' labels) for
    string ids. DataError naming the row for a missing, empty, over-long or non-integral id, and
    naming the type of a column that holds neither integers nor text."""
    import pyarrow as pa

    t = col.type
    if pa.types.is_dictionary(t) and not (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
        col, t = col.cast(t.value_type), t.value_type
    if col.null_count:
        raise DataError(f"{_at(src, _null_row(col), name)}: no {role} id (the value is missing)")
    if pa.types.is_integer(t):
        values = _to_numpy(col)
        if pa.types.is_unsigned_integer(t) and len(values) and int(values.max()) > _INT64_MAX:
            j = _first(values > _INT64_MAX)
            raise DataError(f"{_at(src, j, name)}: {role} id {int(values[j])} is over 2^63-1")
        return np.ascontiguousarray(values, dtype=np.int64), None
    if pa.types.is_floating(t):
        values = _to_numpy(col).astype(np.float64)
        bad = ~(np.isfinite(values) & (values == np.floor(values)) & (np.abs(values) < 2.0**63))
        if bad.any():
            j = _first(bad)
            raise DataError(f"{_at(src, j, name)}: {role} id {float(values[j])!r} is not an integer")
        return values.astype(np.int64), None
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return _string_codes(col, src, name, role)
    raise DataError(f"{src.name} column {shown(name)} ({role} ids) has type {t}: ids must be integers or text"
                    + (" (UTF-8)" if pa.types.is_binary(t) or pa.types.is_large_binary(t) else ""))


def rating_values(col, src: TableSource, name: str) -> np.ndarray:
    """A rating column -> float32; DataError naming the row of a missing, non-numeric or non-finite value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            col = pc.cast(col, pa.float64())
        except pa.ArrowInvalid:
            _raise_first_unparsed(col, src, name, "a number", _numbers)
    elif not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
        raise DataError(f"{src.name} column {shown(name)} (ratings) has type {t}: ratings must be numbers")
    if col.null_count:
        raise DataError(f"{_at(src, _null_row(col), name)}: no rating (the value is missing)")
    values = _to_numpy(col)
    ratings = values.astype(np.float32)
    if not np.isfinite(ratings.sum(dtype=np.float64)):  # a NaN or infinity anywhere makes the sum one
        bad = ~np.isfinite(ratings)
        if bad.any():
            j = _first(bad)
            raise DataError(f"{_at(src, j, name)}: rating {float(values[j])!r} is not a finite number"
                            + (" (as float32)" if np.isfinite(float(values[j])) else ""))
    return ratings


def _numbers(values: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)


def _iso_seconds(values: np.ndarray) -> np.ndarray:
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(values), utc=True, format="ISO8601", errors="coerce")
    secs = np.full(len(values), np.nan)
    ok = parsed.notna().to_numpy()
    secs[ok] = parsed[ok].dt.tz_convert(None).to_numpy().astype("datetime64[s]").astype(np.int64)
    return secs


def _raise_first_unparsed(col, src: TableSource, name: str, what: str, parse) -> None:
    values = col.to_numpy(zero_copy_only=False)
    parsed = parse(values)
    bad = np.isnan(parsed) & np.asarray([v is not None for v in values])
    j = _first(bad) if bad.any() else _null_row(col)
    raise DataError(f"{_at(src, j, name)}: {shown(values[j])} is not {what}")


def time_values(col, src: TableSource, name: str) -> tuple[np.ndarray, str | None]:
    """A time column -> (int64 epoch seconds, a note saying how integers were read, or None).
    DataError naming the row of a missing or unparseable value, or the type of a column that is
    not a time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if col.null_count:
        raise DataError(f"{_at(src, _null_row(col), name)}: no time (the value is missing)")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        for target in (pa.timestamp("ns"), pa.timestamp("ns", "UTC")):
            try:
                raw = _to_numpy(pc.cast(pc.cast(col, target), pa.int64()))
                return np.floor_divide(raw, 10**9).astype(np.int64), None
            except pa.ArrowInvalid:
                continue
        text = col.to_numpy(zero_copy_only=False)
        numbers = _numbers(text)
        if not np.isnan(numbers).any():  # epoch numbers written as text (a CSV column with a bad value)
            col, t = pa.chunked_array([pa.array(numbers)]), pa.float64()
        else:
            secs = _iso_seconds(text)
            if np.isnan(secs).any():
                parse = _numbers if np.isnan(numbers).sum() < np.isnan(secs).sum() else _iso_seconds
                _raise_first_unparsed(col, src, name, "a time (epoch number or ISO 8601 date-time)", parse)
            return secs.astype(np.int64), None
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        values = _to_numpy(col)
        if pa.types.is_floating(t) and not np.isfinite(values).all():
            j = _first(~np.isfinite(values))
            raise DataError(f"{_at(src, j, name)}: time {float(values[j])!r} is not a finite number")
        hi = max(abs(float(values.min())), abs(float(values.max()))) if len(values) else 0.0
        unit, per_s = next((u, f) for bound, u, f in _TIME_UNITS if bound is None or hi < bound)
        if per_s == 1:
            secs = np.floor(values).astype(np.int64) if pa.types.is_floating(t) else \
                np.ascontiguousarray(values, dtype=np.int64)
        else:
            secs = np.floor_divide(values, per_s).astype(np.int64)
        note = (f"time column {name!r}: numbers read as epoch {unit} (largest magnitude {hi:,.0f})"
                + (", converted to seconds" if per_s != 1 else ""))
        return secs, note
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        ts = col if pa.types.is_timestamp(t) else pc.cast(col, pa.timestamp("s"))
        per_s = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[ts.type.unit]
        raw = _to_numpy(pc.cast(ts, pa.int64()))
        return np.floor_divide(raw, per_s).astype(np.int64), None
    raise DataError(f"{src.name} column {shown(name)} (times) has type {t}: give epoch numbers, timestamps or "
                    "ISO 8601 text")


def _text_values(col) -> list[str]:
    """Any column as Python strings, missing values as ''."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = pc.cast(col, pa.string())
    return [s.strip() if s is not None else "" for s in col.to_pylist()]


def _unique(values: np.ndarray) -> np.ndarray:
    """The distinct values of a large int64 array, sorted: a bitmap for small non-negative ids (one
    scatter), else pyarrow's hash kernel."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(values):
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0 and hi < max(1 << 20, 8 * len(values)) and hi < 1 << 31:
            seen = np.zeros(hi + 1, dtype=np.bool_)
            seen[values] = True
            return np.flatnonzero(seen).astype(np.int64)
    return np.sort(pc.unique(pa.array(values)).to_numpy(zero_copy_only=False).astype(np.int64))


# ----------------------------------------------------------------------------------- the loader


def _columns(table, roles: dict, src: TableSource) -> list:
    """``[user ids, item ids, ratings, times]`` of the table (``id_values`` / ``rating_values`` /
    ``time_values``; None for an absent rating or time column), converted side by side on the thread
    policy's threads (pyarrow's kernels and copies release the GIL). Errors are raised in that order,
    so the same bad file always gives the same message."""
    from recvec.threads import threads

    jobs = [(id_values, (table.column(roles[r]), src, roles[r], r)) for r in ("user", "item")]
    jobs += [(fn, (table.column(roles[r]), src, roles[r])) if roles[r] is not None else (None, ())
             for fn, r in ((rating_values, "rating"), (time_values, "time"))]
    if threads() < 2:
        return [fn(*args) if fn else None for fn, args in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads(), len(jobs))) as pool:
        futures = [pool.submit(fn, *args) if fn else None for fn, args in jobs]
        return [f.result() if f else None for f in futures]


def load_table_dataset(spec: DatasetSpec, formats: Sequence, *, endpoint_url: str | None = None,
                       progress: bool = False) -> Dataset:
    """The Dataset ``spec`` describes (see the module docstring for what is read and checked).
    ``formats``: the registered TableFormats. Raises DataError (naming file, row and column),
    StorageError for S3 failures."""
    from recvec.progress import progress as reporter

    bar = reporter(3, "loading data", "step", enabled=progress)

    def step(label: str) -> None:
        bar.set_postfix(step=label)
        bar.update(1)

    try:
        src = open_table(spec.interactions, formats, endpoint_url=endpoint_url)
        names = src.format.column_names(src)
        cols = spec.columns
        roles = {
            "user": _role_column(names, "user", cols.user, DEFAULT_NAMES["user"], src, "columns", True),
            "item": _role_column(names, "item", cols.item, DEFAULT_NAMES["item"], src, "columns", True),
            "rating": _role_column(names, "rating", cols.rating, DEFAULT_NAMES["rating"], src, "columns", False),
            "time": _role_column(names, "time", cols.time, DEFAULT_NAMES["time"], src, "columns", False),
        }
        used = [c for c in roles.values() if c is not None]
        twice = sorted({c for c in used if used.count(c) > 1})
        if twice:
            both = [r for r, c in roles.items() if c == twice[0]]
            raise DataError(f"{src.name}: column {shown(twice[0])} is given for both {' and '.join(both)}",
                            params=("columns",))
        ids_as_text = (roles["user"], roles["item"]) if spec.string_ids else ()
        table = src.format.read(src, used, strings=ids_as_text, categories=(roles["user"], roles["item"]),
                                floats=(roles["rating"],) if roles["rating"] else ())
        step(src.name)
        if table.num_rows == 0:
            raise DataError(f"{src.name} holds no rows")
        notes = []
        (users, user_labels), (items, item_labels), ratings, timed = _columns(table, roles, src)
        if ratings is None:
            ratings = np.ones(len(users), np.float32)
            notes.append(f"{src.name}: no rating column: every row is a positive (the threshold does not apply)")
        if timed is None:
            times = np.arange(len(users), dtype=np.int64)
            notes.append(f"{src.name}: no time column: file order is the time order (each user's last row is "
                         "held out)")
        else:
            times, note = timed
            if note:
                notes.append(f"{src.name}: {note}")
        del table
        step("ids")
        ratings_obj = Ratings(users, items, ratings, times, user_labels, item_labels,
                              all_positive=roles["rating"] is None)
        catalog, item_files = _catalog(spec, formats, ratings_obj, src, endpoint_url)
        step("items")
    finally:
        bar.close()
    return Dataset(ratings=ratings_obj, catalog=catalog, source=str(spec), format=src.format.name,
                   files=(src.name, *item_files), notes=tuple(notes))


def _catalog(spec: DatasetSpec, formats, ratings: Ratings, src: TableSource, endpoint_url):
    """The Catalog: the item table's, checked against the interactions, or (no item table) the items
    with events, untitled."""
    strings = ratings.item_labels is not None
    if spec.items is None:
        ids = ratings.item_labels if strings else _unique(ratings.items)
        n = len(ids)
        return Catalog(ids=ids, titles=("",) * n, genres=("",) * n, text=((),) * n), ()
    catalog, isrc = read_item_table(spec.items, spec.item_columns, formats, strings=strings,
                                    endpoint_url=endpoint_url, against=src.name)
    have = ratings.item_labels if strings else _unique(ratings.items)
    listed = np.isin(have, catalog.ids)
    if not listed.all():
        missing = have[~listed]
        key = np.flatnonzero(~listed) if strings else missing  # what ratings.items holds for them
        hit = np.isin(ratings.items, key)
        row, n_ev = _first(hit), int(hit.sum())
        raise DataError(f"{src.name} row {row + 1}: item id {shown(missing[0].item())} is not in {isrc.name} "
                        f"({n_ev:,} event{'s' if n_ev > 1 else ''} of {len(missing):,} item id"
                        f"{'s' if len(missing) > 1 else ''} missing from the item table; every item with events "
                        "must be listed)")
    return catalog, (isrc.name,)


def read_item_table(path: str, columns, formats: Sequence, *, strings: bool | None = None,
                    endpoint_url: str | None = None, against: str = "the interactions") -> tuple[Catalog, TableSource]:
    """The Catalog of an item table (``columns``: an ItemColumns) in file order, and its source.
    ``strings``: the kind the ids must be (True: strings, False: integers, None: either; ``against``
    names what sets it in the message). DataError naming the file (and row, column) for a missing
    column, a repeated or missing id, ids of the other kind."""
    isrc = open_table(path, formats, endpoint_url=endpoint_url, what="items")
    names = isrc.format.column_names(isrc)
    id_col = _role_column(names, "id", columns.id, ITEM_DEFAULT_NAMES["id"], isrc, "item_columns", True)
    title_col = _role_column(names, "title", columns.title, ITEM_DEFAULT_NAMES["title"], isrc, "item_columns", False)
    if columns.text is None:  # the title column (whatever its name) and genres, where present
        text_cols = list(dict.fromkeys(c for c in [title_col, *(_find(names, n) for n in ITEM_TEXT_DEFAULT[1:])]
                                       if c is not None))
    else:
        text_cols = [_role_column(names, "text", c, (), isrc, "item_columns", True) for c in columns.text]
    genres_col = _find(names, "genres")
    wanted = list(dict.fromkeys([id_col] + ([title_col] if title_col else []) + text_cols))
    if genres_col is not None and genres_col not in wanted:
        wanted.append(genres_col)
    text_like = tuple(c for c in wanted if c != id_col)
    table = isrc.format.read(isrc, wanted, strings=((id_col,) if strings else ()) + text_like)
    if table.num_rows == 0:
        raise DataError(f"{isrc.name} holds no rows (the item table)")
    codes, labels = id_values(table.column(id_col), isrc, id_col, "item")
    if strings is not None and (labels is not None) != strings:
        kinds = ("string", "integer") if strings else ("integer", "string")
        raise DataError(f"{against} has {kinds[0]} item ids but {isrc.name} {kinds[1]} ones: both must be of one "
                        "kind (CSV: string_ids = true in a spec file reads digits as text)")
    ids = codes if labels is None else labels[codes]
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        a, b = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
        raise DataError(f"{isrc.name} row {b + 1}: item id {shown(ids[b].item())} is listed again "
                        f"(first on row {a + 1}); each item once")
    n = len(ids)
    titles = _text_values(table.column(title_col)) if title_col else [""] * n
    texts = [_text_values(table.column(c)) for c in text_cols]
    genres = _text_values(table.column(genres_col)) if genres_col is not None else [""] * n
    text = tuple(zip(*texts)) if texts else ((),) * n
    return Catalog(ids=ids, titles=tuple(titles), genres=tuple(genres), text=text), isrc
