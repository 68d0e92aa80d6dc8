"""Interactions into Spark and the leave-last-positive-out split computed there.

Where the rows come from:

- a table (``.parquet``, ``.csv``, ``.tsv``, ``.jsonl``/``.json``, text ones optionally ``.gz``;
  a DatasetSpec or ``.toml`` spec with its column map) is read **by Spark itself**, so on a cluster
  the executors read their own storage (``s3://`` is handed to Spark as ``s3a://``; ``hdfs://``,
  ``gs://`` and ``abfss://`` as given). Columns are found as the local loader finds them (the
  default names, or the spec's map); times are epoch numbers (unit from their magnitude, as
  locally), timestamps or ISO text; no time column: file order; no rating column: every row a
  positive. The item table, when given, is read by recvec on the driver (it is small);
- anything else (MovieLens folders and zips, ``synthetic``) is parsed and checked by recvec's
  loader on the driver and handed to Spark through Arrow, each row carrying its file position.

The split (:func:`spark_split`) repeats ``recvec.engine.split`` with window functions: positives
(rating >= threshold), a (user, item) pair positive more than once kept at its latest positive,
each user's last positive by (timestamp, file position) held out — the file position breaks ties
exactly as the local stable sort does, so the rows are identical. Users and items get contiguous
rows as locally: users in id order, items in order of first appearance in train.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from recvec.engine.data import Catalog, Dataset, Ratings
from recvec.engine.vocab import Vocabulary
from recvec.errors import DataError, RecvecError, shorten, shown

#: Spark readers by a table file's suffix (before .gz).
SPARK_TABLES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
                ".jsonl": "json", ".json": "json", ".ndjson": "json"}


@dataclass
class SparkData:
    """Interactions as a Spark DataFrame ``frame`` (columns ``user``, ``item`` (long or string),
    ``rating`` float, ``ts`` long seconds, ``ord`` long file position) and what the driver holds:
    ``dataset`` (catalogue, source, format, fingerprint; its ``ratings`` are empty when Spark read
    the table), ``all_positive`` and the label arrays when the driver sent string-id codes."""

    frame: object
    dataset: Dataset
    all_positive: bool
    user_labels: np.ndarray | None = None
    item_labels: np.ndarray | None = None
    notes: tuple[str, ...] = ()


def spark_path(path: str) -> str:
    """A path as Spark's Hadoop file systems name it: ``s3://`` becomes ``s3a://``."""
    return "s3a://" + path[len("s3://"):] if path.startswith("s3://") else path


def table_kind(path: str) -> str | None:
    """The Spark reader (``parquet``, ``csv``, ``tsv``, ``json``) for a table path, None otherwise."""
    low = path.lower()
    low = low.removesuffix(".gz")
    return next((kind for suffix, kind in SPARK_TABLES.items() if low.endswith(suffix)), None)


def read_into_spark(session, data, *, endpoint_url: str | None = None, progress: bool = False) -> SparkData:
    """``data`` (what ``--data`` takes) as :class:`SparkData`; see the module docstring. DataError
    for columns that are not there or values that are not ids, ratings or times."""
    from recvec.engine.data import as_spec, load_dataset

    spec = None if data == "synthetic" else as_spec(data, endpoint_url=endpoint_url)
    if spec is not None and table_kind(spec.interactions) is not None and not spec.interactions.lower().endswith(".zst"):
        return _read_table(session, spec, endpoint_url)
    ds = load_dataset(data, endpoint_url=endpoint_url, progress=progress)
    return from_local(session, ds)


def from_local(session, ds: Dataset) -> SparkData:
    """A dataset loaded by recvec on the driver, handed to Spark (string ids as their codes)."""
    import pandas as pd

    r = ds.ratings
    pdf = pd.DataFrame({"user": r.users.astype(np.int64), "item": r.items.astype(np.int64),
                        "rating": r.ratings.astype(np.float32), "ts": r.timestamps.astype(np.int64),
                        "ord": np.arange(len(r), dtype=np.int64)})
    frame = session.createDataFrame(pdf, "user long, item long, rating float, ts long, ord long")
    return SparkData(frame, ds, r.all_positive, r.user_labels, r.item_labels)


def _find(names: list[str], wanted: str) -> str | None:
    if wanted in names:
        return wanted
    lower = [n for n in names if n.lower() == wanted.lower()]
    return lower[0] if len(lower) == 1 else None


