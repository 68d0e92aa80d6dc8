"""Index specs and the ItemIndex contract, run over every index kind.

Data: seeded clustered vectors (5,000 x 32, 50 clusters on an 8-d subspace plus small noise),
queries drawn from the same distribution. Exclusion sets mix 150 of a query's exact top-500 with
150 random rows (history tends to sit near the user's vector), 300 rows in all.
"""

from __future__ import annotations

import numpy as np
import pytest

from contracts import D, K, N, N_QUERIES, SearchBackendContract, assert_complete, clustered, contract_data, recall
from recvec.errors import RecvecError
from recvec.indexes import backends
from recvec.indexes.backends.base import hnsw_ef, walk_ef
from recvec.indexes.backends.faiss import ItemIndex, brute_force_search
from recvec.indexes.backends.faiss_build import (
    _find_hnsw,
    build_index,
    check_metric,
    describe_index,
    link_unreachable,
    reorder_for_locality,
    unreachable_nodes,
)
from recvec.indexes.spec import (
    DEFAULT_EF_SEARCH,
    IndexSpec,
    QueryParams,
    default_nprobe,
)

# Minimum mean recall@10 against exact search on this data (unfiltered, and filtered against
# exact filtered search). Measured: hnsw 0.98/0.995, ivf 0.955/0.95, ivfsq 0.93/0.93, ivfpq
# 0.41/0.46 (8 bytes per 32-d vector: PQ codes are coarse), IVF32,Flat,RFlat 0.90/0.90.
KINDS = {
    "flat": 1.0,
    "hnsw": 0.95,
    "hnsw-noreorder": 0.95,  # the same graph in FAISS's insertion order (hnsw is stored breadth-first)
    "hnsw-bands": 0.95,  # norm-banded L2 graphs (faiss_banded.BandedIndex)
    "hnsw16-bands2": 0.95,  # narrower bands: more of them
    "ivf": 0.90,
    "ivfsq": 0.88,
    "ivfpq": 0.30,
    "IVF32,Flat,RFlat": 0.85,  # a factory string; its refine wrapper takes no selector (over-fetch path)
}


@pytest.fixture(scope="module")
def data():
    return contract_data()


@pytest.fixture(scope="module", params=list(KINDS), ids=list(KINDS))
def built(request, data):
    spec = IndexSpec.parse(request.param)
    return request.param, backends.get("faiss").build(data["items"], spec, seed=0)


class TestFaissContract(SearchBackendContract):
    """The shared backend contract over every FAISS index kind (thresholds in KINDS), and what only
    FAISS indexes have: a file of their own, nprobe up to nlist."""

    @pytest.fixture
    def backend_index(self, built):
        kind, ix = built
        return kind, ix, KINDS[kind]

    def test_save_load_same_answers(self, built, data, tmp_path):
        kind, ix = built
        path = tmp_path / "index.faiss"
        ix.save(path)
        back = type(ix).load(path, D)
        same = ("ntotal", "dim", "M", "ef_construction", "ef_search", "nlist", "nprobe")
        assert back.ntotal == N and all(back.describe().get(k) == ix.describe().get(k) for k in same)
        for exclude in (None, data["exclude"]):
            r0, s0 = ix.search(data["queries"], K, exclude=exclude)
            r1, s1 = back.search(data["queries"], K, exclude=exclude)
            np.testing.assert_array_equal(r0, r1)
            np.testing.assert_array_equal(s0, s1)
        r2, _ = type(ix).from_bytes(ix.to_bytes()).search(data["queries"], K)
        np.testing.assert_array_equal(r2, ix.search(data["queries"], K)[0])

    def test_nprobe_up_to_nlist(self, built, data):
        kind, ix = built
        q = data["queries"][:10]
        info = ix.describe()
        if "nlist" in info and kind != "IVF32,Flat,RFlat":
            wide, _ = ix.search(q, K, nprobe=info["nlist"])  # every list: exact for IVF-Flat
            if kind == "ivf":
                np.testing.assert_array_equal(wide, data["exact"][:10])
            with pytest.raises(RecvecError, match=r"nprobe=\d+ must be <= the index's nlist"):
                ix.search(q, K, nprobe=info["nlist"] + 1)


