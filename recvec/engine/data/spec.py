"""What to read from a table of interactions: DatasetSpec (the interactions file, its column map,
an optional item table and its columns), parsed from the command line's ``--columns`` /
``--item-columns`` text or from a dataset spec file (TOML). Pure data and parsing; no I/O except
reading the spec file.

A spec file::

    interactions = "events.parquet"     # relative paths are relative to the spec file
    string_ids = false                  # CSV/TSV: read ids as text even when they look like integers
    [columns]                           # any omitted: the default names (see Columns)
    user = "visitor_id"
    item = "sku"
    rating = "stars"                    # "" = none: every row is a positive
    time = "ts"                         # "" = none: file order is the time order
    [items]
    file = "products.parquet"
    id = "sku"
    title = "name"
    text = ["name", "category"]         # joined by the encoder's [SEP]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from recvec.errors import DataError, RecvecError, shorten, shown

#: Names tried, in order, for each column when the column map does not name it.
DEFAULT_NAMES = {
    "user": ("user_id", "userId", "user"),
    "item": ("item_id", "movieId", "itemId", "item"),
    "rating": ("rating",),
    "time": ("timestamp", "time"),
}
ITEM_DEFAULT_NAMES = {
    "id": ("item_id", "movieId", "itemId", "id"),
    "title": ("title", "name"),
}
#: Item text used when none is named: the title column, then these (MovieLens: the lab's
#: 'title [SEP] genres').
ITEM_TEXT_DEFAULT = ("title", "genres")


@dataclass(frozen=True)
class Columns:
    """Which column holds what. None: the first of DEFAULT_NAMES present (user and item must be
    found; rating and time are optional); "" for rating or time: none (every row a positive / file
    order as time order)."""

    user: str | None = None
    item: str | None = None
    rating: str | None = None
    time: str | None = None

    def given(self) -> dict[str, str]:
        """The roles named explicitly, role -> column ("" = none)."""
        return {k: v for k, v in (("user", self.user), ("item", self.item), ("rating", self.rating),
                                  ("time", self.time)) if v is not None}


@dataclass(frozen=True)
class ItemColumns:
    """The item table's columns: ``id`` (None: the first of ITEM_DEFAULT_NAMES present), ``title``
    (what results display; None: 'title' or 'name' when present), ``text`` (the columns an encoder
    reads, joined by its [SEP]; None: the title column and 'genres', whichever are present)."""

    id: str | None = None
    title: str | None = None
    text: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """One interactions table (``interactions``: a local path or s3:// URI of a .csv, .tsv,
    .parquet or .jsonl file, the text ones optionally .gz/.zst) and optionally an item table
    (``items``) with their column maps. ``string_ids``: read CSV/TSV id columns as text even when
    every value looks like an integer (leading zeros kept). ``origin``: the spec file it came from."""

    interactions: str
    columns: Columns = field(default_factory=Columns)
    items: str | None = None
    item_columns: ItemColumns = field(default_factory=ItemColumns)
    string_ids: bool = False
    origin: str | None = None

    def __post_init__(self):
        if not isinstance(self.interactions, str) or not self.interactions.strip():
            raise DataError("the dataset spec names no interactions file", params=("data",))

    def __str__(self) -> str:
        return self.origin or self.interactions


# --------------------------------------------------------------------------- command-line text


def _pairs(text: str, flag: str, keys: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq:
            raise RecvecError(f"{flag}: expected KEY=COLUMN, got {shown(part.strip())} "
                              f"(keys: {', '.join(keys)})", params=(flag.lstrip("-").replace("-", "_"),))
        if key not in keys:
            raise RecvecError(f"{flag}: unknown key {shown(key)}; keys: {', '.join(keys)}",
                              params=(flag.lstrip("-").replace("-", "_"),))
        if key in out:
            raise RecvecError(f"{flag}: {key} is given twice", params=(flag.lstrip("-").replace("-", "_"),))
        out[key] = value.strip()
    return out


def parse_columns(text: str) -> Columns:
    """``user=COL,item=COL[,rating=COL][,time=COL]`` -> Columns (``rating=`` / ``time=`` with no
    column: none). RecvecError naming ``columns`` for a malformed part, an unknown key or an empty
    user/item column."""
    pairs = _pairs(text, "--columns", ("user", "item", "rating", "time"))
    for key in ("user", "item"):
        if key in pairs and not pairs[key]:
            raise RecvecError(f"--columns: {key}= needs a column name", params=("columns",))
    return Columns(**pairs)


def parse_item_columns(text: str) -> ItemColumns:
    """``id=COL[,title=COL][,text=COL+COL+...]`` -> ItemColumns; RecvecError naming
    ``item_columns`` for a malformed part or an unknown key."""
    pairs = _pairs(text, "--item-columns", ("id", "title", "text"))
    if "id" in pairs and not pairs["id"]:
        raise RecvecError("--item-columns: id= needs a column name", params=("item_columns",))
    text_cols = None
    if "text" in pairs:
        text_cols = tuple(c.strip() for c in pairs["text"].split("+") if c.strip())
    return ItemColumns(id=pairs.get("id"), title=pairs.get("title"), text=text_cols)


def parse_vector_columns(text: str) -> dict[str, str]:
    """``id=COL[,vector=COL]`` (the columns of a vectors table) -> {"id": ..., "vector": ...};
    RecvecError naming ``vector_columns`` for a malformed part, an unknown key or an empty column."""
    pairs = _pairs(text, "--vector-columns", ("id", "vector"))
    for key, value in pairs.items():
        if not value:
            raise RecvecError(f"--vector-columns: {key}= needs a column name", params=("vector_columns",))
    return pairs


# --------------------------------------------------------------------------- spec files


def _resolve(path: str, base: str | None) -> str:
    if base is None or "://" in path or os.path.isabs(os.path.expanduser(path)):
        return os.path.expanduser(path) if "://" not in path else path
    if "://" in base:
        return base.rsplit("/", 1)[0] + "/" + path
    return os.path.join(os.path.dirname(os.path.abspath(base)), path)


def _str(table: dict, key: str, where: str, *, allow_empty: bool = False) -> str | None:
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise DataError(f"{where}: {key} must be a {'' if allow_empty else 'non-empty '}string, got {shown(value)}")
    return value


def _known(table: dict, keys: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise DataError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(keys)}")


def spec_from_toml(raw: bytes, where: str) -> DatasetSpec:
    """The DatasetSpec a spec file's bytes describe (format in the module docstring; paths relative
    to ``where``). DataError naming the file for invalid TOML, unknown keys or wrong value types."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise DataError(f"{where} is not a valid TOML dataset spec: {shorten(str(e), 200)}") from None
    _known(doc, ("interactions", "string_ids", "columns", "items"), where)
    inter = _str(doc, "interactions", where)
    if inter is None:
        raise DataError(f"{where}: interactions = \"FILE\" is missing (the interactions table)")
    string_ids = doc.get("string_ids", False)
    if not isinstance(string_ids, bool):
        raise DataError(f"{where}: string_ids must be true or false, got {shown(string_ids)}")
    cols = doc.get("columns", {})
    if not isinstance(cols, dict):
        raise DataError(f"{where}: [columns] must be a table")
    _known(cols, ("user", "item", "rating", "time"), f"{where} [columns]")
    columns = Columns(user=_str(cols, "user", f"{where} [columns]"), item=_str(cols, "item", f"{where} [columns]"),
                      rating=_str(cols, "rating", f"{where} [columns]", allow_empty=True),
                      time=_str(cols, "time", f"{where} [columns]", allow_empty=True))
    items_t = doc.get("items", {})
    if not isinstance(items_t, dict):
        raise DataError(f"{where}: [items] must be a table")
    _known(items_t, ("file", "id", "title", "text"), f"{where} [items]")
    text = items_t.get("text")
    if text is not None:
        if isinstance(text, str):
            text = [text]
        if not isinstance(text, list) or not all(isinstance(t, str) and t.strip() for t in text):
            raise DataError(f"{where} [items]: text must be a list of column names, got {shown(text)}")
        text = tuple(text)
    item_file = _str(items_t, "file", f"{where} [items]")
    if item_file is None and items_t:
        raise DataError(f"{where} [items]: file = \"FILE\" is missing (the item table)")
    return DatasetSpec(
        interactions=_resolve(inter, where), columns=columns,
        items=None if item_file is None else _resolve(item_file, where),
        item_columns=ItemColumns(id=_str(items_t, "id", f"{where} [items]"),
                                 title=_str(items_t, "title", f"{where} [items]", allow_empty=True), text=text),
        string_ids=string_ids, origin=where,
    )


def with_flags(spec: DatasetSpec, columns: Columns | None = None, items: str | None = None,
               item_columns: ItemColumns | None = None) -> DatasetSpec:
    """``spec`` with the command line's settings laid over it (a role or key given on the command line
    replaces the spec file's; the rest stay)."""
    if columns is not None:
        spec = replace(spec, columns=replace(spec.columns, **columns.given()))
    if items is not None:
        spec = replace(spec, items=items)
    if item_columns is not None:
        given = {k: v for k, v in (("id", item_columns.id), ("title", item_columns.title),
                                   ("text", item_columns.text)) if v is not None}
        spec = replace(spec, item_columns=replace(spec.item_columns, **given))
    return spec
