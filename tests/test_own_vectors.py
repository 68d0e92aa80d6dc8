"""Bring-your-own item vectors: `recvec build --vectors` from .npy (rows = the item table's), .npz,
Parquet (a list column) and CSV (one column per dimension), normalised or not, with query-time users
as the (recency-weighted) mean of their history's vectors; `query similar`, `query user` and
`bench latency --vectors` on them; bad files named."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from recvec.engine.data import TABLE_FORMATS
from recvec.engine.data.vectors import load_item_vectors
from recvec.errors import DataError
from clirun import run

N, D = 80, 12


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("vectors")
    rng = np.random.default_rng(7)
    v = rng.standard_normal((N, D)).astype(np.float32)
    v[5] = v[4] * 3 + 0.01  # item 5 points the way item 4 does
    ids = [f"item-{i:03d}" for i in range(N)]
    np.save(d / "v.npy", v)
    np.savez(d / "v.npz", ids=np.array(ids), vectors=v)
    pq.write_table(pa.table({"sku": ids, "embedding": pa.array(list(v), pa.list_(pa.float32()))}), d / "v.parquet")
    pacsv.write_csv(pa.table({"item_id": np.arange(N), **{f"d{j}": v[:, j] for j in range(D)}}), d / "v.csv")
    pq.write_table(pa.table({"sku": ids, "name": [f"Thing {i}" for i in range(N)]}), d / "items.parquet")
    return d, v, ids


def test_every_vector_format_reads_the_same(files):
    d, v, ids = files
    a = load_item_vectors(str(d / "v.parquet"), TABLE_FORMATS, id_column="sku")
    b = load_item_vectors(str(d / "v.npz"), TABLE_FORMATS)
    c = load_item_vectors(str(d / "v.csv"), TABLE_FORMATS)
    e = load_item_vectors(str(d / "v.npy"), TABLE_FORMATS, ids=np.array(ids))
    for x in (a, b, c, e):
        np.testing.assert_array_equal(x.vectors, v)
    assert a.ids.tolist() == b.ids.tolist() == e.ids.tolist() == ids and c.ids.tolist() == list(range(N))


def test_build_vectors_then_query_similar_and_user(files, tmp_path):
    d, v, ids = files
    out = tmp_path / "own"
    summary = json.loads(run("build", "--vectors", d / "v.parquet", "--vector-columns", "id=sku", "--items",
                             d / "items.parquet", "--item-columns", "id=sku,title=name", "--normalise", "--out", out,
                             "--json", "--quiet").output)
    assert summary["items"] == N and summary["dim"] == D and summary["string_ids"] and summary["model"] == "vectors"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["kind"] == "vectors" and manifest["user_encoder"]["kind"] == "mean"
    sim = json.loads(run("query", "similar", "--index", out, "--item", "item-004", "-k", 3, "--json").output)
    assert sim["results"][0]["id"] == "item-005" and sim["results"][0]["title"] == "Thing 5"
    assert sim["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)  # cosine of near-parallel vectors
    user = json.loads(run("query", "user", "--index", out, "--items", "item-001,item-002", "-k", 5, "--json").output)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    scores = unit @ unit[[1, 2]].mean(axis=0)
    scores[[1, 2]] = -np.inf
    assert [r["id"] for r in user["results"]] == [ids[i] for i in np.argsort(-scores)[:5]]  # the mean, exactly
    assert "unknown item id: item-999" in run("query", "user", "--index", out, "--items", "item-999", code=2).output


def test_npy_rows_are_the_item_tables_rows_and_recency_weighting(files, tmp_path):
    d, v, ids = files
    plain, weighted = tmp_path / "plain", tmp_path / "weighted"
    run("build", "--vectors", d / "v.npy", "--items", d / "items.parquet", "--item-columns", "id=sku,title=name",
        "--out", plain, "--quiet")
    run("build", "--vectors", d / "v.npy", "--items", d / "items.parquet", "--item-columns", "id=sku,title=name",
        "--half-life", 1, "--out", weighted, "--quiet")
    hist = "item-010,item-020,item-030"
    a = json.loads(run("query", "user", "--index", plain, "--items", hist, "-k", 1, "--json").output)["results"][0]
    b = json.loads(run("query", "user", "--index", weighted, "--items", hist, "-k", 1, "--json").output)["results"][0]
    w = np.array([0.25, 0.5, 1.0])  # half-life 1 item: each older item weighs half the next
    q = (w @ v[[10, 20, 30]]) / w.sum()
    s = v @ q
    s[[10, 20, 30]] = -np.inf
    assert b["id"] == ids[int(np.argmax(s))] and b["score"] == pytest.approx(float(s.max()), rel=1e-4)
    assert a["title"].startswith("Thing")
    manifest = json.loads((weighted / "manifest.json").read_text())
    assert manifest["user_encoder"]["weighting"]["half_life"] == 1.0


def test_bench_latency_on_own_vectors(files, tmp_path):
    d, _, _ = files
    res = run("bench", "latency", "--vectors", d / "v.parquet", "--vector-columns", "id=sku", "--indexes", "flat",
              "--queries", 40, "--single", 10, "--no-baselines", "--out", tmp_path / "lat", "--quiet", "--json")
    rows = json.loads(res.output)["summary"]
    assert rows and rows[0]["catalogue"] == "v.parquet" and rows[0]["recall@10"] == 1.0


def test_bad_vector_files_are_named(files, tmp_path):
    d, v, ids = files

    def err(path, **kw):
        with pytest.raises(DataError) as e:
            load_item_vectors(str(path), TABLE_FORMATS, **kw)
        return str(e.value)

    bad = v.copy()
    bad[9, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert err(tmp_path / "nan.npy") == "nan.npy row 10: the vector holds a NaN or infinity (1 such rows)"
    np.savez(tmp_path / "dup.npz", ids=np.array(["a", "b", "a"]), vectors=v[:3])
    assert "dup.npz row 3: item id 'a' has a vector already (row 1)" in err(tmp_path / "dup.npz")
    pq.write_table(pa.table({"item_id": [1, 2], "vec": pa.array([[1.0, 2.0], [1.0]], pa.list_(pa.float64()))}),
                   tmp_path / "ragged.parquet")
    assert "ragged.parquet row 2, column 'vec': a vector of 1 numbers; row 1 has 2" in err(tmp_path / "ragged.parquet")
    pq.write_table(pa.table({"key": ["a"], "x": [1.0]}), tmp_path / "noid.parquet")
    assert "noid.parquet has no id column" in err(tmp_path / "noid.parquet") and "'key', 'x'" in err(
        tmp_path / "noid.parquet")
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    assert "nothing is unpickled" in err(tmp_path / "obj.npy")
    assert "holds 80 vectors but the item table 3 rows" in err(d / "v.npy", ids=np.array(["a", "b", "c"]))
    res = run("build", "--vectors", d / "v.npy", "--data", d / "items.parquet", "--out", tmp_path / "x", code=2)
    assert "--vectors indexes the vectors you bring: drop --data" in res.output