@pytest.mark.parametrize("kind", list(KINDS))
def test_k_equal_to_everything_left_returns_exactly_the_allowed_rows(kind):
    """With k = ntotal - excluded, every allowed row must come back (fallbacks included)."""
    items = clustered(800, seed=3)
    spec = IndexSpec.parse(kind.replace("IVF32", "IVF8"))
    ix = backends.get("faiss").build(items, spec)
    q = clustered(3, seed=4)
    rng = np.random.default_rng(0)
    exclude = [rng.choice(800, 100, replace=False) for _ in range(3)]
    rows, _ = ix.search(q, 700, exclude=exclude)
    for i in range(3):
        assert sorted(rows[i].tolist()) == sorted(set(range(800)) - set(exclude[i].tolist()))


def test_flat_equals_numpy_brute_force_exactly(data):
    ix = ItemIndex(build_index(data["items"], IndexSpec.parse("flat")))
    for exclude in (None, data["exclude"]):
        rows, scores = ix.search(data["queries"], 20, exclude=exclude)
        ref_rows, ref_scores = brute_force_search(data["items"], data["queries"], 20, exclude)
        np.testing.assert_array_equal(rows, ref_rows)  # ids and order
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-4)


def test_brute_force_breaks_ties_by_row_and_excludes():
    items = np.array([[1.0, 0], [0, 1], [1, 0], [0.5, 0], [1, 0]], dtype=np.float32)
    rows, scores = brute_force_search(items, np.array([[1.0, 0]], np.float32), 3)
    assert rows.tolist() == [[0, 2, 4]] and scores.tolist() == [[1.0, 1.0, 1.0]]
    rows, _ = brute_force_search(items, np.array([[1.0, 0]], np.float32), 3, [np.array([2])])
    assert rows.tolist() == [[0, 4, 3]]


def test_add_appends_rows_and_empty_exclusions_mean_none(data):
    ix = ItemIndex(build_index(data["items"][:1000], IndexSpec.parse("hnsw16")))
    new = ix.add(data["items"][1000:1010])
    assert new.tolist() == list(range(1000, 1010)) and ix.ntotal == 1010
    q = data["items"][1000:1010] / 10  # queries whose exact top-1 under inner product includes new rows
    rows, _ = ix.search(q, 1, ef_search=1010)
    ref, _ = brute_force_search(data["items"][:1010], q, 1)
    np.testing.assert_array_equal(rows, ref)
    assert (ref >= 1000).any()
    r0, _ = ix.search(data["queries"][:5], K)
    r1, _ = ix.search(data["queries"][:5], K, exclude=[[] for _ in range(5)])
    np.testing.assert_array_equal(r0, r1)


def test_hnsw_graph_has_no_unreachable_nodes_after_build(data):
    """Inner-product HNSW leaves small-norm items without in-links; build_index links them."""
    import faiss

    raw = faiss.index_factory(D, "HNSW32,Flat", faiss.METRIC_INNER_PRODUCT)
    raw.hnsw.efConstruction = 200
    raw.add(data["items"])
    before = unreachable_nodes(raw.hnsw).size
    assert before > 0  # the problem exists on this data (about 4.5% of the items)
    assert link_unreachable(raw, data["items"]) == 0 and unreachable_nodes(raw.hnsw).size == 0
    built = build_index(data["items"], IndexSpec.parse("hnsw"))
    assert unreachable_nodes(_find_hnsw(built)).size == 0
    # every item can now be found: searching with ef = ntotal returns exact top-10 for all queries
    rows, _ = ItemIndex(built).search(data["queries"], K, exclude=data["exclude"], ef_search=N)
    assert recall(rows, data["exact_filtered"]) == 1.0


