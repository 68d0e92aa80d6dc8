"""MovieLens readers (every format, dir/zip), error messages, fingerprint, synthetic dataset."""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recvec.engine import data as data_mod
from recvec.engine.data import Catalog, Dataset, load_dataset
from recvec.engine.synthetic import (
    GENRES,
    default_dataset_dir,
    generate,
    write_synthetic_movielens,
)
from recvec.errors import DataError, RecvecError, UnknownIdError

# ------------------------------------------------------------------------------ small fixtures

RATINGS = [  # user, movie, stars, timestamp (file order, deliberately not sorted)
    (1, 10, 5, 978300760), (1, 20, 3, 978302109), (2, 10, 4, 978301968),
    (2, 30, 1, 978300275), (3, 20, 2, 978824291), (1, 30, 4, 978300000),
]
MOVIES = [  # id, title (latin-1 characters on purpose), genres
    (10, "Toy Story (1995)", "Animation|Children's|Comedy"),
    (20, "Misérables, Les (1995)", "Drama|Musical"),
    (30, "Cité des enfants perdus, La (1995)", "Adventure|Sci-Fi"),
]


def write_ml1m(d: Path, ratings=RATINGS, movies=MOVIES, *, movies_encoding="latin-1") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "ratings.dat").write_text("".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in ratings), encoding="ascii")
    (d / "movies.dat").write_bytes("".join(f"{m}::{t}::{g}\n" for m, t, g in movies).encode(movies_encoding))
    (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n")
    return d


def write_ml100k(d: Path, *, with_genre_file=True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "u.data").write_text("".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in RATINGS))
    lines = []
    for m, t, g in MOVIES:
        flags = ["1" if name in g.split("|") else "0" for name in data_mod.ML100K_GENRES]
        lines.append("|".join([str(m), t, "01-Jan-1995", "", "http://us.imdb.com/x"] + flags))
    (d / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    if with_genre_file:
        (d / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(data_mod.ML100K_GENRES)) + "\n")
    return d


def write_csv(d: Path) -> Path:
    """ml-latest format: header, CRLF, quoted titles (commas and doubled quotes), half stars."""
    d.mkdir(parents=True, exist_ok=True)
    rows = ["userId,movieId,rating,timestamp"] + [
        f"{u},{m},{r - 0.5 if m == 20 else float(r)},{t}" for u, m, r, t in RATINGS
    ]
    (d / "ratings.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    movies = ['movieId,title,genres', '10,Toy Story (1995),Animation|Children|Comedy',
              '20,"Misérables, Les (1995)",Drama|Musical',
              '30,"""Great"" Escape, The (1963)",Adventure|War']
    (d / "movies.csv").write_bytes(("\r\n".join(movies) + "\r\n").encode("utf-8"))
    return d


def zip_dir(src: Path, out: Path, *, top: str | None = None) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        if top:
            zf.writestr(f"{top}/", "")
        for f in sorted(src.iterdir()):
            zf.write(f, f"{top}/{f.name}" if top else f.name)
    return out


def expected_arrays():
    a = np.array(RATINGS, dtype=np.int64)
    return a[:, 0], a[:, 1], a[:, 2].astype(np.float32), a[:, 3]


def assert_same(a: Dataset, b: Dataset):
    for name in ("users", "items", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(a.ratings, name), getattr(b.ratings, name))
    np.testing.assert_array_equal(a.catalog.ids, b.catalog.ids)
    assert a.catalog.titles == b.catalog.titles and a.catalog.genres == b.catalog.genres
    assert a.format == b.format and a.fingerprint == b.fingerprint


# ------------------------------------------------------------------------------ formats


