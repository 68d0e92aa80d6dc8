"""Bad data input: every case is a DataError naming the file (and line), and the CLI shows
'Error: ...' with exit code 2 and no traceback. Also the inputs that look odd but are valid
(out-of-order timestamps, users without positives, extra CSV columns, other title encodings)."""

from __future__ import annotations

import json
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from recvec.cli import main
from recvec.engine.data import ML100K_GENRES, load_dataset
from recvec.engine.split import leave_last_out
from recvec.errors import DataError

# ------------------------------------------------------------------------------ small datasets

RATINGS = [  # user, movie, stars, timestamp: file order deliberately not time order
    (1, 10, 5, 978300760), (1, 20, 3, 978302109), (2, 10, 4, 978301968), (2, 30, 5, 978300275),
    (3, 20, 2, 978824291), (1, 30, 4, 978300000), (3, 30, 4, 978824000), (2, 20, 4, 978302000),
]
MOVIES = [(10, "Toy Story (1995)", "Animation|Children's|Comedy"),
          (20, "Misérables, Les (1995)", "Drama|Musical"),
          (30, "Cité des enfants perdus, La (1995)", "Adventure|Sci-Fi")]


def dat_lines(ratings=RATINGS, sep="::") -> list[str]:
    return [sep.join(str(v) for v in row) for row in ratings]


