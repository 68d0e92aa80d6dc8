"""Norm-banded HNSW (``hnsw-bands``, ``faiss_banded.BandedIndex``) and graph reachability reporting.

Data: seeded ALS-like vectors -- the contract suite's clustered directions (3,000 x 16) given
lognormal norms (sigma 1.2, as ML-1M's ALS item factors) -- queries from the same clusters, each
excluding 40 of its exact top 200 and 40 random rows. On such data an inner-product HNSW graph
leaves small-norm items unreachable; every band of a banded index is reachable.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from contracts import N, SearchBackendContract, clustered, contract_data, recall
from recvec.indexes import backends
from recvec.indexes.artifact import load_artifact, save_artifact
from recvec.indexes.backends.faiss import brute_force_search
from recvec.indexes.backends.faiss_banded import BandedIndex, band_bounds
from recvec.indexes.spec import IndexSpec
from clirun import run_raising as run

K = 10
#: Minimum filtered recall@10 against exact search at ef 64 on the ALS-like data. Measured:
#: hnsw 0.99, hnsw-noreorder 0.99, hnsw-bands 1.0, hnsw-bands2 1.0 (walked bands: scan_max 200).
#: hnsw-plain (no cosine links) is the comparison kind: the one that can leave nodes unreachable.
GRAPH_KINDS = {"hnsw": 0.95, "hnsw-noreorder": 0.95, "hnsw-plain": 0.95, "hnsw-bands": 0.97, "hnsw16-bands2": 0.97}


@functools.lru_cache(maxsize=1)
def als_like() -> dict:
    rng = np.random.default_rng(11)
    items = clustered(3000, 16, seed=2)
    items *= (rng.lognormal(0.0, 1.2, (3000, 1)) / np.linalg.norm(items, axis=1, keepdims=True)).astype(np.float32)
    queries = clustered(60, 16, seed=9)
    top, _ = brute_force_search(items, queries, 200)
    exclude = [np.union1d(t[rng.choice(200, 40, replace=False)], rng.choice(3000, 40, replace=False)) for t in top]
    truth, _ = brute_force_search(items, queries, K, exclude)
    return {"items": items, "queries": queries, "exclude": exclude, "truth": truth}


def build(kind: str):
    data = als_like()
    spec = IndexSpec.parse(kind)
    if spec.kind == "hnsw-bands":  # small bands walked, not scanned: the graphs are what is tested
        return BandedIndex.build(data["items"], spec, scan_max=200)
    return backends.get("faiss").build(data["items"], spec)


@pytest.fixture(scope="module", params=list(GRAPH_KINDS))
def graph(request):
    return request.param, build(request.param)


def test_every_graph_kind_finds_the_exact_filtered_top10(graph):
    kind, ix = graph
    data = als_like()
    rows, scores = ix.search(data["queries"], K, exclude=data["exclude"], ef_search=64)
    for r, ex in zip(rows, data["exclude"]):
        assert len(set(r.tolist())) == K and not np.isin(r, ex).any()
    assert recall(rows, data["truth"]) >= GRAPH_KINDS[kind]
    np.testing.assert_allclose(scores, np.einsum("nd,nkd->nk", data["queries"], data["items"][rows]),
                               rtol=1e-4, atol=1e-4)
    share = ix.describe()["reachable_share"]
    if kind == "hnsw-plain":  # at 3,000 items the bounded repair links them all; at 200k it leaves half
        assert 0 < share <= 1.0
    else:
        assert share == 1.0


def test_cosine_links_reach_every_node_and_keep_the_graphs_own_links():
    """link_cosine_neighbours on FAISS's inner-product graph (which strands small norms here): every
    node reachable afterwards, every original link kept, lists without repeats or self-links."""
    import faiss

    from recvec.indexes.backends.faiss_build import _level0, link_cosine_neighbours, unreachable_nodes

    items = als_like()["items"]
    raw = faiss.index_factory(16, "HNSW16,Flat", faiss.METRIC_INNER_PRODUCT)
    raw.hnsw.efConstruction = 200
    raw.add(items)
    assert unreachable_nodes(raw.hnsw).size > 100
    table, slots = _level0(raw.hnsw)
    before = table[slots].copy()
    assert link_cosine_neighbours(raw, items) == 0 and unreachable_nodes(raw.hnsw).size == 0
    after = table[slots]
    for v in range(0, 3000, 7):
        old, new = before[v][before[v] >= 0], after[v][after[v] >= 0]
        assert np.array_equal(new[:old.size], old) and len(set(new.tolist())) == new.size and v not in new
    assert ((after >= 0).sum(axis=1) > (before >= 0).sum(axis=1)).mean() > 0.9  # nearly every list gained links


def test_bands_are_all_reachable_and_narrow():
    ix = build("hnsw-bands")
    d = ix.describe()
    assert d["bands"] >= 3 and not any(d["band_scanned"]), d
    assert d["band_reachable_share"] == [1.0] * d["bands"] and d["reachable_share"] == 1.0
    assert sum(d["band_sizes"]) == 3000 and json.loads(json.dumps(d)) == d
    norms = np.sort(np.linalg.norm(als_like()["items"], axis=1))
    bounds = band_bounds(norms, 3, min_size=50)
    assert bounds[0] == 0 and bounds[-1] == norms.size and (np.diff(bounds) >= 50).all()
    for lo, hi in zip(bounds[1:-1], bounds[2:]):  # every band above the lowest: at most 3x, or min_size
        assert norms[hi - 1] <= 3 * norms[lo] * (1 + 1e-6) or hi - lo == 50


def test_scanned_and_walked_bands_answer_alike():
    """The same bands scanned exactly (scan_max above every band) or walked at a wide ef agree."""
    data = als_like()
    spec = IndexSpec.parse("hnsw16-bands2")
    walked = BandedIndex.build(data["items"], spec, scan_max=0)
    scanned = BandedIndex.build(data["items"], spec, scan_max=10**6)
    assert all(scanned.describe()["band_scanned"])
    exact, _ = scanned.search(data["queries"], K, exclude=data["exclude"])
    np.testing.assert_array_equal(exact, data["truth"])
    wide, _ = walked.search(data["queries"], K, exclude=data["exclude"], ef_search=400)
    assert recall(wide, data["truth"]) >= 0.999


@pytest.mark.parametrize("ef", [10, 64])
def test_a_single_query_walks_its_bands_as_a_batch_does(ef, monkeypatch):
    """One query takes its own path (1-D steps, each walked band's beam filtered after an unfiltered
    walk, a short beam walked again with the selector, a band holding many excluded rows walked with
    it at once); its rows and scores are the batch path's, bit for bit. At ef 10 some walks use the
    selector; at ef 64 none do."""
    data = als_like()
    ix = build("hnsw-bands")
    again = []
    real = ix._graphs[0].__class__.search_c

    def counted(self, n, x, k, dist, labels, params=None):
        again.append(params is not None and params.sel is not None)
        return real(self, n, x, k, dist, labels, params)

    monkeypatch.setattr(ix._graphs[0].__class__, "search_c", counted)
    rows, scores = ix.search(data["queries"], K, exclude=data["exclude"], ef_search=ef)
    again.clear()
    for i, ex in enumerate(data["exclude"]):
        r, s = ix.search(data["queries"][i:i + 1], K, exclude=[ex], ef_search=ef)
        np.testing.assert_array_equal(r[0], rows[i])
        np.testing.assert_array_equal(s[0], scores[i])
    assert any(again) == (ef == 10), (ef, sum(again))


def test_runs_of_scanned_bands_are_one_scan_and_single_queries_agree():
    """Consecutive scanned bands are scanned as one matrix; a query whose exclusion leaves fewer
    than k items in such a run, and queries excluding nothing, answer alike one at a time and in a
    batch, and as exactly as the walked bands allow."""
    data = als_like()
    ix = BandedIndex.build(data["items"], IndexSpec.parse("hnsw-bands"), scan_max=700)
    scanned = [u for u in ix._units if u.scanned]
    assert scanned and any(len(u.bands) > 1 for u in scanned) and len(ix._units) < ix.bands
    top = ix._units[0]
    assert top.scanned, [(u.bands, u.size) for u in ix._units]
    exclude = list(data["exclude"])
    exclude[0] = np.sort(top.ids)[3:]  # 3 allowed items left in the top run, fewer than k
    exclude[1] = np.empty(0, dtype=np.int64)
    truth, _ = brute_force_search(data["items"], data["queries"], K, exclude)
    rows, scores = ix.search(data["queries"], K, exclude=exclude, ef_search=64)
    assert recall(rows, truth) >= 0.97
    assert not np.isin(rows, np.concatenate(exclude[:1])).any(axis=1)[0] and (rows >= 0).all()
    for i, ex in enumerate(exclude):
        r, s = ix.search(data["queries"][i], K, exclude=[ex], ef_search=64)
        np.testing.assert_array_equal(r[0], rows[i])
        np.testing.assert_array_equal(s[0], scores[i])


def test_single_queries_from_threads_agree_and_leave_no_exclusion_behind():
    """A single query marks its excluded rows in a per-thread mask and restores it: queries from four
    threads at once get the answers they get one by one, and a later query excluding nothing is not
    affected by the exclusions before it."""
    from concurrent.futures import ThreadPoolExecutor

    data = als_like()
    ix = build("hnsw-bands")
    free_before, _ = ix.search(data["queries"][:5], K)
    alone = [ix.search(q, K, exclude=[ex], ef_search=32) for q, ex in zip(data["queries"], data["exclude"])]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda i: ix.search(data["queries"][i], K, exclude=[data["exclude"][i]],
                                                     ef_search=32), range(len(data["queries"]))))
    for (r1, s1), (r2, s2) in zip(alone, together):
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(s1, s2)
    free_after = np.vstack([ix.search(q, K)[0] for q in data["queries"][:5]])
    np.testing.assert_array_equal(free_after, free_before)
    assert ix._allowed().all()


def test_a_wide_norm_spread_is_answered_exactly_by_the_bands():
    """Item norms spread as lognormal(sigma 2): the top of every query's answer is a few large-norm
    items, which the banded index finds in its small top bands (scanned exactly)."""
    from recvec.benchmarks.catalogs import CatalogSpec, make_catalogue

    cat = make_catalogue(CatalogSpec(n=20_000, d=16, norm_sigma=2.0), 50)
    truth, _ = brute_force_search(cat.vectors, cat.queries, K, cat.histories)
    bands = BandedIndex.build(cat.vectors, IndexSpec.parse("hnsw-bands"))
    rows, _ = bands.search(cat.queries, K, exclude=cat.histories, ef_search=16)
    assert recall(rows, truth) >= 0.99 and bands.describe()["reachable_share"] == 1.0
    single = np.vstack([bands.search(cat.queries[i], K, exclude=[cat.histories[i]], ef_search=16)[0]
                        for i in range(len(cat.queries))])
    np.testing.assert_array_equal(single, rows)


def test_a_banded_artifact_is_one_npz_without_pickle(tmp_path):
    ix = build("hnsw-bands")
    data = als_like()
    save_artifact(tmp_path / "a", index=ix, item_ids=np.arange(3000, dtype=np.int64),
                  arrays={"item_vectors": data["items"]}, catalog={}, manifest={"model": {"kind": "test", "params": {}}})
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["index_file"] == "index.bands.npz" and m["arrays"]["item_vectors"]["from_index"] is True
    with np.load(tmp_path / "a" / "index.bands.npz", allow_pickle=False) as z:
        assert z["band_0"].dtype == np.uint8 and z["max_norms"].shape == (ix.bands,)
    art = load_artifact(tmp_path / "a")
    assert isinstance(art.index, BandedIndex) and np.array_equal(art.item_vectors, data["items"])
    r0, s0 = ix.search(data["queries"], K, exclude=data["exclude"])
    r1, s1 = art.index.search(data["queries"], K, exclude=data["exclude"])
    np.testing.assert_array_equal(r0, r1)
    np.testing.assert_array_equal(s0, s1)


class TestBandedContract(SearchBackendContract):
    """The backend contract over walked bands (the contract data's narrow norm spread gives one band
    at ratio 3, two at ratio 2; scan_max 1000 makes them walked graphs with pruning between them)."""

    @pytest.fixture(scope="class")
    @classmethod
    def banded(cls):
        return BandedIndex.build(contract_data()["items"], IndexSpec.parse("hnsw16-bands2"), scan_max=1000)

    @pytest.fixture
    def backend_index(self, banded):
        assert banded.ntotal == N and banded.bands == 2 and not any(banded.describe()["band_scanned"])
        return "hnsw-bands", banded, 0.95


def test_build_manifest_and_json_carry_reachable_share(tmp_path):
    np.save(tmp_path / "v.npy", als_like()["items"])
    for spec in ("hnsw-bands", "hnsw16"):
        out = tmp_path / spec
        summary = json.loads(run("build", "--vectors", tmp_path / "v.npy", "--index", spec, "--out", out,
                                 "--quiet", "--json").stdout)
        manifest = json.loads((out / "manifest.json").read_text())
        share = manifest["index"]["reachable_share"]
        assert summary["index"]["reachable_share"] == share and 0 < share <= 1.0
        if spec == "hnsw-bands":
            assert share == 1.0 and manifest["index"]["faiss_class"] == "NormBandedHNSW"
    text = run("build", "--vectors", tmp_path / "v.npy", "--index", "hnsw-bands", "--out", tmp_path / "t",
               "--quiet").output
    assert "100.00% of items reachable" in text


def test_bench_latency_json_carries_reachable_share_and_coverage(tmp_path):
    res = run("bench", "latency", "--synthetic", 2000, "--dims", 16, "--queries", 60, "--single", 12,
              "--indexes", "flat,hnsw,hnsw-bands", "--ef-search", "64", "--no-baselines",
              "--out", tmp_path, "--quiet", "--json")
    by = {r["index"]: r for r in json.loads(res.output)["summary"]}
    assert set(by) == {"flat", "hnsw", "hnsw-bands"}
    assert by["flat"]["coverage"] == 1.0 and by["flat"]["reachable_share"] is None
    assert 0 < by["hnsw"]["reachable_share"] <= 1.0 and by["hnsw-bands"]["reachable_share"] == 1.0
    assert by["hnsw-bands"]["coverage"] >= 0.95 and by["hnsw-bands"]["recall@10"] >= 0.95
    md = (tmp_path / "latency.md").read_text()
    assert "coverage" in md and "reachable" in md and "hnsw-bands" in md


def test_coverage_and_the_graph_target_from_rows():
    from recvec.benchmarks.metrics import _graph_target, coverage_against

    gt, ids = np.array([[1, 2], [2, 3]]), np.array([[1, 5], [2, -1]])
    assert coverage_against(ids, gt, 2) == pytest.approx(2 / 3) and coverage_against(ids, None, 2) is None
    row = {"kind": "hnsw-bands", "index": "hnsw-bands", "setting": "ef=16", "recall@10": 0.97, "single_p50_ms": 0.1,
           "speedup_p50_vs_flat": 120.0, "coverage": 0.995, "reachable_share": 1.0}
    flat = {"single_p50_ms": 12.0}
    assert _graph_target({"name": "c"}, 10, flat, [row], "hnsw-bands")[0]["met"]
    for worse in ({"reachable_share": 0.47}, {"coverage": 0.93}, {"speedup_p50_vs_flat": 40.0}, {"recall@10": 0.9}):
        assert not _graph_target({"name": "c"}, 10, flat, [{**row, **worse}], "hnsw")[0]["met"], worse
    assert _graph_target({"name": "c"}, 10, flat, [], "hnsw") == []