def test_ml1m_dir_arrays_dtypes_order_and_latin1(tmp_path):
    ds = load_dataset(str(write_ml1m(tmp_path / "ml")))
    u, m, r, t = expected_arrays()
    assert ds.format == "ml-1m" and ds.source == str(tmp_path / "ml")
    np.testing.assert_array_equal(ds.ratings.users, u)
    np.testing.assert_array_equal(ds.ratings.items, m)
    np.testing.assert_array_equal(ds.ratings.ratings, r)
    np.testing.assert_array_equal(ds.ratings.timestamps, t)
    assert (ds.ratings.users.dtype, ds.ratings.items.dtype, ds.ratings.ratings.dtype,
            ds.ratings.timestamps.dtype) == (np.int64, np.int64, np.float32, np.int64)
    assert len(ds.ratings) == len(RATINGS)
    assert ds.catalog.ids.dtype == np.int64 and list(ds.catalog.ids) == [10, 20, 30]
    assert ds.catalog.titles == tuple(t for _, t, _ in MOVIES)
    assert ds.catalog.genres == tuple(g for _, _, g in MOVIES)
    assert ds.catalog.title_of(20) == "Misérables, Les (1995)"
    assert ds.catalog.texts()[0] == "Toy Story (1995) [SEP] Animation|Children's|Comedy"
    assert ds.files == ("ratings.dat", "movies.dat")


def test_title_of_unknown_id_raises_unknown_id_error(tmp_path):
    cat = load_dataset(str(write_ml1m(tmp_path / "ml"))).catalog
    with pytest.raises(UnknownIdError) as ei:
        cat.title_of(99)
    assert ei.value.kind == "movie" and ei.value.ids == [99] and "99" in str(ei.value)
    assert isinstance(ei.value, RecvecError)
    assert 10 in cat and 99 not in cat and len(cat) == 3


def test_ml10m_utf8_movies_and_half_stars(tmp_path):
    ratings = [(1, 10, 4.5, 1), (1, 20, 0.5, 2)]
    d = write_ml1m(tmp_path / "ml10m", ratings=ratings,
                   movies=[(10, "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", "Comedy|Romance"),
                           (20, "Señor X (1990)", "Drama")], movies_encoding="utf-8")
    ds = load_dataset(str(d))
    assert ds.catalog.titles[0].startswith("Amélie (Fabuleux")
    assert ds.catalog.title_of(20) == "Señor X (1990)"
    np.testing.assert_array_equal(ds.ratings.ratings, np.array([4.5, 0.5], np.float32))


@pytest.mark.parametrize("with_genre_file", [True, False])
def test_ml100k(tmp_path, with_genre_file):
    ds = load_dataset(str(write_ml100k(tmp_path / "k", with_genre_file=with_genre_file)))
    u, m, r, t = expected_arrays()
    assert ds.format == "ml-100k"
    np.testing.assert_array_equal(ds.ratings.users, u)
    np.testing.assert_array_equal(ds.ratings.items, m)
    np.testing.assert_array_equal(ds.ratings.ratings, r)
    np.testing.assert_array_equal(ds.ratings.timestamps, t)
    assert ds.catalog.titles == tuple(t for _, t, _ in MOVIES)
    # genres come back in the standard column order, joined by '|'
    assert ds.catalog.genres == ("Animation|Children's|Comedy", "Drama|Musical", "Adventure|Sci-Fi")
    assert ("u.genre" in ds.files) == with_genre_file


def test_ml100k_genre_names_come_from_u_genre(tmp_path):
    d = write_ml100k(tmp_path / "k")
    names = [g.upper() for g in data_mod.ML100K_GENRES]
    (d / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(names)))
    ds = load_dataset(str(d))
    assert ds.catalog.genres[1] == "DRAMA|MUSICAL"


def test_csv_quoted_titles_crlf_half_stars(tmp_path):
    ds = load_dataset(str(write_csv(tmp_path / "latest")))
    assert ds.format == "ml-latest"
    assert ds.catalog.titles == ("Toy Story (1995)", "Misérables, Les (1995)", '"Great" Escape, The (1963)')
    assert ds.catalog.genres[2] == "Adventure|War"
    u, m, r, t = expected_arrays()
    np.testing.assert_array_equal(ds.ratings.users, u)
    np.testing.assert_array_equal(ds.ratings.timestamps, t)
    np.testing.assert_array_equal(ds.ratings.ratings, np.where(m == 20, r - 0.5, r).astype(np.float32))


@pytest.mark.parametrize("top", [None, "ml-1m"])
def test_zip_equals_directory(tmp_path, top):
    d = write_ml1m(tmp_path / "ml")
    z = zip_dir(d, tmp_path / "ml-1m.zip", top=top)
    from_zip = load_dataset(str(z))
    assert_same(from_zip, load_dataset(str(d)))
    assert from_zip.source == str(z)


