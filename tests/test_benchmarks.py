"""The benchmark harness end to end on tiny sizes (``recvec bench ... --quick``), plus its pieces.

Runs: latency on the embedded synthetic dataset's ALS factors and a 2,000-item synthetic catalogue
(stored -> resumed -> forced -> report-only), accuracy on the embedded dataset, Milvus Lite when
installed. Timings are not asserted (the machine is shared); structure and accuracy numbers are.
"""

import json
import os

import numpy as np
import pytest

from recvec.benchmarks import baselines, flags, runner, sweep
from recvec.benchmarks.catalogs import CatalogSpec, make_catalogue, structure_summary
from recvec.benchmarks.report import markdown_table, pareto_frontier
from recvec.benchmarks.results import ResultStore, params_hash
from recvec.errors import RecvecError
from clirun import run_raising as run

PNG = b"\x89PNG\r\n\x1a\n"


def latency_args(out, data):
    return ["bench", "latency", "--quick", "--data", data, "--synthetic", 2000, "--dims", 16, "--queries", 60,
            "--single", 12, "--indexes", "flat,hnsw,ivf", "--ef-search", "16,128", "--nprobe", "1,4,64",
            "--out", out, "--quiet", "--json"]


@pytest.fixture(scope="module")
def latency_run(tmp_path_factory, synthetic_dir):
    out = tmp_path_factory.mktemp("bench-latency")
    res = run(*latency_args(out, synthetic_dir))
    return out, json.loads(res.output), synthetic_dir


def _units(out):
    return {p.parent: p.stat().st_mtime_ns for p in (out / "raw").rglob("meta.json")}