def test_rows_no_search_can_reach_are_filled_exactly():
    """A graph with unreachable nodes (a raw FAISS HNSW, not repaired): asking for every allowed
    row must still return all of them -- the exact fallback from reconstructed vectors."""
    import faiss

    from recvec.indexes.backends.faiss_build import _level0

    items = clustered(800, seed=3)
    raw = faiss.index_factory(D, "HNSW32,Flat", faiss.METRIC_INNER_PRODUCT)
    raw.add(items)
    levels = faiss.vector_to_array(raw.hnsw.levels)
    cut = [u for u in range(800) if levels[u] == 1 and u != raw.hnsw.entry_point][:20]
    table, slots = _level0(raw.hnsw)
    for v in range(800):  # remove every link to the cut nodes, keeping each list contiguous
        row = table[slots[v]]
        kept = row[(row >= 0) & ~np.isin(row, cut)]
        table[slots[v]] = np.r_[kept, np.full(slots.shape[1] - kept.size, -1)]
    assert set(cut) <= set(unreachable_nodes(raw.hnsw).tolist())
    ix = ItemIndex(raw)
    exclude = [np.arange(0, 800, 4)]
    rows, scores = ix.search(clustered(1, seed=4), 600, exclude=exclude)
    assert sorted(rows[0].tolist()) == sorted(set(range(800)) - set(exclude[0].tolist()))
    assert (np.diff(scores[0]) <= 1e-5).all()


def test_reordered_hnsw_is_the_same_graph_in_breadth_first_order(data, tmp_path):
    """reorder_for_locality moves nodes, not links: every answer (rows and scores, batch and single,
    any ef) is the insertion-order graph's; rows stay rows; the entry point is stored first."""
    import faiss

    plain = build_index(data["items"], IndexSpec.parse("hnsw16-noreorder"))
    entry = int(plain.hnsw.entry_point)
    reordered = reorder_for_locality(faiss.clone_index(plain))
    order = faiss.vector_to_array(faiss.downcast_index(reordered).id_map)
    assert sorted(order.tolist()) == list(range(N)) and order[0] == entry and (order != np.arange(N)).any()
    assert describe_index(reordered)["reordered"] is True and describe_index(reordered)["faiss_class"] == "IndexHNSWFlat"
    a, b = ItemIndex(plain), ItemIndex(reordered)
    np.testing.assert_array_equal(b.vectors(), data["items"])
    q, ex = data["queries"], data["exclude"]
    for ef in (16, 64):
        ra, sa = a.search(q, K, exclude=ex, ef_search=ef)
        rb, sb = b.search(q, K, exclude=ex, ef_search=ef)
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(sa, sb)
        for i in range(0, N_QUERIES, 17):
            np.testing.assert_array_equal(b.search(q[i], K, exclude=[ex[i]], ef_search=ef)[0][0], rb[i])
    b.save(tmp_path / "h.faiss")
    loaded = ItemIndex.load(tmp_path / "h.faiss")
    np.testing.assert_array_equal(loaded.search(q, K, exclude=ex)[0], b.search(q, K, exclude=ex)[0])
    # the default hnsw spec builds this kind of index
    assert describe_index(build_index(data["items"][:500], IndexSpec.parse("hnsw"))).get("reordered") is True


def test_reordered_hnsw_takes_more_rows():
    items = clustered(600, seed=8)
    ix = ItemIndex(build_index(items[:500], IndexSpec.parse("hnsw16")))
    np.testing.assert_array_equal(ix.add(items[500:]), np.arange(500, 600))
    np.testing.assert_array_equal(ix.vectors(), items)
    assert unreachable_nodes(_find_hnsw(ix.faiss_index)).size == 0
    rows, _ = ix.search(items[[10, 550]], 5, ef_search=600)
    np.testing.assert_array_equal(rows, brute_force_search(items, items[[10, 550]], 5)[0])


def test_an_id_map_whose_ids_are_not_rows_is_refused():
    import faiss

    idmap = faiss.IndexIDMap(faiss.IndexFlatIP(4))
    idmap.add_with_ids(np.eye(4, dtype=np.float32), np.array([0, 1, 2, 7]))
    with pytest.raises(RecvecError, match="IndexIDMap ids must be the rows 0..3"):
        ItemIndex(idmap)


def test_post_filter_ef_widens_with_exclusion_and_the_faiss_walk_ef_does_not():
    assert hnsw_ef(64, 10, 0) == 64
    assert hnsw_ef(64, 10, 300) == 310
    assert hnsw_ef(500, 10, 300) == 500
    assert walk_ef(64, 10) == 64
    assert walk_ef(4, 10) == 10


