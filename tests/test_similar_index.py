"""`recvec build --similar-index SPEC`: a cosine index over the normalised item vectors stored with the
artifact, answering `similar` for un-normalised (ALS-like) vectors; an exact one agrees with the
exact scan, a graph reaches every item and keeps recall; normalised vectors need none; a broken
entry is named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recvec.engine.data.vectors import ItemVectors, vectors_dataset
from recvec.engine.models.text import l2_normalize
from recvec.engine.models.vectors import vectors_model
from recvec.errors import ArtifactError
from recvec.indexes.build import build_artifact, open_index, recommender_for
from recvec.indexes.similar import ARRAY, build_similar, open_similar
from recvec.indexes.spec import IndexSpec
from clirun import run

N, D = 2000, 16


@pytest.fixture(scope="module")
def vectors():
    """Clustered directions with a lognormal norm spread, like ALS item factors (seeded)."""
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((40, D))
    v = centres[rng.integers(0, 40, N)] + 0.5 * rng.standard_normal((N, D))
    v *= np.exp(1.2 * rng.standard_normal(N))[:, None] / np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32)


def exact_cosine(v: np.ndarray, row: int, k: int) -> np.ndarray:
    unit = l2_normalize(v)
    s = unit @ unit[row]
    s[row] = -np.inf
    return np.argsort(-s, kind="stable")[:k]


def model_of(v):
    return vectors_model(np.arange(len(v)), v, source="test")


def test_a_flat_similar_index_agrees_with_the_exact_scan(vectors, tmp_path):
    model = model_of(vectors)
    ds = vectors_dataset(ItemVectors(ids=np.arange(N), vectors=vectors, source="test", format="npy", digest="0" * 64), None)
    manifest = build_artifact(ds, model, IndexSpec.parse("hnsw16"), str(tmp_path / "a"), similar=IndexSpec.parse("flat"))
    assert manifest["similar"]["spec"] == "flat" and manifest["similar"]["build_time_s"] >= 0
    with_index = open_index(str(tmp_path / "a")).recommender
    scan = recommender_for(model, IndexSpec.parse("hnsw16"))  # no similar index: the exact scan
    assert with_index.similar_index is not None and scan.similar_index is None
    for item in range(0, N, 97):
        a, b = with_index.similar(item, 10), scan.similar(item, 10)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        assert item not in a.ids.tolist()


def test_a_graph_similar_index_reaches_every_item_and_keeps_recall(vectors):
    rec = recommender_for(model_of(vectors), IndexSpec.parse("flat"), similar=IndexSpec.parse("hnsw16"))
    _, entry = build_similar(vectors, IndexSpec.parse("hnsw16"))
    assert entry["reachable_share"] == 1.0  # a cosine graph has no hubs starving small-norm items
    items = range(0, N, 13)
    hits = [len(set(rec.similar(i, 10, ef_search=64).ids.tolist()) & set(exact_cosine(vectors, i, 10).tolist()))
            for i in items]
    assert np.mean(hits) / 10 >= 0.97
    one = rec.similar(5, 10, ef_search=64)
    assert one.scores[0] <= 1.0 + 1e-5 and np.all(np.diff(one.scores) <= 1e-6)  # cosines, best first
    every = rec.similar(5, N + 5)  # k above what is left: every other item once, with a note
    assert sorted(every.ids.tolist()) == [i for i in range(N) if i != 5] and every.note


def test_the_cli_builds_reports_and_answers_from_it(vectors, tmp_path):
    np.save(tmp_path / "v.npy", vectors)
    out = tmp_path / "cli"
    summary = json.loads(run("build", "--vectors", tmp_path / "v.npy", "--similar-index", "hnsw16", "--out", out,
                             "--json", "--quiet").stdout)
    assert summary["similar"]["spec"] == "hnsw16" and summary["similar"]["reachable_share"] == 1.0
    text = run("build", "--vectors", tmp_path / "v.npy", "--similar-index", "flat", "--out", tmp_path / "t",
               "--quiet").output
    assert "similar index flat over the normalised vectors" in text
    sim = json.loads(run("query", "similar", "--index", out, "--item", 7, "-k", 5, "--ef-search", 64, "--json").stdout)
    got = [r["id"] for r in sim["results"]]
    assert len(set(got) & set(exact_cosine(vectors, 7, 5).tolist())) >= 4 and 7 not in got
    normalised = run("build", "--vectors", tmp_path / "v.npy", "--normalise", "--similar-index", "hnsw16", "--out",
                     tmp_path / "n", "--json", "--quiet")
    assert "similar" not in json.loads(normalised.stdout) and "no similar index built" in normalised.stderr
    bad = run("build", "--vectors", tmp_path / "v.npy", "--similar-index", "hnsw-nope", "--out", tmp_path / "b",
              code=2).output
    assert "--similar-index" in bad


def test_a_broken_similar_entry_is_named(vectors):
    raw, entry = build_similar(vectors, IndexSpec.parse("flat"))
    assert open_similar(entry, raw, N, D).ntotal == N
    with pytest.raises(ArtifactError, match=ARRAY):
        open_similar(entry, None, N, D)
    with pytest.raises(ArtifactError, match=f"{N + 1} x {D}"):
        open_similar(entry, raw, N + 1, D)
    with pytest.raises(ArtifactError, match=ARRAY):
        open_similar(entry, raw[: len(raw) // 2].copy(), N, D)
    with pytest.raises(ArtifactError, match="similar must be an object"):
        open_similar("flat", raw, N, D)