def test_zip_of_csv_with_top_folder_and_macos_junk(tmp_path):
    d = write_csv(tmp_path / "latest")
    z = tmp_path / "ml-latest-small.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in d.iterdir():
            zf.write(f, f"ml-latest-small/{f.name}")
        zf.writestr("__MACOSX/ml-latest-small/._ratings.csv", b"junk")
    assert_same(load_dataset(str(z)), load_dataset(str(d)))


def test_zip_with_readme_at_root_and_data_in_folder(tmp_path):
    d = write_ml1m(tmp_path / "ml")
    z = tmp_path / "mixed.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("README.txt", "about")
        for f in d.iterdir():
            zf.write(f, f"ml-1m/{f.name}")
    assert_same(load_dataset(str(z)), load_dataset(str(d)))
    z2 = tmp_path / "nodata.zip"
    with zipfile.ZipFile(z2, "w") as zf:
        zf.writestr("stuff/notes.txt", "x")
    with pytest.raises(DataError, match=r"unknown data format in .*nodata\.zip \(it holds: notes\.txt\)"):
        load_dataset(str(z2))


def test_directory_holding_one_dataset_folder(tmp_path):
    write_ml1m(tmp_path / "outer" / "ml-1m")
    assert_same(load_dataset(str(tmp_path / "outer")), load_dataset(str(tmp_path / "outer" / "ml-1m")))


def test_pathlike_and_blank_lines_tolerated(tmp_path):
    d = write_ml1m(tmp_path / "ml")
    text = (d / "ratings.dat").read_text()
    (d / "ratings.dat").write_text(text.replace("\n", "\n\n", 1) + "\n")
    ds = load_dataset(d)
    np.testing.assert_array_equal(ds.ratings.users, expected_arrays()[0])


def test_fingerprint_tracks_bytes(tmp_path):
    a = load_dataset(str(write_ml1m(tmp_path / "a")))
    b = load_dataset(str(write_ml1m(tmp_path / "b")))
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 64
    (tmp_path / "b" / "movies.dat").write_bytes((tmp_path / "b" / "movies.dat").read_bytes() + b"40::X (2000)::Drama\n")
    assert load_dataset(str(tmp_path / "b")).fingerprint != a.fingerprint
    # users.dat is not read, so it does not count
    (tmp_path / "a" / "users.dat").write_text("changed\n")
    assert load_dataset(str(tmp_path / "a")).fingerprint == a.fingerprint


def test_progress_bar_does_not_change_result(tmp_path):
    d = write_ml1m(tmp_path / "ml")
    assert_same(load_dataset(str(d), progress=True), load_dataset(str(d)))


def test_slow_path_equals_fast_path(synthetic_dir):
    raw = (synthetic_dir / "ratings.dat").read_bytes()
    fast = data_mod._fast_ratings(raw, b"::", 0)
    slow = data_mod._slow_ratings(raw, b"::", 0, "ratings.dat")
    assert fast is not None
    for f, s in zip(fast, slow):
        assert f.dtype == s.dtype
        np.testing.assert_array_equal(f, s)


# ------------------------------------------------------------------------------ bad input


def _bad_ratings(tmp_path, bad_line: str, at: int = 17) -> str:
    d = tmp_path / "bad"
    lines = [f"{1 + i // 5}::{10 * (1 + i % 3)}::4::{978300000 + i}" for i in range(30)]
    lines[at - 1] = bad_line
    write_ml1m(d)
    (d / "ratings.dat").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as ei:
        load_dataset(str(d))
    return str(ei.value)


@pytest.mark.parametrize("bad, expected", [
    ("5::10::4", "ratings.dat line 17: expected 4 fields separated by '::', got 3"),
    ("5::10::4::978300000::7", "ratings.dat line 17: expected 4 fields separated by '::', got 5"),
    ("5::10::four::978300000", "ratings.dat line 17: rating 'four' is not a number"),
    ("5::10::7::978300000", "ratings.dat line 17: rating 7 is out of range"),
    ("5::10::0::978300000", "ratings.dat line 17: rating 0 is out of range"),
    ("5::10::nan::978300000", "ratings.dat line 17: rating nan is out of range"),
    ("x5::10::4::978300000", "ratings.dat line 17: user id 'x5' is not an integer"),
    ("5::10.5::4::978300000", "ratings.dat line 17: movie id '10.5' is not an integer"),
    ("5::-10::4::978300000", "ratings.dat line 17: movie id -10 is negative"),
    ("5::10::4::", "ratings.dat line 17: timestamp '' is not an integer"),
    ("5:10::4::978300000", "ratings.dat line 17: expected 4 fields separated by '::', got 3"),
    ("5\t10::4::978300000::1", "ratings.dat line 17: user id '5\\t10' is not an integer"),
])
def test_malformed_ratings_line_named(tmp_path, bad, expected):
    assert _bad_ratings(tmp_path, bad).startswith(expected)