@pytest.mark.parametrize("kind", ["hnsw", "hnsw-noreorder"])
def test_hnsw_filters_its_beam_to_the_answers_of_the_selector_walk(data, kind):
    """Exclusion applied to the walk's returned beam (no selector) gives FAISS's own IDSelector walk's
    rows and scores, in batches and single calls, both for queries whose beam held k allowed rows and
    for those that walk again with the selector (ef 10: the beam is k wide)."""
    import faiss

    index = backends.get("faiss").build(data["items"], IndexSpec.parse(kind), seed=0)
    q, excl = data["queries"], [np.unique(e) for e in data["exclude"]]
    for ef, short_expected in ((10, True), (64, False)):
        rows = np.empty((len(q), K), dtype=np.int64)
        short = index._filter_beams(q, K, excl, ef, rows, np.empty((len(q), K), dtype=np.float32))
        assert (short.size > 0) == short_expected and short.size < len(q)
        batch_rows, batch_scores = index.search(q, K, exclude=excl, ef_search=ef)
        compared = 0
        for i in range(len(q)):
            ids = faiss.IDSelectorBatch(excl[i])
            params = faiss.SearchParametersHNSW(efSearch=ef, sel=faiss.IDSelectorNot(ids))
            walk_scores, walk_rows = index.faiss_index.search(q[i:i + 1], K, params=params)
            single_rows, single_scores = index.search(q[i], K, exclude=[excl[i]], ef_search=ef)
            np.testing.assert_array_equal(single_rows[0], batch_rows[i])
            if (walk_rows < 0).any():  # padded by FAISS, completed by ItemIndex: nothing to compare
                continue
            compared += 1
            np.testing.assert_array_equal(np.sort(batch_rows[i]), np.sort(walk_rows[0]))
            np.testing.assert_allclose(batch_scores[i], walk_scores[0], rtol=1e-6)
        assert compared >= len(q) // 2


# ------------------------------------------------------------------------------------- specs


@pytest.mark.parametrize("text, expected", [
    ("flat", IndexSpec("flat")),
    ("FLAT", IndexSpec("flat")),
    ("hnsw", IndexSpec("hnsw")),
    ("hnsw16", IndexSpec("hnsw", M=16)),
    ("hnsw-noreorder", IndexSpec("hnsw", reorder=False)),
    ("hnsw16-noreorder", IndexSpec("hnsw", M=16, reorder=False)),
    ("hnsw-plain", IndexSpec("hnsw", reorder=False, cosine_links=False)),
    ("hnsw16-plain", IndexSpec("hnsw", M=16, reorder=False, cosine_links=False)),
    ("ivf", IndexSpec("ivf")),
    ("ivf256", IndexSpec("ivf", nlist=256)),
    ("ivfsq", IndexSpec("ivfsq")),
    ("ivfpq64", IndexSpec("ivfpq", nlist=64)),
    ("IVF64,Flat", IndexSpec("factory", factory="IVF64,Flat")),
    ("HNSW16,Flat", IndexSpec("factory", factory="HNSW16,Flat")),
    ("IVF64,SQ8", IndexSpec("factory", factory="IVF64,SQ8")),
    ("PQ16", IndexSpec("factory", factory="PQ16")),
])
def test_spec_parse(text, expected):
    spec = IndexSpec.parse(text)
    assert spec == expected
    assert IndexSpec.parse(str(spec)) == spec
    assert IndexSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("text", ["", "  ", "bogus", "hnws", "flat3", "hnsw0", "ivf 64", "IVF64;rm -rf",
                                  "ivf-noreorder", "flat-noreorder", "hnsw-reorder",
                                  "ivf-plain", "hnsw-plain-noreorder", "hnsw-bands-plain"])
def test_spec_parse_refuses_unknown(text):
    with pytest.raises(RecvecError, match="index spec|unknown|must be"):
        IndexSpec.parse(text)


def test_spec_validation():
    with pytest.raises(RecvecError, match="kind"):
        IndexSpec("annoy")
    with pytest.raises(RecvecError, match="M"):
        IndexSpec("hnsw", M=1)
    with pytest.raises(RecvecError, match="nlist"):
        IndexSpec("ivf", nlist=0)
    with pytest.raises(RecvecError, match="scalar quantiser"):
        IndexSpec("ivfsq", sq="SQ3")
    with pytest.raises(RecvecError, match="factory"):
        IndexSpec("factory")
    with pytest.raises(RecvecError, match="cosine_links"):
        IndexSpec("hnsw", cosine_links="yes")


