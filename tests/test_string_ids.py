"""String ids end to end: the vocabulary, the split, artifacts (item ids saved as a plain unicode
.npy, integer ids still int64), the Recommender, the CLI (build -> query -> JSON), unknown ids named;
and one dataset in two layouts (MovieLens files; Parquet with other column names and string ids)
giving the identical split and identical metrics."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recvec.engine.data import Columns, DatasetSpec, ItemColumns, load_dataset
from recvec.engine.split import leave_last_out, user_history
from recvec.engine.vocab import Vocabulary
from recvec.errors import ArtifactError, UnknownIdError
from clirun import run

pytestmark = pytest.mark.filterwarnings("ignore::recvec.engine.data.DataNote")


def test_vocabulary_of_strings():
    v = Vocabulary(np.array(["b", "a", "B00X4WHP5E"]), kind="item")
    assert v.string_ids and v.rows(["a", "B00X4WHP5E"]).tolist() == [1, 2]
    assert v.rows(["a", 7, "zz"], missing="mask").tolist() == [1, -1, -1]  # a number is not a string id
    with pytest.raises(UnknownIdError, match="unknown item ids: zz, 7"):
        v.rows(["zz", 7])
    ints = Vocabulary([5, 7])
    assert ints.rows(["5"], missing="mask").tolist() == [-1]  # nor is a string an integer id
    assert ints.parse(" 7 ") == 7 and ints.parse("4_2") == "4_2" and v.parse("7") == "7"
    assert ints._table is not None  # the dense fast path for small non-negative integer ids stays
    with pytest.raises(UnknownIdError) as e:
        v.rows(["x" * 10_000])
    assert len(str(e.value)) < 200  # a huge id is shown cut


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A Parquet event log with string ids and a product table (a seeded synthetic shop)."""
    d = tmp_path_factory.mktemp("shop")
    rng = np.random.default_rng(3)
    n_users, n_items = 120, 60
    clusters = rng.integers(0, 4, n_items)
    rows = []
    for u in range(n_users):
        liked = np.flatnonzero(clusters == u % 4)
        for j, i in enumerate(rng.choice(liked, size=min(12, len(liked)), replace=False)):
            rows.append((f"visitor-{u:04d}", f"SKU{i:03d}X", 1_700_000_000 + 3600 * (u + j)))
    u, i, t = zip(*rows)
    pq.write_table(pa.table({"visitor": list(u), "sku": list(i), "ts": pa.array(list(t), pa.timestamp("s"))}),
                   d / "events.parquet")
    pq.write_table(pa.table({"sku": [f"SKU{i:03d}X" for i in range(n_items)],
                             "name": [f"Product {i}" for i in range(n_items)],
                             "category": [f"cat{c}" for c in clusters]}), d / "products.parquet")
    return d


FLAGS = ["--columns", "user=visitor,item=sku,time=ts", "--item-columns", "id=sku,title=name,text=name+category"]


def test_cli_build_query_json_with_string_ids(shop, tmp_path):
    out = tmp_path / "idx"
    run("build", "--data", shop / "events.parquet", "--items", shop / "products.parquet", *FLAGS,
        "--factors", 8, "--iterations", 3, "--out", out, "--quiet")
    ids = np.load(out / "item_ids.npy", allow_pickle=False)  # no pickle needed to read them back
    assert ids.dtype.kind == "U" and "SKU000X" in ids
    res = json.loads(run("query", "user", "--index", out, "--items", "SKU001X,SKU002X", "-k", 5, "--json").output)
    assert res["query"]["items"] == ["SKU001X", "SKU002X"]
    assert [type(r["id"]) for r in res["results"]] == [str] * 5 and res["results"][0]["title"].startswith("Product")
    assert not {"SKU001X", "SKU002X"} & {r["id"] for r in res["results"]}
    sim = json.loads(run("query", "similar", "--index", out, "--item", "SKU004X", "--json").output)
    assert sim["query"]["item"] == "SKU004X" and sim["query"]["title"] == "Product 4"
    user = json.loads(run("query", "user", "--index", out, "--data", shop / "events.parquet", "--columns",
                          "user=visitor,item=sku,time=ts", "--user", "visitor-0003", "--json").output)
    assert user["query"]["user"] == "visitor-0003" and user["query"]["history_len"] == 11
    bad = run("query", "user", "--index", out, "--items", "SKU001X,NOPE-1,42", code=2)
    assert "Error: unknown item ids: NOPE-1, 42" in bad.output and "Traceback" not in bad.output
    skip = json.loads(run("query", "user", "--index", out, "--items", "SKU001X,NOPE-1", "--skip-unknown",
                          "--json").output)
    assert skip["query"]["skipped_unknown"] == ["NOPE-1"]
    assert "unknown user id: visitor-9999" in run("query", "user", "--index", out, "--data", shop / "events.parquet",
                                                   "--columns", "user=visitor,item=sku,time=ts", "--user",
                                                   "visitor-9999", code=2).output
    text = run("query", "user", "--index", out, "--items", "SKU001X").output
    assert "SKU" in text and "Product" in text  # the table prints string ids too