def test_malformed_line_number_counts_blank_lines_and_header(tmp_path):
    d = write_ml1m(tmp_path / "ml")
    (d / "ratings.dat").write_text("1::10::5::1\n\n1::20::4::2\n1::30::x::3\n")
    with pytest.raises(DataError, match=r"ratings\.dat line 4: rating 'x'"):
        load_dataset(str(d))
    c = write_csv(tmp_path / "csv")
    (c / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\r\n1,10,4.0,1\r\n1,20,4.0\r\n")
    with pytest.raises(DataError, match=r"ratings\.csv line 3: expected 4 fields separated by ',', got 3"):
        load_dataset(str(c))


def test_bad_csv_header_and_bad_movie_lines(tmp_path):
    c = write_csv(tmp_path / "csv")
    (c / "ratings.csv").write_text("user,movie,rating,ts\n1,10,4.0,1\n")
    with pytest.raises(DataError, match=r"ratings\.csv line 1: expected the header"):
        load_dataset(str(c))
    c = write_csv(tmp_path / "csv2")
    (c / "movies.csv").write_text('movieId,title,genres\n10,"Toy Story (1995)",Animation\n20,Oops\n')
    with pytest.raises(DataError, match=r"movies\.csv line 3: expected 3 comma-separated fields"):
        load_dataset(str(c))
    d = write_ml1m(tmp_path / "ml")
    (d / "movies.dat").write_text("10::Toy Story (1995)::Animation\n20::Heat (1995)\n")
    with pytest.raises(DataError, match=r"movies\.dat line 2: expected 3 fields separated by '::', got 2"):
        load_dataset(str(d))
    (d / "movies.dat").write_text("10::Toy Story (1995)::Animation\n10::Heat (1995)::Action\n")
    with pytest.raises(DataError, match=r"movies\.dat line 2: movie id 10 already listed on line 1"):
        load_dataset(str(d))
    k = write_ml100k(tmp_path / "k")
    (k / "u.item").write_text("1|Toy Story (1995)|01-Jan-1995||url|0|1\n")
    with pytest.raises(DataError, match=r"u\.item line 1: expected 24 fields"):
        load_dataset(str(k))
    k = write_ml100k(tmp_path / "k2")
    (k / "u.data").write_text("1\t10\t5\t1\n1 20 4 2\n")
    with pytest.raises(DataError, match=r"u\.data line 2: expected 4 fields separated by tabs, got 1"):
        load_dataset(str(k))


def test_empty_ratings_file(tmp_path):
    d = write_ml1m(tmp_path / "ml")
    (d / "ratings.dat").write_text("")
    with pytest.raises(DataError, match=r"ratings\.dat holds no ratings"):
        load_dataset(str(d))


def test_missing_file_names_what_and_where(tmp_path):
    d = write_ml1m(tmp_path / "ml")
    (d / "movies.dat").unlink()
    with pytest.raises(DataError) as ei:
        load_dataset(str(d))
    msg = str(ei.value)
    assert "movies.dat missing" in msg and str(d) in msg and "ratings.dat" in msg
    z = tmp_path / "only-movies.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ml-1m/movies.dat", "1::A (1990)::Drama\n")
    with pytest.raises(DataError, match=r"ratings\.dat missing in .*only-movies\.zip"):
        load_dataset(str(z))


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"data path not found: .*nowhere"):
        load_dataset(str(tmp_path / "nowhere"))


def test_unknown_format_lists_known_formats(tmp_path):
    d = tmp_path / "weird"
    d.mkdir()
    (d / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as ei:
        load_dataset(str(d))
    msg = str(ei.value)
    assert "unknown data format" in msg and "notes.txt" in msg
    for needed in ("ratings.dat + movies.dat", "u.data + u.item", "ratings.csv + movies.csv"):
        assert needed in msg
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DataError, match="neither a directory nor a .zip"):
        load_dataset(str(f))