def test_a_manifest_from_before_cosine_links_reads_as_a_graph_without_them():
    old = {k: v for k, v in IndexSpec.parse("hnsw16").to_dict().items() if k != "cosine_links"}
    spec = IndexSpec.from_dict(old)
    assert spec.cosine_links is False and spec.reorder is True and str(spec) == "hnsw16-plain-reordered"


def test_nlist_is_clipped_to_what_n_allows():
    assert IndexSpec("ivf").resolve_nlist(3706) == min(round(4 * 3706 ** 0.5), 3706 // 39)
    assert IndexSpec("ivf").resolve_nlist(10) == 1
    assert IndexSpec("ivf", nlist=10_000).resolve_nlist(500) == 500
    items = clustered(300, seed=5)
    index = build_index(items, IndexSpec("ivf", nlist=10_000))
    assert describe_index(index)["nlist"] <= 300 and index.ntotal == 300
    assert describe_index(index)["nprobe"] == default_nprobe(describe_index(index)["nlist"])
    assert IndexSpec("ivfpq").resolve_pq_m(64) == 16
    with pytest.raises(RecvecError, match="pq_m=5 must divide .* 32"):
        IndexSpec("ivfpq", pq_m=5).resolve_pq_m(32)


def test_build_index_is_inner_product_with_row_ids():
    import faiss

    items = clustered(500, seed=6)
    for text in ("flat", "hnsw16", "ivf8", "IVF8,SQ8", "HNSW8,Flat"):
        index = build_index(items, IndexSpec.parse(text))
        assert index.metric_type == faiss.METRIC_INNER_PRODUCT and index.ntotal == 500
        rows, _ = ItemIndex(index).search(items[[7, 123]], 1, **({"nprobe": 8} if "ivf" in text.lower() else {}))
        # a vector's best inner-product match need not be itself, but it is for these: check via brute force
        ref, _ = brute_force_search(items, items[[7, 123]], 1)
        np.testing.assert_array_equal(rows, ref)
    hnsw = describe_index(build_index(items, IndexSpec.parse("hnsw")))
    assert hnsw["M"] == 32 and hnsw["ef_construction"] == 200 and hnsw["ef_search"] == DEFAULT_EF_SEARCH


def test_metric_is_checked_never_silently_l2():
    import faiss

    with pytest.raises(RecvecError, match="inner product"):
        check_metric(faiss.IndexFlatL2(8))
    with pytest.raises(RecvecError, match="inner product"):
        ItemIndex(faiss.IndexFlatL2(8))
    with pytest.raises(RecvecError, match="LSH"):  # FAISS cannot build an inner-product LSH
        build_index(clustered(100, seed=1), IndexSpec.parse("LSH"))


def test_build_index_refuses_bad_input():
    with pytest.raises(RecvecError, match="NaN"):
        build_index(np.full((10, 4), np.nan, np.float32), IndexSpec())
    with pytest.raises(RecvecError, match="shape"):
        build_index(np.zeros(4, np.float32), IndexSpec())
    with pytest.raises(RecvecError, match="lists but only 100 vectors"):
        build_index(clustered(100, seed=1), IndexSpec.parse("IVF256,Flat"))
    with pytest.raises(RecvecError, match="IDMap"):
        build_index(clustered(100, seed=1), IndexSpec.parse("IDMap,Flat"))
    with pytest.raises(RecvecError, match="PQ7"):
        build_index(clustered(100, seed=1), IndexSpec.parse("PQ7"))


def test_query_params_validation():
    assert QueryParams() == QueryParams(None, None)
    for bad in (0, -3, 1.5, True, "8", 2**31):
        with pytest.raises(RecvecError, match="ef_search must be an integer from 1 to 2147483647") as e:
            QueryParams(ef_search=bad)
        assert e.value.params == ("ef_search",)  # the CLI shows it as --ef-search
        with pytest.raises(RecvecError, match="nprobe must be an integer"):
            QueryParams(nprobe=bad)
    with pytest.raises(RecvecError, match=r"ef_search=5 must be >= k \(10\)"):
        QueryParams(ef_search=5).check(10, is_hnsw=True, nlist=None)
    with pytest.raises(RecvecError, match=r"nprobe=65 must be <= .*64"):
        QueryParams(nprobe=65).check(10, is_hnsw=False, nlist=64)


# ------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
@pytest.mark.slow
def test_hnsw_filtered_recall_on_ml1m_als(ml1m_dir):
    """Issue target: HNSW filtered recall@10 >= 0.99 against exact filtered search (train items
    excluded) on ML-1M ALS vectors."""
    from recvec.engine.data import load_dataset
    from recvec.engine.models.als import ALSConfig, fit_als
    from recvec.engine.split import leave_last_out

    split = leave_last_out(load_dataset(str(ml1m_dir)).ratings)
    model = fit_als(split.matrix, ALSConfig(seed=0))
    histories = split.histories()
    users = model.user_factors
    ix = ItemIndex(build_index(model.item_factors, IndexSpec.parse("hnsw"), seed=0))
    rows, _ = ix.search(users, 10, exclude=histories)
    truth, _ = brute_force_search(model.item_factors, users, 10, histories)
    assert_complete(rows, 10, ix.ntotal, histories)
    assert recall(rows, truth) >= 0.99


def test_blocked_exact_batches_match_brute_force_across_blocks_and_input_forms(monkeypatch, data):
    """The blocked exact path (batches of 20+ queries) over several item blocks and query chunks,
    with exclusions given sorted-unique (the vectorised check), or unsorted with repeats as int32."""
    from recvec.indexes.backends import faiss_exact as search_mod
    from recvec.threads import set_threads

    monkeypatch.setattr(search_mod, "_BLOCK_ITEMS", 700)  # 5,000 items: 8 blocks, the last partial
    monkeypatch.setattr(search_mod, "_BLOCK_FLOATS", 700 * 30)  # 30 queries per chunk
    ix = ItemIndex(build_index(data["items"], IndexSpec.parse("flat")))
    ref_rows, ref_scores = brute_force_search(data["items"], data["queries"], 20, data["exclude"])
    canonical = [np.unique(e) for e in data["exclude"]]
    messy = [np.r_[e[::-1], e[:3]].astype(np.int32) for e in data["exclude"]]
    # on the calling thread, then split over 3 threads (as when numpy's BLAS runs on one)
    for split in (False, True):
        if split:
            monkeypatch.setattr(search_mod, "_numpy_blas_threads", lambda: 1)
            monkeypatch.setattr(search_mod, "_SPLIT_MIN_MACS", 0)
            set_threads(3)
        try:
            for exclude in (data["exclude"], canonical, messy):
                rows, scores = ix.search(data["queries"], 20, exclude=exclude)
                np.testing.assert_array_equal(rows, ref_rows)
                np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-4)
            rows, _ = ix.search(data["queries"], 20)
            np.testing.assert_array_equal(rows, brute_force_search(data["items"], data["queries"], 20)[0])
        finally:
            set_threads(None)