def write_ml1m(d: Path, ratings_lines=None, movies_bytes: bytes | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    lines = dat_lines() if ratings_lines is None else ratings_lines
    (d / "ratings.dat").write_text("".join(f"{line}\n" for line in lines))
    if movies_bytes is None:
        movies_bytes = "".join(f"{m}::{t}::{g}\n" for m, t, g in MOVIES).encode("latin-1")
    (d / "movies.dat").write_bytes(movies_bytes)
    return d


def write_ml100k(d: Path, ratings_lines=None, item_lines=None, genre_text: str | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    lines = dat_lines(sep="\t") if ratings_lines is None else ratings_lines
    (d / "u.data").write_text("".join(f"{line}\n" for line in lines))
    if item_lines is None:
        item_lines = []
        for m, t, g in MOVIES:
            flags = ["1" if name in g.split("|") else "0" for name in ML100K_GENRES]
            item_lines.append("|".join([str(m), t, "01-Jan-1995", "", "http://x"] + flags))
    (d / "u.item").write_bytes("".join(f"{line}\n" for line in item_lines).encode("latin-1"))
    if genre_text is not None:
        (d / "u.genre").write_text(genre_text)
    return d


def write_csv(d: Path, ratings_text: str | None = None, movies_text: str | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    if ratings_text is None:
        ratings_text = "userId,movieId,rating,timestamp\n" + "".join(
            f"{u},{m},{float(r)},{t}\n" for u, m, r, t in RATINGS)
    if movies_text is None:
        movies_text = "movieId,title,genres\n" + "".join(f'{m},"{t}",{g}\n' for m, t, g in MOVIES)
    (d / "ratings.csv").write_text(ratings_text)
    (d / "movies.csv").write_bytes(movies_text.encode("utf-8"))
    return d


@pytest.fixture
def bad(tmp_path, reliability_counts):
    """bad(path, *patterns) -> message: load_dataset must raise a DataError whose message matches
    every regex pattern (file and line first); the case is counted for the README."""

    def check(path, *patterns: str) -> str:
        with pytest.raises(DataError) as ei:
            load_dataset(str(path))
        msg = str(ei.value)
        for pat in patterns:
            assert _search(pat, msg), f"{pat!r} not in {msg!r}"
        assert ei.value.__cause__ is None  # raised 'from None': no chained traceback to show
        reliability_counts["bad-input cases (DataError checked)"] += 1
        return msg

    return check


def _search(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


def same_data(a, b) -> None:
    for name in ("users", "items", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(a.ratings, name), getattr(b.ratings, name))
    np.testing.assert_array_equal(a.catalog.ids, b.catalog.ids)
    assert a.catalog.titles == b.catalog.titles and a.catalog.genres == b.catalog.genres


# ------------------------------------------------------------------------------ empty files


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
@pytest.mark.parametrize("fmt, name, what", [
    ("ml-1m", "ratings.dat", "ratings"), ("ml-1m", "movies.dat", "movies"),
    ("ml-100k", "u.data", "ratings"), ("ml-100k", "u.item", "movies"), ("ml-100k", "u.genre", "genres"),
    ("ml-latest", "ratings.csv", "ratings"), ("ml-latest", "movies.csv", "movies"),
])
def test_empty_files(tmp_path, bad, fmt, name, what, content):
    d = {"ml-1m": write_ml1m, "ml-100k": write_ml100k, "ml-latest": write_csv}[fmt](tmp_path / "d")
    (d / name).write_text(content)
    bad(d, rf"^{name} holds no {what}: the file is empty \(in {d}\)")


def test_header_only_csv_and_blank_only_lines(tmp_path, bad):
    d = write_csv(tmp_path / "a", ratings_text="userId,movieId,rating,timestamp\n\n")
    bad(d, r"^ratings\.csv holds no ratings")
    d = write_csv(tmp_path / "b", movies_text="movieId,title,genres\r\n")
    bad(d, r"^movies\.csv lists no movies")


# ------------------------------------------------------------------------------ delimiters


@pytest.mark.parametrize("sep, shown", [("\t", "tabs"), (",", "','"), (";", "';'"), (" ", "spaces")])
def test_wrong_delimiter_in_ratings_dat(tmp_path, bad, sep, shown):
    d = write_ml1m(tmp_path / "d", ratings_lines=dat_lines(sep=sep))
    bad(d, r"^ratings\.dat line 1: expected 4 fields separated by '::', got 1",
        rf"looks separated by {shown}: wrong delimiter\?")


@pytest.mark.parametrize("sep", ["::", ",", " "])
def test_wrong_delimiter_in_u_data(tmp_path, bad, sep):
    d = write_ml100k(tmp_path / "d", ratings_lines=dat_lines(sep=sep))
    bad(d, r"^u\.data line 1: expected 4 fields separated by tabs, got 1", "wrong delimiter")


def test_wrong_delimiter_in_csv_and_movies(tmp_path, bad):
    d = write_csv(tmp_path / "a", ratings_text="userId;movieId;rating;timestamp\n1;10;4.0;5\n")
    bad(d, r"^ratings\.csv line 1: expected the header 'userId,movieId,rating,timestamp'",
        r"missing columns 'userId', 'movieId', 'rating', 'timestamp'")
    d = write_ml1m(tmp_path / "b", movies_bytes=b"10|Toy Story (1995)|Animation\n")
    bad(d, r"^movies\.dat line 1: expected 3 fields separated by '::', got 1", r"looks separated by '\|'")
    # one bad line deep in a good file: the line is named
    lines = dat_lines()
    lines[5] = lines[5].replace("::", "\t")
    bad(write_ml1m(tmp_path / "c", ratings_lines=lines), r"^ratings\.dat line 6: expected 4 fields")


# ------------------------------------------------------------------------------ ratings values


@pytest.mark.parametrize("value, expected", [
    ("five", "rating 'five' is not a number"), ("", "rating '' is not a number"),
    ("4_5", "rating '4_5' is not a number"), ("5.5", "rating 5.5 is out of range"),
    ("0", "rating 0 is out of range"), ("0.4", "rating 0.4 is out of range"),
    ("-1", "rating -1 is out of range"), ("inf", "rating inf is out of range"),
    ("nan", "rating nan is out of range"), ("1e3", "rating 1e3 is out of range"),
])
@pytest.mark.parametrize("fmt", ["ml-1m", "ml-100k", "ml-latest"])
def test_bad_rating_values(tmp_path, bad, fmt, value, expected):
    rows = [list(map(str, r)) for r in RATINGS]
    rows[4][2] = value
    if fmt == "ml-1m":
        d = write_ml1m(tmp_path / "d", ratings_lines=["::".join(r) for r in rows])
        bad(d, rf"^ratings\.dat line 5: {expected}")
    elif fmt == "ml-100k":
        d = write_ml100k(tmp_path / "d", ratings_lines=["\t".join(r) for r in rows])
        bad(d, rf"^u\.data line 5: {expected}")
    else:
        text = "userId,movieId,rating,timestamp\n" + "".join(",".join(r) + "\n" for r in rows)
        bad(write_csv(tmp_path / "d", ratings_text=text), rf"^ratings\.csv line 6: {expected}")  # header = line 1


@pytest.mark.parametrize("field, value, expected", [
    (0, "-3", "user id -3 is negative"), (1, "ten", "movie id 'ten' is not an integer"),
    (1, "99999999999999999999", "movie id 99999999999999999999 is too large"),
    (3, "-978300760", "timestamp -978300760 is negative"), (3, "9.5e-1", "timestamp '9.5e-1' is not an integer"),
    (0, "1_0", "user id '1_0' is not an integer"),
])
def test_bad_ids_and_timestamps(tmp_path, bad, field, value, expected):
    rows = [list(map(str, r)) for r in RATINGS]
    rows[2][field] = value
    bad(write_ml1m(tmp_path / "d", ratings_lines=["::".join(r) for r in rows]), rf"^ratings\.dat line 3: {expected}")


def test_half_stars_and_bounds_are_valid(tmp_path):
    text = "userId,movieId,rating,timestamp\n1,10,0.5,1\n1,20,5.0,2\n2,10,3.5,3\n"
    ds = load_dataset(str(write_csv(tmp_path / "d", ratings_text=text)))
    np.testing.assert_array_equal(ds.ratings.ratings, np.array([0.5, 5.0, 3.5], np.float32))


# ------------------------------------------------------------------------------ duplicates


def test_duplicate_pair_names_both_lines(tmp_path, bad):
    lines = dat_lines() + ["2::30::1::978400000"]  # (2, 30) first on line 4
    msg = bad(write_ml1m(tmp_path / "a", ratings_lines=lines),
              r"^ratings\.dat line 9: user 2 rated movie 30 again \(first on line 4\)")
    assert "repeated pairs in all" not in msg
    # blank lines and a header shift the line numbers: still the real ones; all repeats are counted
    lines = dat_lines()[:3] + ["", "1::10::5::978300760"] + dat_lines()[3:] + ["1::20::1::1", "  "]
    bad(write_ml1m(tmp_path / "b", ratings_lines=lines),
        r"^ratings\.dat line 5: user 1 rated movie 10 again \(first on line 1\)", r"2 repeated pairs in all")
    text = "userId,movieId,rating,timestamp\n1,10,4.0,1\n1,20,4.0,2\n\n1,10,4.5,3\n"
    bad(write_csv(tmp_path / "c", ratings_text=text),
        r"^ratings\.csv line 5: user 1 rated movie 10 again \(first on line 2\)")


def test_same_movie_by_many_users_and_many_movies_by_one_user_are_fine(tmp_path):
    ds = load_dataset(str(write_ml1m(tmp_path / "d")))
    assert len(ds.ratings) == len(RATINGS)
    assert len(set(zip(ds.ratings.users.tolist(), ds.ratings.items.tolist()))) == len(RATINGS)


# ------------------------------------------------------------------------------ timestamps


def test_timestamps_out_of_order_are_valid_and_split_by_time(tmp_path):
    """MovieLens files are not sorted by time: any file order gives the same split."""
    base = load_dataset(str(write_ml1m(tmp_path / "sorted", ratings_lines=dat_lines(sorted(RATINGS, key=lambda r: r[3])))))
    rng = random.Random(0)
    splits = []
    for n in range(3):
        rows = list(RATINGS)
        rng.shuffle(rows)
        ds = load_dataset(str(write_ml1m(tmp_path / f"shuffled{n}", ratings_lines=dat_lines(rows))))
        assert len(ds.ratings) == len(base.ratings)
        splits.append(leave_last_out(ds.ratings, 4.0))
    splits.append(leave_last_out(base.ratings, 4.0))
    # each user's held-out item is their latest positive, whatever the file order
    latest = {}
    for u, m, r, t in RATINGS:
        if r >= 4 and (u not in latest or t > latest[u][1]):
            latest[u] = (m, t)
    for s in splits:
        assert dict(zip(s.test.users.tolist(), s.test.items.tolist())) == {u: m for u, (m, _) in latest.items()}
        assert sorted(zip(s.train.users.tolist(), s.train.items.tolist())) == \
            sorted(zip(splits[0].train.users.tolist(), splits[0].train.items.tolist()))
        for u in np.unique(s.train.users):  # train histories are in time order
            assert np.all(np.diff(s.train.timestamps[s.train.users == u]) >= 0)


def test_equal_and_zero_timestamps_are_valid(tmp_path):
    lines = ["1::10::5::0", "1::20::5::0", "1::30::5::0", "2::10::4::7", "2::20::4::7"]
    s = leave_last_out(load_dataset(str(write_ml1m(tmp_path / "d", ratings_lines=lines))).ratings, 4.0)
    # ties keep file order (stable sort): the last line of each user is held out
    assert dict(zip(s.test.users.tolist(), s.test.items.tolist())) == {1: 30, 2: 20}


# ------------------------------------------------------------------------------ encodings


def _movies_dat(titles_enc: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{10 * (i + 1)}::{t}::Drama\n".encode(enc) for i, (t, enc) in enumerate(titles_enc))


@pytest.mark.parametrize("encs", [("latin-1", "latin-1", "latin-1"), ("utf-8", "utf-8", "utf-8"),
                                  ("utf-8", "latin-1", "utf-8"), ("latin-1", "utf-8", "latin-1")])
def test_titles_in_utf8_latin1_or_mixed(tmp_path, encs):
    titles = ["Misérables, Les (1995)", "Cité des enfants perdus, La (1995)", "Jules et Jim (1962)"]
    d = write_ml1m(tmp_path / "d", movies_bytes=_movies_dat(list(zip(titles, encs))))
    assert load_dataset(str(d)).catalog.titles == tuple(titles)


def test_windows_1252_bom_and_other_formats_decode(tmp_path):
    d = write_ml1m(tmp_path / "a", movies_bytes=b"10::Ocean\x92s Eleven (2001)::Crime\n20::A (1990)::Drama\n"
                   b"30::B (1991)::Drama\n")
    assert load_dataset(str(d)).catalog.titles[0] == "Ocean\u2019s Eleven (2001)"
    d = write_ml1m(tmp_path / "b", movies_bytes=b"\xef\xbb\xbf" + _movies_dat([("Amélie (2001)", "utf-8"),
                                                                               ("B", "utf-8"), ("C", "utf-8")]))
    assert load_dataset(str(d)).catalog.ids.tolist() == [10, 20, 30]
    text = "movieId,title,genres\n" + "".join(f'{m},"{t}",{g}\n' for m, t, g in MOVIES)
    d = write_csv(tmp_path / "c")
    (d / "movies.csv").write_bytes(text.encode("latin-1"))  # ml-latest is UTF-8; a Latin-1 copy still reads
    assert load_dataset(str(d)).catalog.titles == tuple(t for _, t, _ in MOVIES)


@pytest.mark.parametrize("raw, expected", [
    (b"10::A (1990)::Drama\n20::Caf\x81 (1991)::Drama\n", r"^movies\.dat line 2: text is neither UTF-8 nor Latin-1"),
    (b"10::A (1990)::Drama\n20::Caf\x00 (1991)::Drama\n", r"^movies\.dat line 2: movie 20 has the control character U\+0000"),
    (b"10::A (1990)::Drama\n20::B\x1b[31m (1991)::Drama\n", r"^movies\.dat line 2: movie 20 has the control character U\+001B"),
])
def test_undecodable_or_binary_titles(tmp_path, bad, raw, expected):
    ratings = ["1::10::5::1", "1::20::4::2"]
    bad(write_ml1m(tmp_path / "d", ratings_lines=ratings, movies_bytes=raw), expected)


def test_undecodable_in_u_item_and_movies_csv(tmp_path, bad):
    flags = "|".join(["0"] * 18 + ["1"])
    d = write_ml100k(tmp_path / "k", ratings_lines=["1\t10\t5\t1"])
    (d / "u.item").write_bytes(b"10|Caf\x81|x||u|" + flags.encode() + b"\n")
    bad(d, r"^u\.item line 1: text is neither UTF-8 nor Latin-1")
    d = write_csv(tmp_path / "c", ratings_text="userId,movieId,rating,timestamp\n1,10,4.0,1\n")
    (d / "movies.csv").write_bytes(b"movieId,title,genres\n10,\"Caf\x9d\",Drama\n")
    bad(d, r"^movies\.csv line 2: text is neither UTF-8 nor Latin-1")


# ------------------------------------------------------------------------------ zips and folders


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _members(d: Path, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}{f.name}": f.read_bytes() for f in sorted(d.iterdir())}


def test_zip_with_extra_and_nested_folders_uses_the_one_dataset(tmp_path):
    d = write_ml1m(tmp_path / "ml")
    members = {"README.txt": b"hello", "docs/notes.md": b"x", "docs/img/a.png": b"\x89PNG",
               "__MACOSX/downloads/ml-1m/._ratings.dat": b"junk", ".hidden/ratings.dat": b"junk",
               **_members(d, "downloads/2024/ml-1m/")}
    z = _zip(tmp_path / "nested.zip", members)
    same_data(load_dataset(str(z)), load_dataset(str(d)))


@pytest.mark.parametrize("layout, shown", [
    ({"ml-1m/": "ml1m", "ml-latest-small/": "csv"}, r"ml-1m/, ml-latest-small/"),
    ({"": "ml1m", "backup/ml-1m/": "ml1m"}, r"\(top level\), backup/ml-1m/"),
    ({"a/": "ml1m", "b/": "ratings-only"}, r"a/, b/"),
])
def test_zip_with_two_candidate_datasets_lists_both(tmp_path, bad, layout, shown):
    ml = write_ml1m(tmp_path / "ml")
    csv_dir = write_csv(tmp_path / "csv")
    members = {}
    for prefix, kind in layout.items():
        if kind == "ml1m":
            members.update(_members(ml, prefix))
        elif kind == "csv":
            members.update(_members(csv_dir, prefix))
        else:
            members[f"{prefix}ratings.dat"] = (ml / "ratings.dat").read_bytes()
    z = _zip(tmp_path / "two.zip", members)
    bad(z, rf"two\.zip holds more than one MovieLens dataset: {shown}", r"point --data at one folder")


def test_directory_with_two_dataset_folders_lists_both(tmp_path, bad):
    write_ml1m(tmp_path / "top" / "ml-1m")
    write_ml100k(tmp_path / "top" / "ml-100k")
    (tmp_path / "top" / "other").mkdir()
    bad(tmp_path / "top", r"holds more than one MovieLens dataset: ml-100k/, ml-1m/")
    # files at the top level are what the user pointed at: they win over sub-folders
    write_ml1m(tmp_path / "top")
    assert load_dataset(str(tmp_path / "top")).format == "ml-1m"


def test_damaged_zip_members_are_clean_errors(tmp_path, bad):
    d = write_ml1m(tmp_path / "ml")
    z = _zip(tmp_path / "ok.zip", _members(d, "ml-1m/"))
    raw = bytearray(z.read_bytes())
    start = raw.index(b"ml-1m/movies.dat") + len(b"ml-1m/movies.dat")  # first member's compressed data
    raw[start + 4] ^= 0xFF
    (tmp_path / "crc.zip").write_bytes(bytes(raw))
    bad(tmp_path / "crc.zip", r"crc\.zip")
    (tmp_path / "cut.zip").write_bytes(z.read_bytes()[: len(raw) // 2])
    bad(tmp_path / "cut.zip", r"cut\.zip is not a readable zip file")


# ------------------------------------------------------------------------------ CSV columns


@pytest.mark.parametrize("drop", ["userId", "movieId", "rating", "timestamp"])
def test_csv_missing_required_column_is_named(tmp_path, bad, drop):
    cols = ["userId", "movieId", "rating", "timestamp"]
    keep = [c for c in cols if c != drop]
    text = ",".join(keep) + "\n" + "".join(",".join(str(v) for c, v in zip(cols, r) if c != drop) + "\n" for r in RATINGS)
    bad(write_csv(tmp_path / "d", ratings_text=text), rf"^ratings\.csv line 1: .*missing column '{drop}'")


def test_csv_extra_and_reordered_columns_are_ignored(tmp_path, bad):
    plain = load_dataset(str(write_csv(tmp_path / "plain")))
    text = "timestamp,source,rating,userId,note,movieId\n" + "".join(
        f'{t},web,{float(r)},{u},"a, ""quoted"" note",{m}\n' for u, m, r, t in RATINGS)
    movies = "year,genres,movieId,title\n" + "".join(f'1995,{g},{m},"{t}"\n' for m, t, g in MOVIES)
    extra = load_dataset(str(write_csv(tmp_path / "extra", ratings_text=text, movies_text=movies)))
    same_data(extra, plain)
    # a short row in the wider layout is still an error naming it
    short = text.split("\n")
    short[3] = short[3].rsplit(",", 1)[0]
    bad(write_csv(tmp_path / "short", ratings_text="\n".join(short)),
        r"^ratings\.csv line 4: expected 6 fields separated by ',' \(as in the header\), got 5")
    bad(write_csv(tmp_path / "twice", ratings_text="userId,movieId,rating,timestamp,rating\n1,10,4,1,4\n"),
        r"column 'rating' appears more than once")


def test_movies_csv_missing_column_is_named(tmp_path, bad):
    bad(write_csv(tmp_path / "a", movies_text="movieId,title\n10,Toy Story (1995)\n"),
        r"^movies\.csv line 1: expected the header 'movieId,title,genres'.*missing column 'genres'")
    bad(write_csv(tmp_path / "b", movies_text="id,name,genres\n10,Toy Story (1995),Comedy\n"),
        r"missing columns 'movieId', 'title'")


# ------------------------------------------------------------------------------ users, titles, ids


def test_users_with_no_positives_are_left_out_and_nothing_crashes(tmp_path):
    lines = dat_lines() + ["7::10::1::1", "7::20::2::2",  # user 7: no positive at all
                           "8::10::5::3",                 # user 8: one positive -> test only
                           "9::20::3::4", "9::10::4::5", "9::30::5::6"]
    d = write_ml1m(tmp_path / "d", ratings_lines=lines)
    s = leave_last_out(load_dataset(str(d)).ratings, 4.0)
    assert 7 not in s.test.users and 7 not in s.train.users and 7 not in s.users
    assert 8 in s.test.users and 8 not in s.users  # held out, not evaluable
    # reference by hand: users with >= 2 positives whose latest positive is a movie seen in train
    pos: dict[int, list[tuple[int, int]]] = {}
    for line in lines:
        u, m, r, t = map(int, line.split("::"))
        if r >= 4:
            pos.setdefault(u, []).append((t, m))
    held = {u: max(v)[1] for u, v in pos.items()}
    train_movies = {m for u, v in pos.items() for t, m in sorted(v)[:-1]}
    expected = sorted(u for u, v in pos.items() if len(v) >= 2 and held[u] in train_movies)
    users, _ = s.evaluable()
    assert sorted(s.users.id_of(users).tolist()) == expected and 7 not in expected and len(expected) >= 2
    res = CliRunner().invoke(main, ["eval", "--data", str(d), "--model", "popular", "--model", "als",
                                    "--factors", "2", "--iterations", "2", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["model"] for r in rows] == ["popular", "als"]
    assert all(r["users"] == len(expected) and 0.0 <= r["recall"] <= 1.0 for r in rows)
    # a threshold nobody reaches: a clean error naming the flag, not a zero score
    res = CliRunner().invoke(main, ["eval", "--data", str(d), "--model", "popular", "--threshold", "5.5", "--json"])
    assert res.exit_code == 2 and "--threshold" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("fmt, content, expected", [
    ("ml-1m", b"10::Toy Story (1995)::Comedy\n20::::Drama\n", r"^movies\.dat line 2: movie 20 has no title"),
    ("ml-1m", b"10::   ::Comedy\n", r"^movies\.dat line 1: movie 10 has no title"),
    ("ml-latest", b'movieId,title,genres\n10,"",Comedy\n', r"^movies\.csv line 2: movie 10 has no title"),
    ("ml-100k", None, r"^u\.item line 1: movie 10 has no title"),
])
def test_catalogue_item_without_title(tmp_path, bad, fmt, content, expected):
    if fmt == "ml-1m":
        d = write_ml1m(tmp_path / "d", movies_bytes=content)
    elif fmt == "ml-latest":
        d = write_csv(tmp_path / "d")
        (d / "movies.csv").write_bytes(content)
    else:
        flags = "|".join(["0"] * 19)
        d = write_ml100k(tmp_path / "d", item_lines=[f"10||01-Jan-1995||u|{flags}"])
    bad(d, expected)


def test_ratings_of_movies_not_in_catalogue_are_an_error(tmp_path, bad):
    lines = dat_lines() + ["4::99::5::1", "4::98::4::2", "5::99::3::3"]
    bad(write_ml1m(tmp_path / "a", ratings_lines=lines),
        r"^ratings\.dat line 9: movie id 99 is not in movies\.dat \(3 ratings of 2 movie ids missing from the catalogue")
    text = "userId,movieId,rating,timestamp\n\n1,10,4.0,1\n1,77,4.0,2\n"
    bad(write_csv(tmp_path / "b", ratings_text=text),
        r"^ratings\.csv line 4: movie id 77 is not in movies\.csv \(1 rating of 1 movie id missing")
    k = write_ml100k(tmp_path / "c", ratings_lines=["1\t10\t4\t1", "2\t55\t4\t1"])
    bad(k, r"^u\.data line 2: movie id 55 is not in u\.item")
    # a catalogue movie nobody rated is fine
    ds = load_dataset(str(write_ml1m(tmp_path / "d", ratings_lines=["1::10::5::1"])))
    assert len(ds.catalog) == 3 and len(ds.ratings) == 1


def test_u_genre_problems(tmp_path, bad):
    d = write_ml100k(tmp_path / "a", genre_text="unknown|0\nAction|0\n")
    bad(d, r"^u\.genre line 2: genre index 0 is listed twice")
    d = write_ml100k(tmp_path / "b", genre_text="unknown|0\nAction|2\n")
    bad(d, r"^u\.genre: genre indices must be 0\.\.1, got 0, 2")


# ------------------------------------------------------------------------------ the CLI


def _cli_cases(tmp_path: Path) -> list[tuple[Path, str]]:
    cases = []
    d = write_ml1m(tmp_path / "empty")
    (d / "ratings.dat").write_text("")
    cases.append((d, "ratings.dat holds no ratings: the file is empty"))
    cases.append((write_ml1m(tmp_path / "delim", ratings_lines=dat_lines(sep="\t")), "ratings.dat line 1: expected 4 fields"))
    rows = dat_lines()
    rows[1] = "1::20::9::978302109"
    cases.append((write_ml1m(tmp_path / "range", ratings_lines=rows), "ratings.dat line 2: rating 9 is out of range"))
    cases.append((write_ml1m(tmp_path / "dup", ratings_lines=dat_lines() + ["1::10::4::1"]),
                  "ratings.dat line 9: user 1 rated movie 10 again (first on line 1)"))
    cases.append((write_ml1m(tmp_path / "neg", ratings_lines=dat_lines() + ["4::10::4::-1"]),
                  "ratings.dat line 9: timestamp -1 is negative"))
    cases.append((write_ml1m(tmp_path / "enc", movies_bytes=b"10::A\x81::Drama\n"), "movies.dat line 1: text is neither"))
    cases.append((write_ml1m(tmp_path / "notitle", movies_bytes=b"10::::Drama\n20::B::C\n30::C::D\n"),
                  "movies.dat line 1: movie 10 has no title"))
    cases.append((write_ml1m(tmp_path / "unknown", ratings_lines=dat_lines() + ["4::12345::4::1"]),
                  "ratings.dat line 9: movie id 12345 is not in movies.dat"))
    cases.append((write_csv(tmp_path / "cols", ratings_text="userId,movieId,rating\n1,10,4\n"),
                  "missing column 'timestamp'"))
    ml, other = write_ml1m(tmp_path / "z1"), write_csv(tmp_path / "z2")
    z = _zip(tmp_path / "two.zip", {**_members(ml, "a/"), **_members(other, "b/")})
    cases.append((z, "holds more than one MovieLens dataset: a/, b/"))
    return cases


def test_cli_shows_error_exit_2_no_traceback(tmp_path, reliability_counts):
    runner = CliRunner()
    for path, expected in _cli_cases(tmp_path):
        res = runner.invoke(main, ["eval", "--data", str(path)])
        assert res.exit_code == 2, (path, res.output)
        assert isinstance(res.exception, SystemExit)  # exited cleanly: no exception escaped
        assert res.stderr.startswith("Error: ") and expected in res.stderr, res.stderr
        assert "Traceback" not in res.output and res.stdout == ""
        reliability_counts["bad-input cases (CLI exit 2, no traceback)"] += 1