def test_corrupt_zip(tmp_path):
    z = tmp_path / "broken.zip"
    z.write_bytes(zipfile.ZipFile.__doc__.encode()[:10])
    with pytest.raises(DataError):
        load_dataset(str(z))


# ------------------------------------------------------------------------------ synthetic


def test_synthetic_deterministic_and_seeded(tmp_path):
    a = write_synthetic_movielens(tmp_path / "a")
    b = write_synthetic_movielens(tmp_path / "b")
    c = write_synthetic_movielens(tmp_path / "c", seed=1)
    for f in ("ratings.dat", "movies.dat", "users.dat"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
    assert (a / "ratings.dat").read_bytes() != (c / "ratings.dat").read_bytes()


def test_synthetic_shape_and_format(synthetic_dir):
    total = sum((synthetic_dir / f).stat().st_size for f in ("ratings.dat", "movies.dat", "users.dat"))
    assert total < 2_000_000
    ds = load_dataset(str(synthetic_dir))
    r = ds.ratings
    assert ds.format == "ml-1m"
    assert len(np.unique(r.users)) == 1200 and len(ds.catalog) == 900
    assert np.bincount(r.users).max() >= 20 and np.bincount(r.users)[1:].min() >= 20
    assert set(np.unique(r.ratings).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    same_user = r.users[1:] == r.users[:-1]
    assert np.all(np.diff(r.timestamps)[same_user] > 0)  # increasing per user, in file order
    assert np.all(np.diff(r.users) >= 0)
    assert set(r.items.tolist()) <= set(ds.catalog.ids.tolist())
    assert all(re.search(r" \((19|20)\d\d\)$", t) for t in ds.catalog.titles)
    assert all(set(g.split("|")) <= set(GENRES) for g in ds.catalog.genres)
    assert any(any(ord(ch) > 127 for ch in t) for t in ds.catalog.titles)  # exercises latin-1
    users = (synthetic_dir / "users.dat").read_text().splitlines()
    assert len(users) == 1200 and all(len(line.split("::")) == 5 for line in users)


def _leave_last_out(ds):
    r = ds.ratings
    pos = r.ratings >= 4
    u, i, t = r.users[pos], r.items[pos], r.timestamps[pos]
    o = np.lexsort((t, u))
    u, i = u[o], i[o]
    last = np.r_[u[1:] != u[:-1], True]
    return (u[~last], i[~last]), (u[last], i[last])


def _recall_at_10(scores, train_mask, test_items):
    scores = np.where(train_mask, -np.inf, scores)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return float((top == test_items[:, None]).any(1).mean())


def test_synthetic_signal_collaborative_and_content_beat_popularity(synthetic_dir):
    ds = load_dataset(str(synthetic_dir))
    (tu, ti), (eu, ei) = _leave_last_out(ds)
    n_u, n_i = int(ds.ratings.users.max()) + 1, int(ds.catalog.ids.max()) + 1
    X = np.zeros((n_u, n_i), dtype=np.float32)
    X[tu, ti] = 1.0
    mask = X[eu] > 0
    pop = _recall_at_10(np.tile(X.sum(0), (len(eu), 1)), mask, ei)
    C = X.T @ X
    np.fill_diagonal(C, 0)
    cooc = _recall_at_10(X[eu] @ C, mask, ei)
    G = np.zeros((n_i, len(GENRES)), dtype=np.float32)
    for m, g in zip(ds.catalog.ids, ds.catalog.genres):
        G[m, [GENRES.index(x) for x in g.split("|")]] = 1.0
    G /= np.maximum(np.linalg.norm(G, axis=1, keepdims=True), 1e-9)
    genre = _recall_at_10((X[eu] @ G) @ G.T, mask, ei)
    random_level = 10 / n_i
    assert pop > random_level
    assert cooc > 1.5 * pop, (cooc, pop)
    assert genre > 1.5 * pop, (genre, pop)


def test_synthetic_als_beats_popularity(synthetic_dir):
    implicit = pytest.importorskip("implicit")
    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits

    ds = load_dataset(str(synthetic_dir))
    (tu, ti), (eu, ei) = _leave_last_out(ds)
    n_u, n_i = int(ds.ratings.users.max()) + 1, int(ds.catalog.ids.max()) + 1
    X = sp.csr_matrix((np.ones(len(tu), np.float32), (tu, ti)), shape=(n_u, n_i))
    with threadpool_limits(1, "blas"):
        model = implicit.cpu.als.AlternatingLeastSquares(factors=64, regularization=0.01, iterations=20,
                                                         random_state=0, num_threads=1)
        model.fit(X, show_progress=False)
    mask = X[eu].toarray() > 0
    als = _recall_at_10(model.user_factors[eu] @ model.item_factors.T, mask, ei)
    pop = _recall_at_10(np.tile(np.asarray(X.sum(0)).ravel(), (len(eu), 1)), mask, ei)
    assert als > 2 * pop, (als, pop)


def test_load_synthetic_default_written_once(tmp_path, monkeypatch):
    monkeypatch.setenv("RECVEC_CACHE", str(tmp_path / "cache"))
    ds = load_dataset("synthetic")
    d = default_dataset_dir()
    assert d == tmp_path / "cache" / "synthetic-v1" and ds.source == "synthetic" and ds.format == "ml-1m"
    mtime = (d / "ratings.dat").stat().st_mtime_ns
    again = load_dataset("synthetic")
    assert again.fingerprint == ds.fingerprint and (d / "ratings.dat").stat().st_mtime_ns == mtime
    assert [p.name for p in d.parent.iterdir()] == ["synthetic-v1"]  # no temp dirs left
    ref = write_synthetic_movielens(tmp_path / "ref")
    assert (ref / "ratings.dat").read_bytes() == (d / "ratings.dat").read_bytes()
    (d / "movies.dat").unlink()  # a damaged cache is rewritten
    assert load_dataset("synthetic").fingerprint == ds.fingerprint


def test_generate_rejects_bad_sizes():
    with pytest.raises(ValueError):
        generate(n_users=10, n_items=10)


# ------------------------------------------------------------------------------ benchmark


def test_parse_benchmark_runs_and_we_win(synthetic_dir):
    from recvec.benchmarks.parse import benchmark_parse

    res = benchmark_parse(synthetic_dir, repeats=2)
    assert res["rows"] == len(load_dataset(str(synthetic_dir)).ratings)
    assert res["recvec_s"] < res["baseline_s"] and res["speedup"] > 1
    assert res["recvec_threads"] == 1 and res["cpus_available"] >= 1


# ------------------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_real_ml1m_counts(ml1m_dir):
    ds = load_dataset(str(ml1m_dir))
    assert len(ds.ratings) == 800_773 and len(ds.catalog) == 3_883
    assert ds.catalog.title_of(1) == "Toy Story (1995)"
    assert int((ds.ratings.ratings >= 4).sum()) == 575_281
    md5 = {f: hashlib.md5((ml1m_dir / f).read_bytes()).hexdigest() for f in ("ratings.dat", "movies.dat")}
    assert md5 == {"ratings.dat": "fbb44526c70ec09963e5ad6809b06f3f", "movies.dat": "ef9fd9ff8d1b33faf73e2122c371e910"}
    # parse speed is a benchmark (python -m recvec.benchmarks.parse), not a timed test


@pytest.mark.realdata
def test_real_ml100k(ml100k_dir):
    ds = load_dataset(str(ml100k_dir))
    assert ds.format == "ml-100k" and len(ds.ratings) == 100_000 and len(ds.catalog) == 1_682
    assert len(np.unique(ds.ratings.users)) == 943
    assert ds.catalog.genres_of(1) == "Animation|Children's|Comedy"


@pytest.mark.realdata
def test_real_ml_latest_small(ml_latest_small_dir):
    ds = load_dataset(str(ml_latest_small_dir))
    assert ds.format == "ml-latest" and len(ds.ratings) == 100_836
    assert len(np.unique(ds.ratings.users)) == 610 and len(np.unique(ds.ratings.items)) == 9_724
    assert set(np.unique(ds.ratings.ratings).tolist()) == {x / 2 for x in range(1, 11)}


def test_catalog_is_plain_dataclass():
    cat = Catalog(ids=np.array([5, 7], dtype=np.int64), titles=("A (1990)", "B (1991)"), genres=("Drama", "War"))
    assert cat.title_of(7) == "B (1991)" and cat.genres_of(5) == "Drama" and cat.position(7) == 1
