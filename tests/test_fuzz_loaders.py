"""Property-based fuzzing of the MovieLens loaders (hypothesis, derandomized: the same cases on
every run). Random bytes and random edits of small valid files (byte flips, truncation, line
deletion/duplication, delimiter swaps, inserted bytes), in every format and inside a zip, go
through ``load_dataset``. The only outcomes allowed are a DataError that names one of the
dataset's files, or a dataset that satisfies every invariant the engine relies on.

The number of cases run is printed in the "reliability" section of the terminal summary."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from recvec.engine import data as data_mod  # noqa: E402
from recvec.engine.data import MAX_RATING, MIN_RATING, load_dataset  # noqa: E402
from recvec.engine.split import leave_last_out  # noqa: E402
from recvec.errors import DataError, RecvecError  # noqa: E402

# Bounded and derandomized: the same examples on every run, no example database written.
EDIT_EXAMPLES = 1200
BYTES_EXAMPLES = 300
ZIP_EXAMPLES = 300


def _fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, derandomize=True, database=None, deadline=None, print_blob=False,
                    suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------------ valid base files

_RATINGS = [(1 + i % 5, 10 * (1 + (i * 7) % 9), 1 + (i * 3) % 5, 978300000 + (i * 7919) % 5000) for i in range(45)]
_RATINGS = list({(u, m): (u, m, r, t) for u, m, r, t in _RATINGS}.values())  # one row per (user, movie)
_MOVIES = [(10 * k, t, g) for k, (t, g) in enumerate([
    ("Toy Story (1995)", "Animation|Children's|Comedy"), ("Misérables, Les (1995)", "Drama|Musical"),
    ("Cité des enfants perdus, La (1995)", "Adventure|Sci-Fi"), ("Heat (1995)", "Action|Crime|Thriller"),
    ("Sabrina (1995)", "Comedy|Romance"), ("Tom and Huck (1995)", "Adventure|Children's"),
    ("Sudden Death (1995)", "Action"), ("GoldenEye (1995)", "Action|Adventure|Thriller"),
    ("American President, The (1995)", "Comedy|Drama|Romance"), ("Nixon (1995)", "Drama"),
], start=1)]


def _ml100k_item_lines() -> list[str]:
    out = []
    for m, t, g in _MOVIES:
        flags = ["1" if name in g.split("|") else "0" for name in data_mod.ML100K_GENRES]
        out.append("|".join([str(m), t, "01-Jan-1995", "", "http://us.imdb.com/x"] + flags))
    return out


BASE: dict[str, dict[str, bytes]] = {
    "ml-1m": {
        "ratings.dat": "".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in _RATINGS).encode(),
        "movies.dat": "".join(f"{m}::{t}::{g}\n" for m, t, g in _MOVIES).encode("latin-1"),
    },
    "ml-100k": {
        "u.data": "".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in _RATINGS).encode(),
        "u.item": "".join(f"{line}\n" for line in _ml100k_item_lines()).encode("latin-1"),
        "u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(data_mod.ML100K_GENRES)).encode(),
    },
    "ml-latest": {
        "ratings.csv": ("userId,movieId,rating,timestamp\r\n" + "".join(
            f"{u},{m},{r - 0.5 if m % 20 == 0 else float(r)},{t}\r\n" for u, m, r, t in _RATINGS)).encode(),
        "movies.csv": ("movieId,title,genres\r\n" + "".join(
            f'{m},"{t}",{g}\r\n' if "," in t else f"{m},{t},{g}\r\n" for m, t, g in _MOVIES)).encode(),
    },
}
RATINGS_FILE = {"ml-1m": ("ratings.dat", b"::", None), "ml-100k": ("u.data", b"\t", None),
                "ml-latest": ("ratings.csv", b",", "userId,movieId,rating,timestamp")}
TARGETS = [(fmt, name) for fmt, files in BASE.items() for name in files]
SEPARATORS = [b"::", b"\t", b",", b"|", b";", b" ", b":", b"\n", b"\r\n", b'"', b""]


# ------------------------------------------------------------------------------ edits

def _pos(data: bytes, x: int) -> int:
    return x % (len(data) + 1)


def apply_edit(data: bytes, edit: tuple) -> bytes:
    kind = edit[0]
    if kind == "flip" and data:
        i = edit[1] % len(data)
        return data[:i] + bytes([data[i] ^ edit[2]]) + data[i + 1:]
    if kind == "set" and data:
        i = edit[1] % len(data)
        return data[:i] + bytes([edit[2]]) + data[i + 1:]
    if kind == "truncate":
        return data[: _pos(data, edit[1])]
    if kind == "insert":
        i = _pos(data, edit[1])
        return data[:i] + edit[2] + data[i:]
    if kind in ("delete_line", "duplicate_line", "swap_lines"):
        lines = data.split(b"\n")
        i = edit[1] % len(lines)
        if kind == "delete_line":
            del lines[i]
        elif kind == "duplicate_line":
            lines.insert(i, lines[i])
        else:
            j = edit[2] % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    if kind == "swap_delimiter":
        old, new, only_line = edit[1], edit[2], edit[3]
        if not old:
            return data
        if only_line is None:
            return data.replace(old, new)
        lines = data.split(b"\n")
        k = only_line % len(lines)
        lines[k] = lines[k].replace(old, new)
        return b"\n".join(lines)
    return data


_idx = st.integers(min_value=0, max_value=10**6)
EDIT = st.one_of(
    st.tuples(st.just("flip"), _idx, st.integers(1, 255)),
    st.tuples(st.just("set"), _idx, st.sampled_from(list(b"0123456789:,|\t\n\r\" -.eE\x00\x81\xe9\xff"))),
    st.tuples(st.just("truncate"), _idx),
    st.tuples(st.just("insert"), _idx, st.binary(min_size=1, max_size=6)),
    st.tuples(st.just("delete_line"), _idx),
    st.tuples(st.just("duplicate_line"), _idx),
    st.tuples(st.just("swap_lines"), _idx, _idx),
    st.tuples(st.just("swap_delimiter"), st.sampled_from(SEPARATORS), st.sampled_from(SEPARATORS),
              st.one_of(st.none(), _idx)),
)


# ------------------------------------------------------------------------------ the property

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def check_dataset(ds, fmt: str, files: dict[str, bytes]) -> None:
    """Every invariant the split, models and indexes rely on."""
    r, c = ds.ratings, ds.catalog
    assert ds.format == fmt
    n = len(r)
    assert n > 0 and all(len(a) == n for a in (r.users, r.items, r.ratings, r.timestamps))
    assert (r.users.dtype, r.items.dtype, r.ratings.dtype, r.timestamps.dtype) == \
        (np.int64, np.int64, np.float32, np.int64)
    assert r.users.min() >= 0 and r.items.min() >= 0 and r.timestamps.min() >= 0
    assert np.all((r.ratings >= MIN_RATING) & (r.ratings <= MAX_RATING))
    assert len(set(zip(r.users.tolist(), r.items.tolist()))) == n  # no repeated (user, movie) pair
    assert len(c) > 0 and c.ids.dtype == np.int64 and len(np.unique(c.ids)) == len(c)
    assert len(c.titles) == len(c.genres) == len(c)
    assert all(isinstance(t, str) and t.strip() and not _CONTROL.search(t) for t in c.titles)
    assert all(isinstance(g, str) and not _CONTROL.search(g) for g in c.genres)
    assert np.isin(r.items, c.ids).all()  # every rated movie is in the catalogue
    # the fast parser agrees with the independent line-by-line scanner
    name, sep, header = RATINGS_FILE[fmt]
    raw = files[name].removeprefix(b"\xef\xbb\xbf")
    layout = data_mod._ratings_layout(raw, sep, name, header)
    ref = data_mod._scan_ratings(raw, layout, name)
    for got, want in zip((r.users, r.items, r.ratings, r.timestamps), ref[:4]):
        np.testing.assert_array_equal(got, want)
    n_pos = int((r.ratings >= 4.0).sum())
    if n_pos == 0:  # nothing to split: a clean error naming the threshold
        with pytest.raises(DataError, match="threshold"):
            leave_last_out(r, 4.0)
        return
    s = leave_last_out(r, 4.0)  # and the split runs on it
    assert len(s.train) + len(s.test) == n_pos


def check_error(e: RecvecError, names) -> None:
    assert isinstance(e, DataError), f"{type(e).__name__}: {e}"
    msg = str(e)
    assert msg and "Traceback" not in msg
    assert any(n in msg for n in names), f"the error names none of {sorted(names)}: {msg}"


def load_or_error(path: Path, fmt: str, files: dict[str, bytes], names) -> str:
    try:
        ds = load_dataset(str(path))
    except RecvecError as e:
        check_error(e, names)
        return "error"
    check_dataset(ds, fmt, files)
    return "ok"


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(d: Path, files: dict[str, bytes]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    for name, data in files.items():
        (d / name).write_bytes(data)


# ------------------------------------------------------------------------------ tests


def test_base_files_are_valid(fuzz_dir):
    for fmt, files in BASE.items():
        _write(fuzz_dir / "base", files)
        assert load_or_error(fuzz_dir / "base", fmt, files, files) == "ok"


@_fuzz_settings(EDIT_EXAMPLES)
@given(target=st.sampled_from(TARGETS), edits=st.lists(EDIT, min_size=1, max_size=4))
def test_random_edits_of_valid_files(fuzz_dir, reliability_counts, target, edits):
    fmt, name = target
    files = dict(BASE[fmt])
    for edit in edits:
        files[name] = apply_edit(files[name], edit)
    _write(fuzz_dir / "edits", files)
    outcome = load_or_error(fuzz_dir / "edits", fmt, files, set(files) | {str(fuzz_dir / "edits")})
    reliability_counts["fuzz cases: random edits of valid files"] += 1
    reliability_counts[f"fuzz outcomes: {outcome}"] += 1


@_fuzz_settings(BYTES_EXAMPLES)
@given(target=st.sampled_from(TARGETS), blob=st.binary(max_size=400))
def test_random_bytes_as_any_file(fuzz_dir, reliability_counts, target, blob):
    fmt, name = target
    files = {**BASE[fmt], name: blob}
    _write(fuzz_dir / "bytes", files)
    outcome = load_or_error(fuzz_dir / "bytes", fmt, files, set(files) | {str(fuzz_dir / "bytes")})
    reliability_counts["fuzz cases: random bytes"] += 1
    reliability_counts[f"fuzz outcomes: {outcome}"] += 1


def _zip_bytes(files: dict[str, bytes], top: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"{top}{name}", data)
    return buf.getvalue()


ZIPS = {(fmt, top): _zip_bytes(files, top) for fmt, files in BASE.items() for top in ("", "ml/")}


@_fuzz_settings(ZIP_EXAMPLES)
@given(which=st.sampled_from(sorted(ZIPS)), edits=st.lists(EDIT, min_size=1, max_size=3))
def test_random_edits_of_a_zip(fuzz_dir, reliability_counts, which, edits):
    fmt, _ = which
    blob = ZIPS[which]
    for edit in edits:
        blob = apply_edit(blob, edit)
    path = fuzz_dir / "data.zip"
    path.write_bytes(blob)
    try:
        ds = load_dataset(str(path))
    except RecvecError as e:
        check_error(e, set(BASE[fmt]) | {str(path)})
        outcome = "error"
    else:  # the edit missed anything that matters (or hit only metadata): the data must be intact
        with zipfile.ZipFile(path) as zf:
            members = {Path(n).name: zf.read(n) for n in zf.namelist() if Path(n).name in BASE[fmt]}
        check_dataset(ds, fmt, members)
        outcome = "ok"
    reliability_counts["fuzz cases: random edits of a zip"] += 1
    reliability_counts[f"fuzz outcomes: {outcome}"] += 1


def test_fuzz_case_counts(reliability_counts):
    """Runs last in this module: every example ran (none were filtered or skipped)."""
    ran = sum(v for k, v in reliability_counts.items() if k.startswith("fuzz cases:"))
    if ran == 0:
        pytest.skip("fuzz tests not run in this session (selected alone)")
    assert reliability_counts["fuzz cases: random edits of valid files"] == EDIT_EXAMPLES
    assert reliability_counts["fuzz cases: random bytes"] == BYTES_EXAMPLES
    assert reliability_counts["fuzz cases: random edits of a zip"] == ZIP_EXAMPLES