def _column(names: list[str], role: str, given: str | None, where: str, required: bool) -> str | None:
    from recvec.engine.data.spec import DEFAULT_NAMES

    if given == "":
        return None
    if given is not None:
        col = _find(names, given)
        if col is None:
            raise DataError(f"{where} has no column {shown(given)} (given as {role}={given} in columns); it holds: "
                            f"{', '.join(shown(n, 40) for n in names[:30])}", params=("columns",))
        return col
    for name in DEFAULT_NAMES[role]:
        col = _find(names, name)
        if col is not None:
            return col
    if required:
        raise DataError(f"{where} has no {role} column: none of {', '.join(map(repr, DEFAULT_NAMES[role]))} is "
                        f"there; name it in columns as {role}=COLUMN", params=("columns",))
    return None


def _read_table(session, spec, endpoint_url) -> SparkData:
    """Spark reads the interactions table of ``spec`` itself."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from recvec.engine.data.tabular import _TIME_UNITS

    where = shorten(spec.interactions, 160)
    kind = table_kind(spec.interactions)
    reader = session.read
    path = spark_path(spec.interactions)
    if kind == "parquet":
        frame = reader.parquet(path)
    elif kind == "json":
        frame = reader.json(path)
    else:
        frame = reader.csv(path, header=True, sep="\t" if kind == "tsv" else ",",
                           inferSchema=not spec.string_ids)
    names = frame.columns
    cols = spec.columns
    roles = {"user": _column(names, "user", cols.user, where, True), "item": _column(names, "item", cols.item, where, True),
             "rating": _column(names, "rating", cols.rating, where, False),
             "time": _column(names, "time", cols.time, where, False)}
    frame = frame.withColumn("__ord", F.monotonically_increasing_id())  # file order: a single file's splits in order
    types = dict(frame.dtypes)
    notes = []

    def ident(role):
        c = F.col(f"`{roles[role]}`")
        t = types[roles[role]]
        if t in ("int", "bigint", "smallint", "tinyint"):
            return c.cast("long"), False
        if t == "string":
            return c, True
        raise DataError(f"{where} column {shown(roles[role])} ({role} ids) has type {t}: ids are integers or text")

    (user, u_str), (item, i_str) = ident("user"), ident("item")
    if roles["rating"] is None:
        rating = F.lit(1.0).cast("float")
        notes.append(f"{where}: no rating column: every row is a positive (the threshold does not apply)")
    else:
        rating = F.col(f"`{roles['rating']}`").cast("float")
    tname = roles["time"]
    ts_type = types.get(tname) if tname else None
    if ts_type == "string":  # text: epoch numbers written as text (CSV read as text), else date-times
        c = F.col(f"`{tname}`")
        if not frame.where(c.isNotNull() & c.cast("double").isNull()).limit(1).count():
            frame = frame.withColumn(tname, c.cast("double"))
            ts_type = "double"
    if tname is None:
        ts = F.col("__ord")
        notes.append(f"{where}: no time column: file order is the time order (each user's last row is held out)")
    elif ts_type in ("int", "bigint", "smallint", "tinyint", "float", "double") or (ts_type or "").startswith("decimal"):
        hi = frame.agg(F.max(F.abs(F.col(f"`{tname}`")).cast("double"))).first()[0] or 0.0
        unit, per_s = next((u, f) for bound, u, f in _TIME_UNITS if bound is None or hi < bound)
        ts = F.floor(F.col(f"`{tname}`").cast("double") / per_s).cast("long")
        notes.append(f"{where}: time column {tname!r}: numbers read as epoch {unit} (largest magnitude {hi:,.0f})"
                     + (", converted to seconds" if per_s != 1 else ""))
    elif ts_type in ("timestamp", "timestamp_ntz", "date", "string"):
        ts = F.unix_timestamp(F.to_timestamp(F.col(f"`{tname}`")))
    else:
        raise DataError(f"{where} column {shown(tname)} (times) has type {ts_type}: give epoch numbers, timestamps "
                        "or ISO 8601 text")
    frame = frame.select(user.alias("user"), item.alias("item"), rating.alias("rating"), ts.alias("ts"),
                         F.col("__ord").alias("ord"))
    _check(frame, where, roles)
    catalog = _catalog(frame, spec, u_str, i_str, endpoint_url, where)
    fp = frame.agg(F.count(F.lit(1)), F.sum(F.xxhash64("user", "item", "rating", "ts").cast(T.DecimalType(38, 0)))).first()
    digest = hashlib.sha256(f"spark-xxhash64:{fp[0]}:{fp[1]}:{spec.interactions}".encode()).hexdigest()
    empty = Ratings(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64),
                    all_positive=roles["rating"] is None)
    ds = Dataset(ratings=empty, catalog=catalog, source=str(spec), format=f"{kind} (read by Spark)", digest=digest,
                 files=(os.path.basename(spec.interactions),), notes=tuple(notes))
    return SparkData(frame, ds, roles["rating"] is None, notes=tuple(notes))


def _check(frame, where: str, roles: dict) -> None:
    """One pass: rows there, no missing id, rating or time (DataError naming the column)."""
    from pyspark.sql import functions as F

    row = frame.agg(F.count(F.lit(1)).alias("n"),
                    *[F.sum(F.col(c).isNull().cast("long")).alias(c) for c in ("user", "item", "rating", "ts")]).first()
    if not row["n"]:
        raise DataError(f"{where} holds no rows")
    for c, role in (("user", "user"), ("item", "item"), ("rating", "rating"), ("ts", "time")):
        if row[c]:
            raise DataError(f"{where}: {row[c]:,} rows have no {role} (column {shown(roles[role])}, missing or not a "
                            f"{'number' if role == 'rating' else role})")


def _catalog(frame, spec, u_str: bool, i_str: bool, endpoint_url, where) -> Catalog:
    """The item table read on the driver (checked to list every item with events), or the items with
    events, untitled."""
    from recvec.engine.data import TABLE_FORMATS
    from recvec.engine.data.tabular import read_item_table

    have = frame.select("item").distinct().toPandas()["item"].to_numpy()
    have = np.sort(have.astype(str) if i_str else have.astype(np.int64))
    if spec.items is None:
        n = len(have)
        return Catalog(ids=have, titles=("",) * n, genres=("",) * n, text=((),) * n)
    catalog, isrc = read_item_table(spec.items, spec.item_columns, TABLE_FORMATS, strings=i_str,
                                    endpoint_url=endpoint_url, against=where)
    missing = have[~np.isin(have, catalog.ids)]
    if missing.size:
        raise DataError(f"{where}: item id {shown(missing[0].item())} is not in {isrc.name} ({len(missing):,} item "
                        "ids with events missing from the item table; every item with events must be listed)")
    return catalog


# ------------------------------------------------------------------------------------------ split


@dataclass
class SparkSplit:
    """The split on Spark: ``train`` (columns ``u`` user row, ``i`` item row, ``user``, ``item``,
    ``rating``, ``ts``, ``ord``; persisted) and ``test`` (``user``, ``item``, ``rating``, ``ts``,
    ``ord``, and ``u`` / ``i``: rows, null when unknown to train), the train item vocabulary
    ``items`` and its ``popularity`` (float32 train positives per row), the row counts, and the
    :class:`SparkData` it came from."""

    data: SparkData
    train: object
    test: object
    items: Vocabulary
    popularity: np.ndarray
    n_users: int
    train_rows: int
    test_rows: int
    threshold: float
    _local: object = field(default=None, repr=False)

    @property
    def dataset(self) -> Dataset:
        return self.data.dataset


def spark_split(data: SparkData, threshold: float = 4.0) -> SparkSplit:
    """The SPEC split of ``data`` computed by Spark (module docstring). DataError when there is no
    positive; the train split may be empty (callers that fit check)."""
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    frame = data.frame
    pos = frame if data.all_positive else frame.where(F.col("rating") >= F.lit(float(threshold)))
    latest = Window.partitionBy("user", "item").orderBy(F.desc("ts"), F.desc("ord"))
    pos = pos.withColumn("_k", F.row_number().over(latest)).where(F.col("_k") == 1).drop("_k")
    last = Window.partitionBy("user").orderBy(F.desc("ts"), F.desc("ord"))
    pos = pos.withColumn("_last", F.row_number().over(last) == 1).persist(StorageLevel.MEMORY_AND_DISK)
    train = pos.where(~F.col("_last")).drop("_last")
    test = pos.where(F.col("_last")).drop("_last")
    counts = pos.groupBy("_last").count().toPandas()
    n = {bool(k): int(v) for k, v in zip(counts["_last"], counts["count"])}
    train_rows, test_rows = n.get(False, 0), n.get(True, 0)
    if train_rows + test_rows == 0:
        raise DataError(f"no ratings >= {threshold:g}: nothing to split (lower threshold)", params=("threshold",))
    first = (train.groupBy("item").agg(F.min(F.struct("user", "ts", "ord")).alias("f"), F.count(F.lit(1)).alias("n"))
             .orderBy("f").select("item", "n").toPandas())
    item_keys = first["item"].to_numpy()
    item_ids = data.item_labels[item_keys] if data.item_labels is not None else item_keys
    kind = "movie" if data.item_labels is None and item_ids.dtype.kind != "U" and item_ids.dtype != object else "item"
    items = Vocabulary(item_ids.astype(str) if item_ids.dtype == object else item_ids, kind=kind)
    popularity = first["n"].to_numpy().astype(np.float32)
    session = frame.sparkSession
    import pandas as pd

    item_rows = session.createDataFrame(pd.DataFrame({"item": item_keys, "i": np.arange(len(item_keys), dtype=np.int32)}))
    user_rows = (train.select("user").distinct()
                 .withColumn("u", (F.dense_rank().over(Window.orderBy("user")) - 1).cast("int")))
    user_rows = user_rows.persist(StorageLevel.MEMORY_AND_DISK)
    n_users = user_rows.count()
    train = (train.join(F.broadcast(item_rows), "item").join(user_rows, "user")
             .persist(StorageLevel.MEMORY_AND_DISK))
    if train.count() != train_rows:  # materialises the persisted rows the fit and the evaluation read
        raise RecvecError("the Spark split lost train rows in the user/item join")
    test = (test.join(F.broadcast(item_rows), "item", "left").join(user_rows, "user", "left")
            .persist(StorageLevel.MEMORY_AND_DISK))
    test.count()
    pos.unpersist()
    user_rows.unpersist()
    return SparkSplit(data, train, test, items, popularity, int(n_users), train_rows, test_rows, threshold)


def local_split(sp: SparkSplit):
    """The Spark split collected on the driver as recvec's :class:`~recvec.engine.split.Split` (the
    same rows, order and vocabularies as ``leave_last_out`` gives locally): for the parts that run
    on the driver (index sweeps, models Spark does not fit) and for checks. Collects every
    positive: for data that fits the driver."""
    from recvec.engine.split import Split

    if sp._local is not None:
        return sp._local
    cols = ["user", "item", "rating", "ts"]
    train = sp.train.orderBy("user", "ts", "ord").select(*cols).toPandas()
    test = sp.test.orderBy("user").select(*cols).toPandas()
    d = sp.data

    def values(df, col):
        v = df[col].to_numpy()
        return v.astype(np.int64) if v.dtype.kind in "iu" else v.astype(str)

    tu, tsu, ti, tsi = values(train, "user"), values(test, "user"), values(train, "item"), values(test, "item")
    ulab, ilab = d.user_labels, d.item_labels
    if tu.dtype.kind == "U" or tsu.dtype.kind == "U":  # string ids read by Spark: codes into sorted labels
        ulab = np.unique(np.concatenate([tu.astype(str), tsu.astype(str)]))
        tu, tsu = np.searchsorted(ulab, tu.astype(str)), np.searchsorted(ulab, tsu.astype(str))
    if ti.dtype.kind == "U" or tsi.dtype.kind == "U":
        ilab = np.unique(np.concatenate([ti.astype(str), tsi.astype(str)]))
        ti, tsi = np.searchsorted(ilab, ti.astype(str)), np.searchsorted(ilab, tsi.astype(str))

    def ratings(df, users, items):
        return Ratings(users.astype(np.int64), items.astype(np.int64), df["rating"].to_numpy(np.float32),
                       df["ts"].to_numpy(np.int64), ulab, ilab, d.all_positive)

    tr, te = ratings(train, tu, ti), ratings(test, tsu, tsi)
    user_keys = Vocabulary.from_first_appearance(tr.users, kind="user")
    item_keys = Vocabulary.from_first_appearance(tr.items, kind="movie" if ilab is None else "item")
    users = user_keys if ulab is None else Vocabulary(ulab[user_keys.ids], kind="user")
    items = item_keys if ilab is None else Vocabulary(ilab[item_keys.ids], kind="item")
    if not np.array_equal(items.ids, sp.items.ids):
        raise RecvecError("the Spark split's item order differs from the collected rows' first appearance")
    sp._local = Split(train=tr, test=te, users=users, items=items, threshold=sp.threshold,
                      user_keys=None if ulab is None else user_keys, item_keys=None if ilab is None else item_keys)
    return sp._local