def test_latency_quick_writes_results_tables_and_plots(latency_run):
    out, result, _ = latency_run
    for name in ("latency.md", "latency_sweep.csv", "latency_summary.csv", "latency_baselines.csv",
                 "latency_targets.csv", "latency_percentiles.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    pngs = sorted(out.glob("latency_pareto_*.png"))
    assert len(pngs) == 2  # one per catalogue
    for p in pngs + [out / "latency_percentiles.png"]:
        assert p.read_bytes()[:8] == PNG
    md = (out / "latency.md").read_text()
    assert "## Machine" in md and "load average" in md and "FAISS OpenMP" in md and "recvec bench latency" in md
    assert "synthetic-2000x16" in md and "Baselines" in md and "| flat |" in md
    # raw results: JSON + npy only, loadable without pickle
    units = list((out / "raw").rglob("meta.json"))
    assert len(units) > 15
    for npy in (out / "raw").rglob("*.npy"):
        np.load(npy, allow_pickle=False)
    meta = json.loads(units[0].read_text())
    assert {"cpu", "cores", "threads", "versions", "load_average"} <= set(meta["machine"])


def test_latency_compares_hnsw_with_its_insertion_order_graph(tmp_path):
    """--indexes hnsw-noreorder: the HNSW graph as FAISS stores it, beside the breadth-first one."""
    res = run("bench", "latency", "--synthetic", 2000, "--dims", 16, "--queries", 60, "--single", 12,
              "--indexes", "flat,hnsw,hnsw-noreorder", "--ef-search", "128", "--no-baselines",
              "--out", tmp_path, "--quiet", "--json")
    rows = json.loads(res.output)["summary"]
    by = {r["index"]: r for r in rows}
    assert set(by) == {"flat", "hnsw", "hnsw-noreorder"}
    assert by["hnsw"]["recall@10"] >= 0.95 and by["hnsw-noreorder"]["recall@10"] >= 0.95
    md = (tmp_path / "latency.md").read_text()
    assert "hnsw-noreorder" in md


def test_latency_numbers_are_sane(latency_run):
    _, result, _ = latency_run
    rows = result["summary"]
    cats = {r["catalogue"] for r in rows}
    assert len(cats) == 2
    for r in rows:
        assert 0.0 <= r["recall@10"] <= 1.0
        assert r["single_p50_ms"] > 0 and r["single_p99_ms"] >= r["single_p50_ms"]
        assert r["full_p50_ms"] > 0 and r["qps_batch"] > 0
    for cat in cats:
        flat = [r for r in rows if r["catalogue"] == cat and r["index"] == "flat"]
        assert flat and flat[0]["recall@10"] == 1.0
        hnsw = [r for r in rows if r["catalogue"] == cat and r["index"] == "hnsw"]
        assert max(r["recall@10"] for r in hnsw) >= 0.95
    bl = {(b["catalogue"], b["name"]): b for b in result["baselines"]}
    for cat in cats:
        assert bl[(cat, "matmul")]["gflops"] > 0
        assert bl[(cat, "raw-flat")]["qps_batch"] > 0
        # implicit's exact recommend with our query vectors is the same exact filtered top-k
        assert bl[(cat, "implicit-exact")]["recall@10"] >= 0.99
        assert bl[(cat, "blas-exact")]["recall@10"] >= 0.99  # recvec's dense exact path agrees with the index
        # its FAISS wrapper over-fetches and filters: valid but approximate
        assert 0.0 < bl[(cat, "implicit-faiss")]["recall@10"] <= 1.0
    ml = next(c for c in cats if c != "synthetic-2000x16")
    assert bl[(ml, "implicit-recalc")]["recall@10"] >= 0.95  # its fold-in = ours (same regularization)
    targets = result["targets"]
    assert any("artifact" in t["target"] for t in targets)
    flat_size = next(t for t in targets if t["target"].startswith("flat artifact size"))
    assert "MiB" in flat_size["measured"]
    # recvec's full path and implicit's recalculate_user timed alternately, user by user
    paired = bl[(ml, "implicit-recalc")]["paired"]
    assert paired["n"] == 12 and paired["recvec"]["p50_ms"] > 0 and paired["implicit"]["p50_ms"] > 0
    assert any(t["target"].startswith("single-user query, flat, timed alternately") for t in targets)


def test_latency_full_path_agrees_with_bare_search(latency_run):
    import csv

    out, _, _ = latency_run
    with open(out / "latency_sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for r in rows:
        if r["backend"] == "faiss":
            # history ids -> user vector -> search gives the ids the batch search gave
            assert float(r["full_path_agreement"]) >= 0.99, r


def test_latency_resumes_forces_and_reports_from_stored_results(latency_run):
    out, first, data = latency_run
    before = _units(out)
    again = json.loads(run(*latency_args(out, data)).output)
    assert all(v == 0 for v in again["ran"].values())
    assert _units(out) == before  # nothing rerun
    assert again["summary"] == first["summary"]  # metrics recomputed from the stored results
    (out / "latency.md").unlink()
    (out / "latency_percentiles.png").unlink()
    only = json.loads(run("bench", "latency", "--report-only", "--out", out, "--quiet", "--json").output)
    assert (out / "latency.md").is_file() and (out / "latency_percentiles.png").is_file()
    assert only["summary"] == first["summary"]
    # --force reruns one (small) catalogue
    args = ["bench", "latency", "--quick", "--synthetic", 2000, "--dims", 16, "--queries", 60, "--single", 12,
            "--indexes", "flat", "--out", out, "--quiet", "--json", "--no-baselines", "--force"]
    forced = json.loads(run(*args).output)
    assert forced["ran"]["synthetic-2000x16"] > 0
    after = _units(out)
    changed = [p for p in after if after[p] != before.get(p)]
    assert changed and all("synthetic-2000x16" in str(p) for p in changed)


def test_accuracy_quick(tmp_path, synthetic_dir):
    out = tmp_path / "acc"
    res = run("bench", "accuracy", "--quick", "--data", synthetic_dir, "--out", out, "--quiet", "--json")
    rows = json.loads(res.output)["summary"]
    by = {(r["model"], r["index"]): r for r in rows}
    assert {("popular", "exact (dense scores)"), ("popular", "flat"), ("als", "exact (dense scores)"),
            ("als", "flat"), ("als", "hnsw"), ("als", "ivf"), ("als", "implicit-exact"),
            ("als", "implicit-faiss")} <= set(by)
    exact, flat = by[("als", "exact (dense scores)")], by[("als", "flat")]
    for k in (10, 20):
        assert abs(flat[f"recall@{k}"] - exact[f"recall@{k}"]) < 0.005  # the index reproduces the evaluation
        assert abs(by[("als", "implicit-exact")][f"recall@{k}"] - exact[f"recall@{k}"]) < 0.005
        assert flat[f"overlap@{k}"] == 1.0
    assert by[("als", "hnsw")]["overlap@10"] >= 0.95
    assert exact["recall@10"] > by[("popular", "exact (dense scores)")]["recall@10"]
    for r in rows:
        assert 0 <= r["ndcg@10"] <= r["recall@10"] <= r["recall@20"] <= 1
    for name in ("accuracy.md", "accuracy.csv", "accuracy_sweep.csv"):
        assert (out / name).is_file()
    assert list(out.glob("accuracy_pareto_*.png"))[0].read_bytes()[:8] == PNG
    assert "implicit" in (out / "accuracy.md").read_text()


@pytest.mark.skipif(not __import__("importlib").util.find_spec("milvus_lite"), reason="milvus-lite not installed")
def test_latency_milvus_rows_beside_faiss(tmp_path):
    out = tmp_path / "mv"
    res = run("bench", "latency", "--quick", "--synthetic", 1000, "--dims", 8, "--queries", 20, "--single", 5,
              "--indexes", "flat,hnsw", "--ef-search", "32", "--backends", "faiss,milvus", "--milvus-queries", 20,
              "--no-baselines", "--out", out, "--quiet", "--json")
    rows = json.loads(res.output)["summary"]
    mv = [r for r in rows if r["backend"] == "milvus-lite"]  # no --uri: Milvus Lite under --out
    assert {r["index"] for r in mv} == {"flat", "hnsw"}
    assert next(r for r in mv if r["index"] == "flat")["recall@10"] >= 0.99  # exact on both backends
    assert all(r["single_p50_ms"] > 0 for r in mv)
    assert (out / "milvus").is_dir()


def test_latency_served_backends_side_by_side(tmp_path, milvus_server, pg_server):
    """bench latency over FAISS, the real Milvus server and PostgreSQL + pgvector in one run: exact kinds
    agree with FAISS flat, 1-client and 8-client latency, QPS and the load's rows/s in the summary and
    the report's side-by-side table; the collections / tables it loaded are dropped afterwards."""
    out = tmp_path / "served"
    res = run("bench", "latency", "--synthetic", 2000, "--dims", 16, "--queries", 30, "--single", 16,
              "--indexes", "flat,hnsw", "--ef-search", "64", "--backends", "faiss,milvus,pgvector",
              "--uri", f"milvus={milvus_server.uri}", "--uri", f"pgvector={pg_server.uri}", "--served-queries", 30,
              "--clients", 4, "--no-baselines", "--out", out, "--quiet", "--json")
    rows = json.loads(res.output)["summary"]
    assert {(r["backend"], r["index"]) for r in rows} >= {(b, i) for b in ("faiss", "milvus", "pgvector")
                                                          for i in ("flat", "hnsw")}
    for r in rows:
        assert r["clients"] == 4 and r["conc_p50_ms"] > 0 and r["conc_qps"] > 0 and r["single_p99_ms"] > 0
        if r["index"] == "flat":
            assert r["recall@10"] == 1.0
        if r["backend"] != "faiss":
            assert r["load_s"] > 0 and r["rows_per_s"] > 0 and r["recall@10"] >= 0.95
    md = (out / "latency.md").read_text()
    assert "Backends side by side" in md and "QPS 4 clients" in md and "rows/s" in md
    from pymilvus import MilvusClient

    client = MilvusClient(uri=milvus_server.uri)
    try:
        assert not [c for c in client.list_collections() if c.startswith("bench_")]
    finally:
        client.close()
    import psycopg

    with psycopg.connect(pg_server.uri) as conn:
        assert not conn.execute("SELECT 1 FROM pg_tables WHERE tablename LIKE 'bench_%'").fetchall()
    res = run("bench", "latency", "--synthetic", 500, "--backends", "faiss,pgvector", "--out", tmp_path / "x", code=2)
    assert "backend pgvector needs a URI" in res.output and "--uri" in res.output


def test_accuracy_on_served_backends_beside_faiss(tmp_path, synthetic_dir, milvus_server, pg_server):
    """bench accuracy over the real Milvus server and PostgreSQL + pgvector: each kind they build at
    its default setting, the same users and exclusions; exact kinds give FAISS flat's top-K exactly,
    and the loaded collections / tables are dropped afterwards."""
    out = tmp_path / "acc-served"
    res = run("bench", "accuracy", "--data", synthetic_dir, "--models", "popular,als", "--indexes", "flat,hnsw",
              "--no-implicit", "--backends", "faiss,milvus,pgvector", "--uri", f"milvus={milvus_server.uri}",
              "--uri", f"pgvector={pg_server.uri}", "--out", out, "--quiet", "--json")
    by = {(r["model"], r["index"]): r for r in json.loads(res.output)["summary"]}
    for b in ("milvus", "pgvector"):
        assert ("popular", f"{b}:flat") not in by
        assert by[("als", f"{b}:flat")]["overlap@10"] == 1.0 and by[("als", f"{b}:flat")]["overlap@20"] == 1.0
        assert by[("als", f"{b}:flat")]["recall@10"] == by[("als", "flat")]["recall@10"]
        assert by[("als", f"{b}:hnsw")]["overlap@10"] >= 0.95
    assert "pgvector:hnsw" in (out / "accuracy.md").read_text()
    again = run("bench", "accuracy", "--data", synthetic_dir, "--models", "popular,als", "--indexes", "flat,hnsw",
                "--no-implicit", "--backends", "faiss,milvus,pgvector", "--uri", f"milvus={milvus_server.uri}",
                "--uri", f"pgvector={pg_server.uri}", "--out", out, "--quiet", "--json")
    assert json.loads(again.output)["ran"] == 0  # resumed: nothing reloaded
    import psycopg

    with psycopg.connect(pg_server.uri) as conn:
        assert not conn.execute("SELECT 1 FROM pg_tables WHERE tablename LIKE 'acc_%'").fetchall()
    res = run("bench", "accuracy", "--data", synthetic_dir, "--backends", "pgvector", "--out", tmp_path / "x", code=2)
    assert "backends must name faiss" in res.output


def test_bench_cli_errors(tmp_path):
    res = run("bench", "latency", "--out", tmp_path, code=2)
    assert "--data" in res.output
    res = run("bench", "latency", "--synthetic", 500, "--indexes", "flat,nope", "--out", tmp_path, code=2)
    assert "nope" in res.output and "--indexes" in res.output
    res = run("bench", "accuracy", "--models", "als,bogus", "--out", tmp_path, code=2)
    assert "bogus" in res.output
    res = run("bench", "latency", "--synthetic", "10k", "--out", tmp_path, code=2)
    assert "--synthetic" in res.output
    res = run("bench", "latency", "--report-only", "--out", tmp_path / "empty", code=2)
    assert "no stored" in res.output


# ------------------------------------------------------------------------------- pieces


def test_result_store_paths_atomic_and_pickle_free(tmp_path):
    store = ResultStore(tmp_path)
    p1 = {"label": "hnsw32-ef64", "base": {"n": 10}, "query": {"ef_search": 64}}
    p2 = {**p1, "query": {"ef_search": 128}}
    assert params_hash(p1) == params_hash(dict(reversed(list(p1.items()))))  # key order does not matter
    assert store.path("g/x", p1) != store.path("g/x", p2)
    assert not store.has("g/x", p1)
    s = store.save("g/x", p1, {"batch_s": [0.5]}, {"ids": np.arange(6).reshape(2, 3)})
    assert store.has("g/x", p1) and not store.has("g/x", p2)
    back = store.load("g/x", p1)
    assert back.meta["batch_s"] == [0.5] and back.params == p1
    np.testing.assert_array_equal(back.array("ids"), np.arange(6).reshape(2, 3))
    with pytest.raises(RecvecError, match="object"):
        store.save("g/x", p2, {}, {"bad": np.array([{"a": 1}], dtype=object)})
    assert not store.has("g/x", p2)
    assert [u.path for u in store.units("g/x")] == [s.path]  # no temporary leftovers
    assert not [p for p in (tmp_path / "raw").rglob("*") if p.name.startswith(".")]


def test_synthetic_catalogue_is_seeded_structured_and_chunked():
    spec = CatalogSpec(n=3000, d=32, chunk=700)
    a, b = make_catalogue(spec, 20), make_catalogue(spec, 20)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.queries, b.queries)
    assert a.vectors.shape == (3000, 32) and a.vectors.dtype == np.float32
    other = make_catalogue(CatalogSpec(n=3000, d=32, chunk=700, seed=1), 20)
    assert not np.array_equal(a.vectors, other.vectors)
    s = structure_summary(a.vectors)
    assert 0.9 < s["log_norm_sd"] < 1.5  # ALS-like norm spread
    iso = np.random.default_rng(0).standard_normal((3000, 32)).astype(np.float32)
    assert s["pca90"] < structure_summary(iso)["pca90"]  # lower intrinsic dimension than isotropic noise
    for h in a.histories:
        assert 16 <= len(h) <= 500 and len(np.unique(h)) == len(h) and h.min() >= 0 and h.max() < 3000
    with pytest.raises(RecvecError):
        CatalogSpec(n=50)


def test_a_wider_norm_spread_is_its_own_named_catalogue():
    base, wide = CatalogSpec(n=3000, d=32), CatalogSpec(n=3000, d=32, norm_sigma=2.0)
    assert base.name == "synthetic-3000x32" and wide.name == "synthetic-3000x32-sigma2"
    spread = [structure_summary(make_catalogue(s, 5).vectors)["log_norm_sd"] for s in (base, wide)]
    assert spread[1] > spread[0] * 1.4  # the spread asked for, not the default's
    for bad in (-0.5, 5.0, True, "2"):
        with pytest.raises(RecvecError, match="norm_sigma"):
            CatalogSpec(n=3000, norm_sigma=bad)
    from recvec.benchmarks.datasets import sources_for

    (src,) = sources_for(None, (3000,), (32,), norm_sigma=2.0)
    assert src.name == wide.name and src.params()["norm_sigma"] == 2.0


def test_query_settings_and_pareto():
    hnsw = sweep.query_settings({"ef_search": 64}, 10, ef_search=(8, 16, 128))
    assert [s["ef_search"] for s in hnsw] == [16, 64, 128] and [s["default"] for s in hnsw] == [False, True, False]
    ivf = sweep.query_settings({"nlist": 20, "nprobe": 3}, 10)
    assert [s["nprobe"] for s in ivf] == [1, 2, 3, 4, 8, 16, 20]
    assert sweep.query_settings({"ntotal": 5}, 10) == [{"default": True}]
    front = pareto_frontier([(0.5, 100), (0.9, 50), (0.8, 40), (0.99, 10), (0.4, 90)])
    assert front == [(0.5, 100), (0.9, 50), (0.99, 10)]
    assert flags.parse_ints("16, 64,1e3", "--x") == (16, 64, 1000)
    with pytest.raises(RecvecError, match="--x"):
        flags.parse_ints("1.5", "--x")
    table = markdown_table([{"a": "x|y", "b": 0.5}], [("a", "A", ""), ("b", "B", ".2f")])
    assert table.splitlines()[2] == "| x\\|y | 0.50 |"


def test_machine_info_records_threads_and_load():
    m = runner.machine_info()
    assert m["cores"] >= 1 and m["cpus_available"] >= 1
    assert "numpy" in m["versions"] and "python" in m["versions"]
    if hasattr(os, "getloadavg"):
        assert len(m["load_average"]) == 3
    mm = baselines.matmul_gflops(n=128, repeats=1)
    assert mm["gflops"] > 0


def test_the_matmul_peak_counts_the_threads_the_exact_path_splits_over(monkeypatch):
    """With numpy's BLAS on one thread the exact path runs as many matmuls at once as threads(), so
    the peak it is measured against is that many matmuls at once, not one call."""
    from recvec.indexes.backends import faiss_exact

    monkeypatch.setattr(faiss_exact, "exact_parallelism", lambda: 2)
    mm = baselines.matmul_gflops(n=128, repeats=1)
    assert mm["split_threads"] == 2 and mm["gflops_split"] > 0 and mm["gflops_one_call"] > 0
    assert mm["gflops"] == max(mm["gflops_split"], mm["gflops_one_call"])
    monkeypatch.setattr(faiss_exact, "exact_parallelism", lambda: 1)
    assert "gflops_split" not in baselines.matmul_gflops(n=128, repeats=1)


def test_latency_report_uses_the_latest_measurement_of_each_unit(tmp_path, synthetic_dir):
    """A rerun with other timing settings stores its units beside the old ones; the report must
    use the newest of each (never a mix of old baselines with new searches)."""
    small = ["bench", "latency", "--quick", "--synthetic", 2000, "--dims", 16, "--queries", 40,
             "--indexes", "flat", "--out", tmp_path, "--quiet", "--json"]
    run(*small, "--single", 8)
    second = json.loads(run(*small, "--single", 10).output)
    assert second["ran"]["synthetic-2000x16"] > 0
    metas = [json.loads(p.read_text()) for p in (tmp_path / "raw").rglob("meta.json")]
    nsingle = sorted({m["nsingle"] for m in metas if m.get("nsingle") is not None})
    assert nsingle == [8, 10]  # both runs' units are stored
    from recvec.benchmarks.latency import latency_metrics

    cat = latency_metrics(tmp_path)["catalogues"][0]
    assert len(cat["rows"]) == len({(r["backend"], r["index"], r["setting"]) for r in cat["rows"]})
    assert {r["nsingle"] for r in cat["rows"]} == {10}