def test_sorted_exclusions_out_of_range_are_still_refused(data):
    ix = ItemIndex(build_index(data["items"], IndexSpec.parse("flat")))
    exclude = [np.array([1, 2, 3], dtype=np.int64)] * (N_QUERIES - 1) + [np.array([4, N], dtype=np.int64)]
    with pytest.raises(RecvecError, match=rf"exclude\[{N_QUERIES - 1}\] has item rows outside 0..{N - 1}: \[{N}\]"):
        ix.search(data["queries"], K, exclude=exclude)
    with pytest.raises(RecvecError, match=r"outside"):
        ix.search(data["queries"][:1], K, exclude=[np.array([-1, 3], dtype=np.int64)])


def test_a_single_sorted_exclusion_is_used_as_given_and_any_other_is_made_so():
    from recvec.indexes.backends.base import as_exclusions

    given = np.array([2, 5, 9], dtype=np.int64)
    assert as_exclusions([given], 1, 10)[0] is given
    for raw in ([9, 2, 5, 5], np.array([9, 2, 5], dtype=np.int32), np.array([5, 2, 9], dtype=np.int64)):
        np.testing.assert_array_equal(as_exclusions([raw], 1, 10)[0], given)
    for bad in (np.array([2, 10], dtype=np.int64), np.array([-1, 2], dtype=np.int64)):
        with pytest.raises(RecvecError, match=r"exclude\[0\] has item rows outside 0..9"):
            as_exclusions([bad], 1, 10)
