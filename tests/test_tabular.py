"""Interactions and item tables from CSV, TSV, Parquet and JSON Lines (optionally .gz/.zst), local and on
the suite's S3 server: column maps, defaults, time units, spec files, and bad input named by file,
row and column (a missing column lists the file's columns). Small generated files in tmp_path."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from recvec.engine.data import Columns, DataNote, DatasetSpec, ItemColumns, load_dataset
from recvec.engine.data.spec import parse_columns, parse_item_columns
from recvec.engine.split import leave_last_out
from recvec.errors import DataError, RecvecError

pytestmark = pytest.mark.filterwarnings("ignore::recvec.engine.data.DataNote")

USERS = ["alice", "bob", "carol", "dave"]
ITEMS = ["B00X4WHP5E", "B01", "sku-7", "0042", "B09"]


def events(n: int = 40, seed: int = 0) -> dict:
    """A seeded event log: string ids, star ratings, epoch-millisecond times (no repeated pair)."""
    rng = np.random.default_rng(seed)
    pairs = [(u, i) for u in range(len(USERS)) for i in range(len(ITEMS))]
    rng.shuffle(pairs)
    pairs = pairs[: min(n, len(pairs))]
    return {"visitor": [USERS[u] for u, _ in pairs], "sku": [ITEMS[i] for _, i in pairs],
            "stars": [float(x) for x in rng.integers(1, 6, len(pairs))],
            "ts_ms": [int(x) for x in 1_600_000_000_000 + rng.permutation(len(pairs)) * 60_000]}


def write(path, table: dict, fmt: str | None = None) -> str:
    """``table`` (column -> values) written in the format its name says (compression by suffix)."""
    t = pa.table(table)
    name = str(path)
    fmt = fmt or name.split(".")[1]
    if fmt == "parquet":
        pq.write_table(t, name)
    elif fmt in ("csv", "tsv"):
        opts = pacsv.WriteOptions(delimiter="\t" if fmt == "tsv" else ",")
        if name.endswith((".gz", ".zst")):
            with pa.CompressedOutputStream(name, "gzip" if name.endswith(".gz") else "zstd") as out:
                pacsv.write_csv(t, out, write_options=opts)
        else:
            pacsv.write_csv(t, name, write_options=opts)
    elif fmt == "jsonl":
        lines = "".join(json.dumps(dict(zip(table, row))) + "\n" for row in zip(*table.values())).encode()
        if name.endswith(".gz"):
            lines = gzip.compress(lines)
        elif name.endswith(".zst"):
            out = pa.BufferOutputStream()
            with pa.CompressedOutputStream(out, "zstd") as z:
                z.write(lines)
            lines = out.getvalue().to_pybytes()
        path.write_bytes(lines)
    return name


COLS = Columns(user="visitor", item="sku", rating="stars", time="ts_ms")


@pytest.mark.parametrize("name", ["e.csv", "e.tsv", "e.parquet", "e.jsonl", "e.csv.gz", "e.csv.zst", "e.tsv.gz",
                                  "e.jsonl.gz", "e.jsonl.zst"])
def test_every_format_reads_the_same_rows(tmp_path, name):
    ev = events()
    ds = load_dataset(DatasetSpec(write(tmp_path / name, ev), COLS))
    r = ds.ratings
    assert ds.format == name.split(".")[1] and len(r) == len(ev["sku"])
    assert r.user_labels is not None and r.item_labels is not None  # string ids
    assert r.user_values().tolist() == ev["visitor"] and r.item_values().tolist() == ev["sku"]
    assert r.ratings.dtype == np.float32 and r.ratings.tolist() == ev["stars"]
    assert r.timestamps.tolist() == [t // 1000 for t in ev["ts_ms"]]  # ms detected, seconds kept
    assert any("milliseconds" in n for n in ds.notes)
    assert list(ds.catalog.ids) == sorted(set(ev["sku"]))  # no item table: the items with events
    assert "0042" in ds.catalog.ids  # a digit string in JSON/Parquet stays a string (CSV: text, as 'B01' is)


def test_default_names_integer_ids_and_movielens_names(tmp_path):
    t = {"userId": [1, 1, 2, 2], "movieId": [10, 20, 10, 30], "rating": [4.0, 5.0, 4.5, 3.0],
         "timestamp": [5, 6, 7, 8]}
    ds = load_dataset(write(tmp_path / "r.parquet", t))  # a bare path: the default column names
    assert ds.ratings.user_labels is None and ds.ratings.users.dtype == np.int64
    assert ds.ratings.items.tolist() == [10, 20, 10, 30] and ds.catalog.ids.tolist() == [10, 20, 30]
    split = leave_last_out(ds.ratings)
    assert len(split.train) + len(split.test) == 3


def test_without_rating_every_row_is_a_positive_and_without_time_file_order(tmp_path):
    t = {"user_id": ["a", "a", "a", "b", "b"], "item_id": ["x", "y", "z", "x", "y"]}
    with pytest.warns(DataNote, match="no rating column: every row is a positive"):
        ds = load_dataset(write(tmp_path / "r.csv", t))
    assert any("file order is the time order" in n for n in ds.notes)
    split = leave_last_out(ds.ratings, threshold=4.0)  # the threshold does not apply
    assert split.test.item_values().tolist() == ["z", "y"]  # each user's last row in the file
    assert len(split.train) == 3


def test_rating_and_time_can_be_switched_off(tmp_path):
    ev = events()
    ds = load_dataset(DatasetSpec(write(tmp_path / "e.parquet", ev), Columns(user="visitor", item="sku", rating="",
                                                                              time="")))
    assert ds.ratings.all_positive and ds.ratings.timestamps.tolist() == list(range(len(ev["sku"])))


@pytest.mark.parametrize("times, want, note", [
    ([978300760, 978300761], [978300760, 978300761], "epoch seconds"),
    ([1.6e12, 1.6e12 + 999], [1_600_000_000, 1_600_000_000], "epoch milliseconds"),
    ([1_600_000_000_000_000, 1_600_000_001_000_000], [1_600_000_000, 1_600_000_001], "epoch microseconds"),
    (["2020-01-01T00:00:00Z", "2020-01-01 00:00:05"], [1577836800, 1577836805], None),
    (["2020-01-01T01:00:00+01:00", "2020-01-02"], [1577836800, 1577923200], None),
])
def test_time_units_are_detected_and_said(tmp_path, times, want, note):
    t = {"user_id": ["a", "a"], "item_id": ["x", "y"], "timestamp": times}
    ds = load_dataset(write(tmp_path / "r.parquet", t))
    assert ds.ratings.timestamps.tolist() == want
    assert (note is None) == (not any("numbers read as" in n for n in ds.notes))
    if note:
        assert any(note in n for n in ds.notes)


def test_timestamp_column_type(tmp_path):
    t = pa.table({"user_id": ["a", "a"], "item_id": ["x", "y"],
                  "timestamp": pa.array([1_600_000_000_500, 1_600_000_002_000], pa.timestamp("ms", tz="UTC"))})
    pq.write_table(t, tmp_path / "r.parquet")
    assert load_dataset(str(tmp_path / "r.parquet")).ratings.timestamps.tolist() == [1_600_000_000, 1_600_000_002]


def test_numeric_parquet_row_groups_read_into_one_array_each(tmp_path):
    """Integer ids, float ratings, integer times over many row groups: decoded batch by batch into one
    contiguous array per column, the same values as the file; a missing value in a later row group
    still names its row (the whole-file path)."""
    rng = np.random.default_rng(3)
    n = 5_000
    t = pa.table({"user_id": rng.integers(1, 50, n), "item_id": rng.integers(1, 80, n),
                  "rating": rng.integers(1, 11, n) / 2, "timestamp": rng.integers(10**9, 2 * 10**9, n)})
    pq.write_table(t, tmp_path / "r.parquet", row_group_size=700)
    r = load_dataset(str(tmp_path / "r.parquet")).ratings
    assert r.users.tolist() == t["user_id"].to_pylist() and r.items.tolist() == t["item_id"].to_pylist()
    assert r.ratings.tolist() == t["rating"].to_pylist() and r.timestamps.tolist() == t["timestamp"].to_pylist()
    users = t["user_id"].to_pylist()
    users[4_321] = None
    pq.write_table(t.set_column(0, "user_id", pa.array(users, pa.int64())), tmp_path / "n.parquet", row_group_size=700)
    with pytest.raises(DataError, match="n.parquet row 4322, column 'user_id': no user id"):
        load_dataset(str(tmp_path / "n.parquet"))


def test_item_table_gives_titles_and_text(tmp_path):
    ev = events()
    write(tmp_path / "e.parquet", ev)
    write(tmp_path / "p.csv", {"sku": ITEMS + ["unused"], "name": [f"Product {i}" for i in range(6)],
                               "category": ["Books", "Toys", "", "Books", "Games", "Misc"]})
    spec = DatasetSpec(str(tmp_path / "e.parquet"), COLS, str(tmp_path / "p.csv"),
                       ItemColumns(id="sku", title="name", text=("name", "category")))
    cat = load_dataset(spec).catalog
    assert list(cat.ids) == ITEMS + ["unused"]  # ids are text on both sides ('0042' kept: read as text)
    assert cat.title_of("sku-7") == "Product 2"
    assert cat.texts("[SEP]")[:3] == ["Product 0 [SEP] Books", "Product 1 [SEP] Toys", "Product 2"]


def test_spec_file_with_flags_over_it(tmp_path):
    write(tmp_path / "e.jsonl", events())
    (tmp_path / "data.toml").write_text('interactions = "e.jsonl"\n[columns]\nuser = "visitor"\nitem = "sku"\n'
                                        'rating = "stars"\ntime = "ts_ms"\n')
    ds = load_dataset(str(tmp_path / "data.toml"))  # relative to the spec file
    assert ds.format == "jsonl" and len(ds.ratings) == 20
    from recvec.cli.common import dataset_arg

    spec = dataset_arg(str(tmp_path / "data.toml"), "rating=", None, None)
    assert spec.columns == Columns(user="visitor", item="sku", rating="", time="ts_ms")


def test_flag_text_parsing():
    assert parse_columns("user=u, item=i,time=") == Columns(user="u", item="i", time="")
    assert parse_item_columns("id=sku,title=name,text=name+cat") == ItemColumns("sku", "name", ("name", "cat"))
    for bad, msg in [("user", "expected KEY=COLUMN"), ("who=x", "unknown key 'who'"), ("user=a,user=b", "twice"),
                     ("user=", "needs a column")]:
        with pytest.raises(RecvecError, match=msg):
            parse_columns(bad)


# ------------------------------------------------------------------------------------- bad input


def _err(spec) -> str:
    with pytest.raises(DataError) as e:
        load_dataset(spec)
    return str(e.value)


def test_missing_column_is_named_with_the_files_columns(tmp_path):
    path = write(tmp_path / "e.csv", events())
    msg = _err(path)  # default names: none there
    assert "e.csv has no user column: none of 'user_id', 'userId', 'user'" in msg
    assert "'visitor', 'sku', 'stars', 'ts_ms'" in msg
    msg = _err(DatasetSpec(path, Columns(user="visitor", item="item")))
    assert "e.csv has no column 'item' (given as item=item in columns)" in msg and "'visitor', 'sku'" in msg


def test_unparseable_value_names_file_row_and_column(tmp_path):
    ev = events()
    ev["stars"] = [str(x) for x in ev["stars"]]
    ev["stars"][13] = "four"
    msg = _err(DatasetSpec(write(tmp_path / "e.csv", ev), COLS))
    assert msg == "e.csv row 14, column 'stars': 'four' is not a number"


def test_bad_value_deep_in_a_large_csv_names_its_row(tmp_path):
    n = 300_000  # several of pyarrow's 1 MB blocks
    t = {"user_id": np.arange(n) % 97, "item_id": np.arange(n) % 1013, "rating": np.full(n, 4.0),
         "timestamp": np.arange(n)}
    path = tmp_path / "big.csv"
    pacsv.write_csv(pa.table(t), path)
    lines = path.read_bytes().split(b"\n")
    lines[250_001] = b"62,1000,4.0,not-a-time"  # data row 250,001
    path.write_bytes(b"\n".join(lines))
    assert "big.csv row 250001, column 'timestamp': 'not-a-time' is not a time" in _err(str(path))
    lines[250_001] = b"62,1000,4.0,1,extra"
    path.write_bytes(b"\n".join(lines))
    assert _err(str(path)).startswith("big.csv row 250001: expected 4 fields separated by ',' (as in the header), got 5")


def test_missing_and_empty_ids_and_jsonl_type_change(tmp_path):
    t = {"user_id": ["a", None, "c"], "item_id": ["x", "y", "z"]}
    assert _err(write(tmp_path / "n.parquet", t)) == "n.parquet row 2, column 'user_id': no user id (the value is missing)"
    t = {"user_id": ["a", "b", "c"], "item_id": ["x", "", "z"]}
    assert _err(write(tmp_path / "e.parquet", t)) == "e.parquet row 2, column 'item_id': the item id is empty"
    (tmp_path / "m.jsonl").write_text('{"user_id": "a", "item_id": 1}\n{"user_id": "b", "item_id": "x"}\n')
    assert _err(str(tmp_path / "m.jsonl")).startswith("m.jsonl row 2: Column(/item_id) changed from number to string")
    t = {"user_id": ["a", "b"], "item_id": ["x", "y"], "rating": [4.0, float("nan")]}
    assert _err(write(tmp_path / "r.parquet", t)) == "r.parquet row 2, column 'rating': rating nan is not a finite number"


def test_item_table_errors(tmp_path):
    ev = events()
    write(tmp_path / "e.parquet", ev)
    base = dict(interactions=str(tmp_path / "e.parquet"), columns=COLS, item_columns=ItemColumns(id="sku"))
    write(tmp_path / "p.parquet", {"sku": ITEMS[:-1], "name": ["a", "b", "c", "d"]})
    msg = _err(DatasetSpec(**base, items=str(tmp_path / "p.parquet")))
    assert "item id 'B09' is not in p.parquet" in msg and "missing from the item table" in msg
    write(tmp_path / "d.parquet", {"sku": ITEMS + ["B01"], "name": list("abcdef")})
    assert "d.parquet row 6: item id 'B01' is listed again (first on row 2)" in _err(
        DatasetSpec(**base, items=str(tmp_path / "d.parquet")))
    write(tmp_path / "i.parquet", {"sku": [1, 2, 3, 4, 5], "name": list("abcde")})
    assert "string item ids but i.parquet integer ones" in _err(DatasetSpec(**base, items=str(tmp_path / "i.parquet")))
    write(tmp_path / "x.parquet", {"product": ITEMS})
    msg = _err(DatasetSpec(**base, items=str(tmp_path / "x.parquet")))
    assert "x.parquet has no column 'sku' (given as id=sku in item_columns); the file holds: 'product'" in msg


def test_file_level_errors(tmp_path):
    assert "interactions file not found" in _err(str(tmp_path / "none.parquet"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    assert _err(str(tmp_path / "bad.parquet")).startswith("bad.parquet: not a readable Parquet (.parquet) file")
    (tmp_path / "bad.csv.gz").write_bytes(b"plain text, not gzip\n1,2\n")
    assert "gzip-compressed, as its name says" in _err(str(tmp_path / "bad.csv.gz"))
    (tmp_path / "empty.csv").write_bytes(b"")
    assert _err(str(tmp_path / "empty.csv")) == "empty.csv holds no rows: the file is empty"
    (tmp_path / "x.parquet.gz").write_bytes(b"")
    assert "cannot be read from a .gzip file" in _err(str(tmp_path / "x.parquet.gz"))
    (tmp_path / "s.toml").write_text("columns = 3\n")
    assert "interactions = \"FILE\" is missing" in _err(str(tmp_path / "s.toml"))
    (tmp_path / "t.toml").write_text('interactions = "e.csv"\ncolour = "red"\n')
    assert "unknown key 'colour'" in _err(str(tmp_path / "t.toml"))


def test_repeated_positive_pairs_count_once_at_their_latest(tmp_path):
    t = {"user_id": ["a"] * 4 + ["b"] * 2, "item_id": ["x", "y", "x", "z", "x", "y"],
         "timestamp": [1, 2, 3, 4, 1, 2]}
    split = leave_last_out(load_dataset(write(tmp_path / "r.parquet", t)).ratings)
    assert split.train.item_values().tolist() == ["y", "x", "x"] and split.test.item_values().tolist() == ["z", "y"]


@pytest.mark.s3
def test_tables_and_spec_file_on_s3(s3_env, tmp_path):
    bucket = s3_env.create_bucket()
    client = s3_env.client()
    ev = events()
    for name in ("e.parquet", "e.csv.zst"):
        client.put_object(Bucket=bucket, Key=f"data/{name}", Body=open(write(tmp_path / name, ev), "rb").read())
    client.put_object(Bucket=bucket, Key="data/products.jsonl",
                      Body=open(write(tmp_path / "products.jsonl", {"sku": ITEMS, "name": list("abcde")}), "rb").read())
    client.put_object(Bucket=bucket, Key="data/spec.toml", Body=b'interactions = "e.csv.zst"\n[columns]\n'
                      b'user = "visitor"\nitem = "sku"\nrating = "stars"\ntime = "ts_ms"\n'
                      b'[items]\nfile = "products.jsonl"\nid = "sku"\ntitle = "name"\n')
    a = load_dataset(DatasetSpec(f"s3://{bucket}/data/e.parquet", COLS), endpoint_url=s3_env.endpoint_url)
    b = load_dataset(f"s3://{bucket}/data/spec.toml", endpoint_url=s3_env.endpoint_url)
    assert a.ratings.user_values().tolist() == b.ratings.user_values().tolist() == ev["visitor"]
    assert b.catalog.title_of("B01") == "b" and a.fingerprint != b.fingerprint  # b has titles
    with pytest.raises(RecvecError, match="NoSuchKey|not found|does not exist"):
        load_dataset(f"s3://{bucket}/data/missing.parquet", endpoint_url=s3_env.endpoint_url)


def test_string_ids_keeps_digit_ids_as_text_in_csv(tmp_path):
    (tmp_path / "r.csv").write_text("user_id,item_id\n007,0042\n7,42\n007,42\n")
    assert load_dataset(str(tmp_path / "r.csv")).ratings.user_labels is None  # digits read as integers
    (tmp_path / "s.toml").write_text('interactions = "r.csv"\nstring_ids = true\n')
    r = load_dataset(str(tmp_path / "s.toml")).ratings
    assert r.user_values().tolist() == ["007", "7", "007"] and r.item_values().tolist() == ["0042", "42", "42"]
