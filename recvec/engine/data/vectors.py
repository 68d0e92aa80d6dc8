"""Item vectors a user brings (their own embeddings): a .npy (n, d) array, a .npz with ``ids`` and
``vectors``, or a table (Parquet, CSV, TSV, JSON Lines; see tables.py) with an id column and
either one list/array column or one numeric column per dimension. Nothing is unpickled.

Ids: a table's id column, a .npz's ``ids``; a .npy has none of its own, so its rows are the ids
of an item table's rows in order (``ids``) or 0..n-1. Every vector finite, every id once."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recvec.engine import storage
from recvec.engine.data.records import Catalog, Dataset, Ratings
from recvec.engine.data.spec import ITEM_DEFAULT_NAMES
from recvec.engine.data.tables import format_for, open_table
from recvec.engine.data.tabular import _first, _holds, _role_column, id_values
from recvec.errors import DataError, shorten, shown


@dataclass(frozen=True)
class ItemVectors:
    """Vectors read from a file: ``ids`` (n,) int64 or 'U', ``vectors`` (n, d) float32, in file order."""

    ids: np.ndarray
    vectors: np.ndarray
    source: str
    format: str  # "npy" | "npz" | a table format's name
    digest: str  # sha256 of the file's bytes
    notes: tuple[str, ...] = field(default=())


def _bytes(path: str, endpoint_url: str | None) -> bytes:
    if storage.is_s3(path):
        return storage.read_bytes(path, endpoint_url=endpoint_url)
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"vectors file not found: {shorten(str(p), 160)}" if not p.exists()
                        else f"{shorten(str(p), 160)} is not a file (the vectors must be one file)")
    return p.read_bytes()


def _check_matrix(a: np.ndarray, name: str) -> np.ndarray:
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise DataError(f"{name}: vectors must be a 2-d array (items x dims), got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise DataError(f"{name}: vectors must be numbers, got {a.dtype}")
    v = np.ascontiguousarray(a, dtype=np.float32)
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise DataError(f"{name} row {_first(bad) + 1}: the vector holds a NaN or infinity "
                        f"({int(bad.sum()):,} such rows)")
    return v


def _load_npy(raw: bytes, name: str) -> dict[str, np.ndarray]:
    try:
        obj = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{name} is not a readable plain .npy/.npz array file (nothing is unpickled): "
                        f"{shorten(str(e), 160)}") from None
    if isinstance(obj, np.ndarray):
        return {"vectors": obj}
    with obj:
        try:
            return {k: obj[k] for k in obj.files}
        except (ValueError, OSError) as e:
            raise DataError(f"{name}: {shorten(str(e), 160)}") from None


def _unique_ids(ids: np.ndarray, name: str) -> None:
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        a, b = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
        raise DataError(f"{name} row {b + 1}: item id {shown(ids[b].item())} has a vector already (row {a + 1}); "
                        "each item once")


def load_item_vectors(path: str, formats: Sequence, *, id_column: str | None = None,
                      vector_column: str | None = None, ids: np.ndarray | None = None,
                      endpoint_url: str | None = None) -> ItemVectors:
    """The vectors at ``path`` (local or s3://; formats in the module docstring). ``id_column`` /
    ``vector_column`` name a table's columns (default: the item id names of spec.ITEM_DEFAULT_NAMES;
    the one list column, else every other numeric column in file order); ``ids`` are the ids of a
    .npy's rows. Raises DataError naming the file (and row or column)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    lower = name.lower()
    if lower.endswith((".npy", ".npz")):
        raw = _bytes(path, endpoint_url)
        arrays = _load_npy(raw, name)
        if "vectors" not in arrays:
            raise DataError(f"{name} holds {', '.join(sorted(arrays)) or 'no arrays'}; a .npz needs 'vectors' "
                            "(and 'ids')")
        vectors = _check_matrix(arrays["vectors"], name)
        notes = []
        if "ids" in arrays:
            got = np.asarray(arrays["ids"])
            if got.dtype.kind not in "iuU" or got.shape != (len(vectors),):
                raise DataError(f"{name}: ids must be {len(vectors)} integers or strings, got {got.dtype} {got.shape}")
            vec_ids = got if got.dtype.kind == "U" else got.astype(np.int64)
        elif ids is not None:
            if len(ids) != len(vectors):
                raise DataError(f"{name} holds {len(vectors):,} vectors but the item table {len(ids):,} rows: a .npy's "
                                "rows are the item table's rows, in order")
            vec_ids = np.asarray(ids)
            notes.append(f"{name}: row i is the item on row i of the item table")
        else:
            vec_ids = np.arange(len(vectors), dtype=np.int64)
            notes.append(f"{name}: no ids: the items are its rows 0..{len(vectors) - 1}")
        _unique_ids(vec_ids, name)
        return ItemVectors(vec_ids, vectors, path, lower.rsplit(".", 1)[-1], hashlib.sha256(raw).hexdigest(),
                           tuple(notes))
    if format_for(path, formats) is None:
        raise DataError(f"{shorten(path, 160)}: not a vectors file recvec reads (.npy, .npz, or a table: "
                        f"{', '.join(f.label for f in formats)})")
    src = open_table(path, formats, endpoint_url=endpoint_url, what="vectors")
    names = src.format.column_names(src)
    id_col = _role_column(names, "id", id_column, ITEM_DEFAULT_NAMES["id"], src, "vector_columns", True)
    table = src.format.read(src, names)
    vec_ids, labels = id_values(table.column(id_col), src, id_col, "item")
    vec_ids = vec_ids if labels is None else labels[vec_ids]
    vectors = _table_vectors(table, names, id_col, vector_column, src)
    _unique_ids(vec_ids, src.name)
    digest = hashlib.sha256(src.data if src.data is not None else Path(src.path).read_bytes()).hexdigest()
    return ItemVectors(vec_ids, vectors, path, src.format.name, digest)


