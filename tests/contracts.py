"""One contract test suite per interface, run over every implementation (implicit's
``RecommenderBaseTestMixin``, lenskit's ``ScorerTests``).

- ``SearchBackendContract``: what every ``SearchBackend`` (``recvec.indexes.backends.base``) must do,
  whatever serves it: shapes and dtypes, best-first inner-product scores, recall against exact search,
  exact history exclusion with k results and no padding, batch == single, the per-call knobs and
  their errors, the shared input checks, ``vectors()``, ``describe()``, and the round trip through an
  artifact (its Backend's ``manifest_entry``/``files``/``open``). A test module subclasses it and
  provides the ``backend_index`` fixture: ``(kind, index, min_recall)`` built over ``contract_data()``.
- ``UserEncoderContract``: what every ``UserEncoder`` (``recvec.engine.users``) must do: (n, dim)
  float32 vectors, batch == single, timestamps accepted, and ``params()`` -> JSON ->
  ``encoder_from_params`` rebuilding an encoder with the same output. A test module subclasses it and
  provides the ``user_encoder`` fixture: ``(encoder, arrays, vectors, n_items)``.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from recvec.errors import RecvecError
from recvec.indexes.artifact import load_artifact, save_artifact
from recvec.indexes.backends.faiss import brute_force_search

N, D, K, N_EXCL, N_QUERIES = 5000, 32, 10, 300, 100


def clustered(n: int, d: int = D, *, seed: int, n_clusters: int = 50, intrinsic: int = 8) -> np.ndarray:
    """Low intrinsic dimension clusters; continuous values, so exact ties do not occur."""
    rng = np.random.default_rng(1234)  # the same clusters for items and queries
    basis = rng.standard_normal((intrinsic, d))
    centers = rng.standard_normal((n_clusters, intrinsic)) * 3
    rng = np.random.default_rng(seed)
    z = centers[rng.integers(0, n_clusters, n)] + rng.standard_normal((n, intrinsic))
    return (z @ basis + 0.1 * rng.standard_normal((n, d))).astype(np.float32)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / truth.shape[1] for f, t in zip(found, truth)]))


@functools.lru_cache(maxsize=1)
def contract_data() -> dict:
    """Seeded items (N x D), queries, per-query exclusions (half from each query's top 500) and the
    exact answers with and without them."""
    items = clustered(N, seed=0)
    queries = clustered(N_QUERIES, seed=7)
    rng = np.random.default_rng(1)
    top500, _ = brute_force_search(items, queries, 500)
    exclude = [np.concatenate([top500[i][rng.choice(500, N_EXCL // 2, replace=False)],
                               rng.choice(np.setdiff1d(np.arange(N), top500[i]), N_EXCL // 2, replace=False)])
               for i in range(N_QUERIES)]
    exact, _ = brute_force_search(items, queries, K)
    exact_filtered, _ = brute_force_search(items, queries, K, exclude)
    return {"items": items, "queries": queries, "exclude": exclude, "exact": exact,
            "exact_filtered": exact_filtered, "top500": top500}


def assert_complete(rows: np.ndarray, k: int, ntotal: int, exclude=None) -> None:
    """k distinct valid rows per query, no -1 padding, no excluded row."""
    assert rows.dtype == np.int64 and rows.shape[1] == k
    assert (rows >= 0).all() and (rows < ntotal).all()
    for i, r in enumerate(rows):
        assert len(set(r.tolist())) == k
        if exclude is not None:
            assert not np.isin(r, exclude[i]).any(), f"query {i} got an excluded row"


class SearchBackendContract:
    """What every search backend must do (thresholds: the ``min_recall`` its fixture gives)."""

    #: Kinds whose scores approximate the inner product (quantised codes).
    approximate_scores: tuple[str, ...] = ("ivfsq", "ivfpq")
    #: Kinds whose answer to the same call may vary from call to call (a server's approximate
    #: search: Milvus 2.3.5's filtered HNSW does, for ~3% of calls); for them batch == single and the
    #: round trip are checked as overlap@k >= ``unrepeatable_min_overlap``, exact kinds stay identical.
    unrepeatable: tuple[str, ...] = ()
    unrepeatable_min_overlap: float = 0.95

    def assert_same_answers(self, kind, rows, scores, want_rows, want_scores, rtol=1e-5, atol=1e-5):
        if kind in self.unrepeatable:
            assert recall(rows, want_rows) >= self.unrepeatable_min_overlap
            return
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_allclose(scores, want_scores, rtol=rtol, atol=atol)

    def test_shapes_sorted_scores(self, backend_index):
        kind, ix, _ = backend_index
        data = contract_data()
        rows, scores = ix.search(data["queries"], K)
        assert ix.ntotal == N and ix.dim == D
        assert rows.shape == scores.shape == (N_QUERIES, K) and scores.dtype == np.float32
        assert_complete(rows, K, N)
        assert (np.diff(scores, axis=1) <= 1e-5).all(), "scores must be best first"

    def test_scores_are_inner_products(self, backend_index):
        kind, ix, _ = backend_index
        data = contract_data()
        rows, scores = ix.search(data["queries"], K)
        true = np.einsum("nd,nkd->nk", data["queries"], data["items"][rows])
        if kind in self.approximate_scores:
            assert np.corrcoef(true.ravel(), scores.ravel())[0, 1] > 0.95
        else:
            np.testing.assert_allclose(scores, true, rtol=1e-4, atol=1e-3)

    def test_recall_at_10(self, backend_index):
        kind, ix, min_recall = backend_index
        data = contract_data()
        rows, _ = ix.search(data["queries"], K)
        assert recall(rows, data["exact"]) >= min_recall

    def test_filtered_search_complete_and_accurate(self, backend_index):
        kind, ix, min_recall = backend_index
        data = contract_data()
        rows, _ = ix.search(data["queries"], K, exclude=data["exclude"])
        assert_complete(rows, K, N, data["exclude"])
        assert recall(rows, data["exact_filtered"]) >= min_recall

    def test_excluding_the_whole_top_300_still_fills_k(self, backend_index):
        kind, ix, min_recall = backend_index
        data = contract_data()
        exclude = [t[:N_EXCL] for t in data["top500"]]
        rows, _ = ix.search(data["queries"], K, exclude=exclude)
        assert_complete(rows, K, N, exclude)
        if min_recall >= 1.0:  # an exact kind stays exact
            truth, _ = brute_force_search(data["items"], data["queries"], K, exclude)
            np.testing.assert_array_equal(rows, truth)

    def test_batch_equals_single(self, backend_index):
        kind, ix, _ = backend_index
        data = contract_data()
        q, ex = data["queries"][:12], data["exclude"][:12]
        for exclude in (None, ex):
            rows, scores = ix.search(q, K, exclude=exclude)
            singles = [ix.search(q[i:i + 1], K, exclude=None if exclude is None else [exclude[i]]) for i in range(len(q))]
            self.assert_same_answers(kind, np.vstack([r for r, _ in singles]), np.vstack([s for _, s in singles]),
                                     rows, scores)

    def test_k_up_to_what_the_exclusion_leaves(self, backend_index):
        kind, ix, _ = backend_index
        data = contract_data()
        q = data["queries"][:1]
        with pytest.raises(RecvecError, match=r"k=4800 .*query 0"):
            ix.search(q, N - N_EXCL + 100, exclude=[np.arange(N_EXCL)])
        for k in (0, -1, N + 1, 2.5, True):
            with pytest.raises(RecvecError, match="k"):
                ix.search(q, k)

    def test_query_params_name_the_parameter(self, backend_index):
        kind, ix, _ = backend_index
        q = contract_data()["queries"][:5]
        info = ix.describe()
        is_hnsw = "hnsw" in kind.lower()
        if is_hnsw:
            ix.search(q, K, ef_search=K)
            ix.search(q, K, ef_search=256)
            with pytest.raises(RecvecError, match=r"ef_search=9 must be >= k \(10\)") as e:
                ix.search(q, K, ef_search=K - 1)
            assert e.value.params == ("ef_search",)
        else:
            with pytest.raises(RecvecError, match="ef_search applies to HNSW indexes only") as e:
                ix.search(q, K, ef_search=64)
            assert e.value.params == ("ef_search",)
        if not ("ivf" in kind.lower() or "nlist" in info or "nlist" in info.get("index_params", {})):
            with pytest.raises(RecvecError, match="nprobe applies to IVF indexes only"):
                ix.search(q, K, nprobe=4)
        for bad in (0, -3, 2**31):
            with pytest.raises(RecvecError, match=r"nprobe must be an integer from 1 to 2147483647"):
                ix.search(q, K, nprobe=bad)

    def test_shared_input_checks(self, backend_index):
        kind, ix, _ = backend_index
        q = contract_data()["queries"][:3]
        bad = q.copy()
        bad[1, 3] = np.nan
        with pytest.raises(RecvecError, match=r"NaN.*\[1\]"):
            ix.search(bad, K)
        bad[1, 3] = np.inf
        with pytest.raises(RecvecError, match="infinite"):
            ix.search(bad, K)
        with pytest.raises(RecvecError, match=r"dimension 16 .* 32"):
            ix.search(q[:, :16], K)
        with pytest.raises(RecvecError, match="exclude has 1 entries but there are 3 queries"):
            ix.search(q, K, exclude=[np.arange(3)])
        with pytest.raises(RecvecError, match=r"exclude\[0\] has item rows outside 0..4999: \[5000\]"):
            ix.search(q[:1], K, exclude=[np.array([N])])
        with pytest.raises(RecvecError, match=r"exclude\[0\] must hold integer item rows"):
            ix.search(q[:1], K, exclude=[np.array([1.5])])
        one, _ = ix.search(q[0], K)  # a single (d,) query is a batch of one
        np.testing.assert_array_equal(one, ix.search(q[:1], K)[0])
        empty_rows, empty_scores = ix.search(q[:0], K)
        assert empty_rows.shape == empty_scores.shape == (0, K)

    def test_vectors_and_describe(self, backend_index):
        kind, ix, _ = backend_index
        v = ix.vectors()
        assert v.shape == (N, D) and v.dtype == np.float32
        if kind not in self.approximate_scores:
            np.testing.assert_allclose(v, contract_data()["items"], rtol=1e-6, atol=1e-6)
        described = json.loads(json.dumps(ix.describe()))  # JSON-ready
        assert described and not any("token" in str(key).lower() or "password" in str(key).lower()
                                     for key in described)

    def test_artifact_round_trip_gives_the_same_answers(self, backend_index, tmp_path):
        kind, ix, _ = backend_index
        data = contract_data()
        dest = tmp_path / "art"
        save_artifact(dest, index=ix, item_ids=np.arange(N, dtype=np.int64) * 3 + 1,
                      arrays={"item_vectors": data["items"]}, catalog={},
                      manifest={"model": {"kind": "test", "params": {}}})
        art = load_artifact(dest)
        try:
            assert art.backend == ix.backend and art.index.ntotal == N and art.index.dim == D
            for exclude in (None, data["exclude"][:20]):
                r0, s0 = ix.search(data["queries"][:20], K, exclude=exclude)
                r1, s1 = art.index.search(data["queries"][:20], K, exclude=exclude)
                self.assert_same_answers(kind, r1, s1, r0, s0, rtol=1e-6, atol=0)
        finally:
            art.close()


class UserEncoderContract:
    """What every user encoder must do, and that its params rebuild it exactly."""

    def histories(self, n_items: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        rng = np.random.default_rng(5)
        hist = [rng.choice(n_items, size=s, replace=False).astype(np.int64) for s in (1, 3, 8, 20)]
        times = [np.sort(rng.integers(10**9, 10**9 + 10**7, size=len(h))) for h in hist]
        return hist, times

    def test_shape_dtype_and_finite(self, user_encoder):
        enc, _, _, n_items = user_encoder
        hist, times = self.histories(n_items)
        for ts in (None, times):
            x = enc.encode(hist, ts)
            assert x.shape == (len(hist), enc.dim) and x.dtype == np.float32 and np.isfinite(x).all()

    def test_batch_equals_single(self, user_encoder):
        enc, _, _, n_items = user_encoder
        hist, times = self.histories(n_items)
        both = enc.encode(hist, times)
        for i in range(len(hist)):
            np.testing.assert_allclose(enc.encode([hist[i]], [times[i]])[0], both[i], rtol=1e-5, atol=1e-6)

    def test_params_rebuild_the_same_encoder(self, user_encoder):
        from recvec.engine.users import encoder_from_params

        enc, arrays, vectors, n_items = user_encoder
        params = json.loads(json.dumps(enc.params()))  # what a manifest stores
        again = encoder_from_params(params, arrays, vectors, n_items=n_items)
        assert type(again) is type(enc) and again.params() == params
        hist, times = self.histories(n_items)
        np.testing.assert_allclose(again.encode(hist, times), enc.encode(hist, times), rtol=1e-6, atol=1e-7)

    def test_unknown_and_malformed_params_are_artifact_errors(self, user_encoder):
        from recvec.engine.users import encoder_from_params
        from recvec.errors import ArtifactError

        enc, arrays, vectors, n_items = user_encoder
        with pytest.raises(ArtifactError, match="unknown user_encoder kind 'nope'"):
            encoder_from_params({**enc.params(), "kind": "nope"}, arrays, vectors, n_items=n_items)
        with pytest.raises(ArtifactError, match="user_encoder must be an object"):
            encoder_from_params(["not", "a", "dict"], arrays, vectors, n_items=n_items)