def test_integer_index_takes_integer_text_and_refuses_other_text(synthetic_dir, tmp_path):
    out = tmp_path / "als"
    run("build", "--data", synthetic_dir, "--factors", 8, "--iterations", 2, "--out", out, "--quiet")
    assert np.load(out / "item_ids.npy", allow_pickle=False).dtype == np.int64  # integer ids unchanged
    res = json.loads(run("query", "similar", "--index", out, "--item", "1", "-k", 3, "--json").output)
    assert res["query"]["item"] == 1 and all(isinstance(r["id"], int) for r in res["results"])
    msg = run("query", "similar", "--index", out, "--item", "B00X", code=2).output
    assert "'B00X' is not an integer id" in msg and "--item" in msg
    assert "An id given as text matches an integer id" in " ".join(run("query", "user", "--help").output.split())


def test_artifact_item_ids_checks():
    from recvec.indexes.manifest import check_item_ids, load_npy, npy_bytes

    ids = check_item_ids(["b", "a"], 2)
    assert ids.dtype.kind == "U" and load_npy(npy_bytes(ids), "item_ids.npy").tolist() == ["b", "a"]
    assert check_item_ids(np.array([3, 4], np.int32), 2).dtype == np.int64
    for bad, msg in [(["a", "a"], "unique"), (["a", ""], "empty"), ([1.5, 2.5], "integers or strings")]:
        with pytest.raises(ArtifactError, match=msg):
            check_item_ids(bad, 2)
    buf = io.BytesIO()
    np.save(buf, np.array(["a", 1], dtype=object), allow_pickle=True)
    with pytest.raises(ArtifactError, match="not a plain"):
        load_npy(buf.getvalue(), "item_ids.npy")  # an object array would need pickle: refused


def test_library_api_with_string_ids(shop, tmp_path):
    from recvec.engine.models.fit import ModelConfig, evaluate_model, fit_model
    from recvec.indexes.build import build_artifact, open_index
    from recvec.indexes.spec import IndexSpec

    spec = DatasetSpec(str(shop / "events.parquet"), Columns(user="visitor", item="sku", time="ts"),
                       str(shop / "products.parquet"), ItemColumns(id="sku", title="name"))
    ds = load_dataset(spec)
    split = leave_last_out(ds.ratings)
    assert split.users.string_ids and split.items.string_ids
    hist = user_history(split, ds.ratings, "visitor-0001")
    assert hist.dtype.kind == "U" and len(hist) == 11
    model = fit_model(split, ds.catalog, ModelConfig("als"))
    ev = evaluate_model(model, split)
    assert ev.users == 120 and ev.recall > 0.2  # the clusters are learnable
    build_artifact(ds, model, IndexSpec.parse("flat"), str(tmp_path / "a"))
    rec = open_index(str(tmp_path / "a")).recommender
    got = rec.recommend(hist, k=5)
    assert got.ids.dtype.kind == "U" and not set(got.ids) & set(hist)


def _layouts_equal(data, models, threshold=4.0):
    from recvec.benchmarks.layouts import benchmark_layouts

    r = benchmark_layouts(str(data), models=models, threshold=threshold)
    rows = {(x["layout"], x["model"]): x for x in r["rows"]}
    for kind in models:
        name = "als" if kind == "als" else kind
        for layout in ("parquet", "csv"):
            row = rows[(layout, name)]
            assert row["string_ids"] and row["rows_identical"] and row["user_order_identical"], row
            assert row["item_order_identical"] and row["metrics_identical"], row
        assert rows[("parquet-unpadded", name)]["row_sets_identical"]  # same rows, users met in another order
    return rows


def test_same_data_in_two_layouts_gives_identical_split_and_metrics(synthetic_dir):
    rows = _layouts_equal(synthetic_dir, ("popular", "als"))
    assert rows[("parquet", "als")]["recall@10"] == rows[("movielens", "als")]["recall@10"] > 0


@pytest.mark.realdata
def test_ml1m_in_two_layouts_gives_the_identical_split(ml1m_dir):
    rows = _layouts_equal(ml1m_dir, ("popular",))
    assert rows[("parquet", "popular")]["train_rows"] == 569_243 and rows[("csv", "popular")]["test_rows"] == 6_038


def test_bench_read_runs_small(tmp_path):
    res = run("bench", "read", "--rows", 20_000, "--repeats", 1, "--formats", "parquet", "--tmp", tmp_path, "--json")
    r = json.loads(res.output)
    assert {(x["format"], x["ids"]) for x in r["rows"]} == {("parquet", "integer"), ("parquet", "string")}
    assert all(x["rows"] == 20_000 and x["recvec_s"] > 0 and x["pyarrow_s"] > 0 for x in r["rows"])
    assert list(tmp_path.iterdir()) == []  # the generated files are removed


def test_bench_read_csv_has_the_system_pool_baseline(tmp_path):
    """CSV rows also time pyarrow's reader on the system allocator (the pool recvec reads CSV with)."""
    res = run("bench", "read", "--rows", 5_000, "--repeats", 1, "--formats", "csv", "--tmp", tmp_path, "--json")
    rows = json.loads(res.output)["rows"]
    assert {x["ids"] for x in rows} == {"integer", "string"}
    for x in rows:
        assert x["pyarrow_system_s"] > 0 and x["ratio_vs_system"] == pytest.approx(x["recvec_s"] / x["pyarrow_system_s"])