def _table_vectors(table, names: list[str], id_col: str, vector_column: str | None, src) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    def is_list(t) -> bool:
        return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)

    lists = [n for n in names if n != id_col and is_list(table.schema.field(n).type)]
    col = vector_column if vector_column is not None else (lists[0] if len(lists) == 1 else None)
    if vector_column is not None and vector_column not in names:
        raise DataError(f"{src.name} has no column {shown(vector_column)} (the vectors); the file holds: "
                        f"{_holds(names)}", params=("vector_columns",))
    if col is not None:
        arr = table.column(col)
        if not is_list(arr.type):
            raise DataError(f"{src.name} column {shown(col)} has type {arr.type}, not a list of numbers",
                            params=("vector_columns",))
        if arr.null_count:
            raise DataError(f"{src.name} row {_first(pc.is_null(arr).to_numpy(zero_copy_only=False)) + 1}, column "
                            f"{shown(col)}: no vector")
        arr = arr.combine_chunks()
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            j = _first(lengths != lengths[0])
            raise DataError(f"{src.name} row {j + 1}, column {shown(col)}: a vector of {int(lengths[j])} numbers; "
                            f"row 1 has {int(lengths[0])} (all must have one length)")
        flat = pc.list_flatten(arr)
        if flat.null_count:
            bad = pc.is_null(flat).to_numpy(zero_copy_only=False)
            raise DataError(f"{src.name} row {_first(bad) // max(int(lengths[0]), 1) + 1}, column {shown(col)}: "
                            "a missing number in the vector")
        values = flat.to_numpy(zero_copy_only=False)
        return _check_matrix(values.reshape(len(lengths), int(lengths[0]) if len(lengths) else 0), src.name)
    dims = [n for n in names if n != id_col]
    wrong = [n for n in dims if not (pa.types.is_integer(table.schema.field(n).type)
                                      or pa.types.is_floating(table.schema.field(n).type))]
    if wrong or not dims:
        raise DataError(f"{src.name}: expected an id column and either one list column (a vector per row) or one "
                        f"numeric column per dimension; {'no other column' if not dims else f'column {shown(wrong[0])} has type ' + str(table.schema.field(wrong[0]).type)}. "
                        f"The file holds: {_holds(names)}", params=("vector_columns",))
    for n in dims:
        c = table.column(n)
        if c.null_count:
            raise DataError(f"{src.name} row {_first(pc.is_null(c).to_numpy(zero_copy_only=False)) + 1}, column "
                            f"{shown(n)}: a missing number")
    return _check_matrix(np.column_stack([table.column(n).to_numpy() for n in dims]), src.name)


def vectors_dataset(vectors: ItemVectors, catalog: Catalog | None) -> Dataset:
    """A Dataset for an artifact of brought vectors: no interactions, the catalogue of ``catalog``
    restricted/extended to the vector ids (ids without a row there untitled), the vectors' digest."""
    ids = vectors.ids
    if catalog is None:
        cat = Catalog(ids=ids, titles=("",) * len(ids), genres=("",) * len(ids), text=((),) * len(ids))
        notes = ()
    else:
        pos = {m: i for i, m in enumerate(catalog.ids.tolist())}
        rows = [pos.get(m) for m in ids.tolist()]
        parts = catalog.text_parts()
        cat = Catalog(ids=ids, titles=tuple(catalog.titles[r] if r is not None else "" for r in rows),
                      genres=tuple(catalog.genres[r] if r is not None else "" for r in rows),
                      text=tuple(parts[r] if r is not None else () for r in rows))
        missing = sum(r is None for r in rows)
        notes = (f"{missing:,} of the {len(ids):,} vector ids are not in the item table (shown untitled)",) if missing else ()
    empty = np.zeros(0, np.int64)
    ratings = Ratings(empty, empty, np.zeros(0, np.float32), empty)
    return Dataset(ratings=ratings, catalog=cat, source=vectors.source, format=f"vectors:{vectors.format}",
                   digest=vectors.digest, notes=vectors.notes + notes)
