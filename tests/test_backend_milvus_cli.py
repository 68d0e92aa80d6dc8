"""`recvec build --backend milvus` and `recvec query … --index DIR` on Milvus Lite, against FAISS.

The artifact of a Milvus build holds the manifest, item ids, item vectors, popularity and catalogue
but no index.faiss; its manifest's ``backend`` entry names the Milvus URI and collection, and every
query command opens the collection through it. Checked here on the synthetic dataset:

- a FLAT collection gives the same top-10 (ids and scores) as the FAISS flat artifact;
- the user's history is excluded (long histories still get k results);
- an HNSW collection keeps recall@10 >= 0.95 against the FAISS flat artifact;
- a missing collection, a moved .db, a collection rebuilt with other vectors and a corrupt file are
  clean errors (exit 2, "Error: ...", no traceback), and the FAISS path is untouched.

Needs pymilvus + milvus-lite (skipped otherwise). Milvus Lite lets one process at a time open a .db:
the in-process tests share one .db (the build closes its client, each query opens its own), and the
subprocess test uses a .db of its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clirun import run_raising as run

HAVE_LITE = importlib.util.find_spec("pymilvus") is not None and importlib.util.find_spec("milvus_lite") is not None
pytestmark = pytest.mark.skipif(not HAVE_LITE, reason="pymilvus and milvus-lite are not installed")

K = 10
N_USERS = 6


def results(res) -> tuple[list[int], list[float]]:
    out = json.loads(res.output)["results"]
    return [r["id"] for r in out], [r["score"] for r in out]


def release(db: Path) -> None:
    """Stop this process's Milvus Lite server for ``db`` (so nothing holds it after the module)."""
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(db))


@pytest.fixture(scope="module")
def built(synthetic_dir, tmp_path_factory):
    """FAISS flat, Milvus FLAT and Milvus HNSW artifacts of the same seeded ALS model."""
    root = tmp_path_factory.mktemp("milvus_cli")
    db = root / "items.db"
    common = ["--data", synthetic_dir, "--model", "als", "--seed", "0", "--quiet"]
    run("build", *common, "--index", "flat", "--out", root / "faiss_flat")
    run("build", *common, "--index", "flat", "--backend", "milvus", "--uri", db, "--collection", "als_flat",
        "--out", root / "milvus_flat")
    run("build", *common, "--index", "hnsw", "--backend", "milvus", "--uri", db, "--collection", "als_hnsw",
        "--out", root / "milvus_hnsw")
    yield {"root": root, "db": db, "faiss": root / "faiss_flat", "flat": root / "milvus_flat",
           "hnsw": root / "milvus_hnsw"}
    release(db)


@pytest.fixture(scope="module")
def users(synthetic_dir):
    """(user id, train history) for a few users, the longest history among them."""
    from recvec.engine.data import load_dataset
    from recvec.engine.split import leave_last_out

    split = leave_last_out(load_dataset(str(synthetic_dir)).ratings, 4.0)
    hist = split.histories()
    order = np.argsort([-len(h) for h in hist], kind="stable")
    rows = [int(order[0])] + [int(r) for r in np.random.default_rng(0).choice(len(hist), N_USERS - 1, replace=False)]
    return [(int(split.users.ids[r]), split.items.id_of(hist[r]).tolist()) for r in rows]


def untied(scores: list[float]) -> bool:
    """True when no two of these ranked scores are within float noise of each other."""
    s = np.asarray(scores, dtype=np.float64)
    return bool(np.all(-np.diff(s) > 1e-4 * max(1e-6, float(np.abs(s).max()))))


def test_manifest_points_at_the_collection(built):
    m = json.loads((built["flat"] / "manifest.json").read_text())
    b = m["backend"]
    assert b["kind"] == "milvus" and b["mode"] == "lite" and b["collection"].startswith("als_flat_r")
    assert b["uri"] == str(built["db"].resolve()) and os.path.isabs(b["uri"])
    assert b["index_type"] == "FLAT" and b["metric"] == "IP" and b["ntotal"] == m["n_items"] and b["dim"] == m["dim"]
    assert m["index_file"] is None and "index.faiss" not in m["files"]
    assert not (built["flat"] / "index.faiss").exists()
    assert m["arrays"]["item_vectors"]["file"] == "item_vectors.npy"  # nothing to reconstruct them from
    assert {"item_ids.npy", "item_vectors.npy", "popularity.npy", "catalog.json.gz"} <= set(m["files"])
    assert "token" not in json.dumps(m).lower()
    h = json.loads((built["hnsw"] / "manifest.json").read_text())["backend"]
    assert h["index_type"] == "HNSW" and h["index_kind"] == "hnsw" and {"M", "efConstruction"} <= set(h["index_params"])
    # The FAISS artifact is as before: an index file, no backend entry.
    f = json.loads((built["faiss"] / "manifest.json").read_text())
    assert f["index_file"] == "index.faiss" and "backend" not in f


def test_same_vectors_in_both_artifacts(built):
    """The parity tests compare like with like: both builds fitted the same seeded ALS vectors."""
    from recvec.indexes.artifact import load_artifact

    fa, mi = load_artifact(built["faiss"]), load_artifact(built["flat"])
    try:
        assert mi.backend == "milvus" and fa.backend == "faiss"
        assert np.array_equal(fa.item_ids, mi.item_ids)
        assert np.array_equal(fa.item_vectors, mi.item_vectors)
        assert mi.index.ntotal == fa.index.ntotal and mi.index.dim == fa.index.dim
    finally:
        mi.close()


def test_flat_collection_gives_the_faiss_flat_top10(built, users, synthetic_dir):
    compared = 0
    for user, _ in users:
        args = ["query", "user", "--data", synthetic_dir, "--user", user, "-k", K + 1, "--json"]
        want_ids, want_scores = results(run(*args, "--index", built["faiss"]))
        got_ids, got_scores = results(run(*args, "--index", built["flat"]))
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-4, atol=1e-6)
        if untied(want_scores):  # ids are only comparable where ranks are not tied
            assert got_ids[:K] == want_ids[:K], f"user {user}"
            compared += 1
    assert compared >= N_USERS - 1
    for item in (1, 2, 50):
        args = ["query", "similar", "--item", item, "--json"]
        assert results(run(*args, "--index", built["flat"]))[0] == results(run(*args, "--index", built["faiss"]))[0]


def test_history_is_excluded(built, users):
    for user, hist in users[:3]:
        items = ",".join(map(str, hist))
        got, scores = results(run("query", "user", "--index", built["flat"], "--items", items, "-k", K, "--json"))
        assert len(got) == K and len(set(got)) == K and not set(got) & set(hist), f"user {user}"
        assert scores == sorted(scores, reverse=True)
        want, want_scores = results(run("query", "user", "--index", built["faiss"], "--items", items, "-k", K + 1,
                                        "--json"))
        if untied(want_scores):  # the same filtered top-10 as FAISS exact search
            assert got == want[:K], f"user {user}"
        else:
            assert len(set(got) & set(want)) >= K - 1
        hgot, _ = results(run("query", "user", "--index", built["hnsw"], "--items", items, "-k", K, "--json"))
        assert len(hgot) == K and not set(hgot) & set(hist)
    assert len(users[0][1]) > 50  # the longest history is really long and still gets k results


def test_hnsw_collection_recall_against_faiss_flat(built, users, synthetic_dir):
    recalls = []
    for user, _ in users:
        args = ["query", "user", "--data", synthetic_dir, "--user", user, "-k", K, "--json"]
        want, _ = results(run(*args, "--index", built["faiss"]))
        got, _ = results(run(*args, "--index", built["hnsw"], "--ef-search", 64))
        recalls.append(len(set(got) & set(want)) / K)
    assert np.mean(recalls) >= 0.95, recalls


def test_missing_collection_is_a_clean_error(built, tmp_path):
    art = tmp_path / "points_nowhere"
    shutil.copytree(built["flat"], art)
    m = json.loads((art / "manifest.json").read_text())
    m["backend"]["collection"] = "no_such_collection"  # the manifest itself carries no checksum
    (art / "manifest.json").write_text(json.dumps(m))
    res = run("query", "user", "--index", art, "--items", "1,2,3", ok=False)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "no_such_collection" in res.output and str(built["db"].resolve()) in res.output
    assert res.output.startswith("Error: ")


def test_moved_database_and_corrupt_file_are_clean_errors(built, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(built["flat"], moved)
    m = json.loads((moved / "manifest.json").read_text())
    m["backend"]["uri"] = str(tmp_path / "gone.db")
    (moved / "manifest.json").write_text(json.dumps(m))
    res = run("query", "similar", "--index", moved, "--item", "1", ok=False)
    assert res.exit_code == 2 and "gone.db" in res.output and "does not exist" in res.output
    assert not (tmp_path / "gone.db").exists()  # loading never creates an empty database

    corrupt = tmp_path / "corrupt"
    shutil.copytree(built["flat"], corrupt)
    vec = corrupt / "item_vectors.npy"
    data = bytearray(vec.read_bytes())
    data[-1] ^= 0xFF
    vec.write_bytes(bytes(data))
    res = run("query", "similar", "--index", corrupt, "--item", "1", ok=False)
    assert res.exit_code == 2 and "checksum mismatch" in res.output and "item_vectors.npy" in res.output


def test_collection_rebuilt_with_other_vectors_is_refused(built, tmp_path):
    from recvec.errors import ArtifactError
    from recvec.indexes.artifact import load_artifact
    from recvec.indexes.backends.milvus import MilvusIndex
    from recvec.indexes.spec import IndexSpec

    art = tmp_path / "stale"
    shutil.copytree(built["flat"], art)
    vectors = np.load(art / "item_vectors.npy")
    with MilvusIndex.create(built["db"], "als_replaced", vectors[::-1].copy(), IndexSpec(kind="flat")):
        pass  # same count, dimension and index type, other vectors
    m = json.loads((art / "manifest.json").read_text())
    m["backend"]["collection"] = "als_replaced"
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="does not hold this artifact's item vectors"):
        load_artifact(art)


def test_relative_uri_is_stored_absolute(synthetic_dir, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    db = work / "rel.db"
    try:
        run("build", "--data", synthetic_dir, "--model", "popular", "--backend", "milvus", "--uri", "rel.db",
            "--collection", "pop", "--out", "art", "--quiet")
        assert json.loads((work / "art" / "manifest.json").read_text())["backend"]["uri"] == str(db.resolve())
        monkeypatch.chdir(tmp_path)  # elsewhere: the artifact still finds its database
        res = run("query", "user", "--index", work / "art", "--items", "1,2", "-k", 5, "--json")
        ids, _ = results(res)
        assert len(ids) == 5 and not {1, 2} & set(ids) and "fallback" not in json.loads(res.output)["query"]
    finally:
        release(db)


@pytest.mark.parametrize("args,message", [
    (["--backend", "milvus", "--uri", "x.db"], "needs --collection"),
    (["--backend", "milvus", "--collection", "c"], "needs --uri"),
    (["--uri", "x.db"], "--uri applies to --backend milvus|pgvector only"),
    (["--backend", "milvus", "--uri", "x.db", "--collection", "c", "--index", "ivfpq"], "ivfpq"),
    (["--backend", "milvus", "--uri", "x.db", "--collection", "bad-name"], "collection name"),
    (["--backend", "milvus", "--uri", "{out}/x.db", "--collection", "c"], "inside the artifact directory"),
])
def test_build_option_errors_are_clean_and_early(synthetic_dir, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    args = [a.replace("{out}", str(out)) for a in args]
    res = run("build", "--data", tmp_path / "no_such_data", *args, "--out", out, ok=False)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    assert not list(tmp_path.glob("*.db")) and not list(out.iterdir())  # refused before any work


def test_subprocess_build_then_query(synthetic_dir, tmp_path):
    """Real processes, as a user runs them: the build's process releases the .db, the query's opens it."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    recvec = [sys.executable, "-c", "from recvec.cli import main; main()"]
    db, out = tmp_path / "sub.db", tmp_path / "art"

    def cli(*args):
        return subprocess.run([*recvec, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)

    b = cli("build", "--data", synthetic_dir, "--model", "als", "--backend", "milvus", "--uri", db,
            "--collection", "sub", "--out", out, "--quiet")
    assert b.returncode == 0, b.stderr
    q = cli("query", "user", "--index", out, "--items", "1,2,3", "-k", 5, "--json")
    assert q.returncode == 0, q.stderr
    ids = [r["id"] for r in json.loads(q.stdout)["results"]]
    assert len(ids) == 5 and not {1, 2, 3} & set(ids)
    m = json.loads((out / "manifest.json").read_text())
    m["backend"]["collection"] = "gone"
    (out / "manifest.json").write_text(json.dumps(m))
    e = cli("query", "user", "--index", out, "--items", "1,2,3")
    assert e.returncode == 2 and "Traceback" not in e.stderr
    assert "'gone'" in e.stderr and str(db.resolve()) in e.stderr


# -- the real Milvus server (started by the suite: tests/servers.py) ---------------------------


def test_server_build_query_and_rebuild(synthetic_dir, milvus_server, tmp_path, built):
    """`recvec build --backend milvus --uri http://...` against the real server: the FAISS flat top-10,
    the token kept out of the artifact, and a rebuild that swaps collections and drops only the old one."""
    from pymilvus import DataType, MilvusClient

    host = milvus_server.uri.split("://", 1)[1]
    uri = f"http://root:Sekrit-pw@{host}"
    client = MilvusClient(uri=milvus_server.uri)
    schema = client.create_schema(auto_id=False)  # someone else's collection, no recvec marker
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    client.create_collection("theirs", schema=schema)
    out = tmp_path / "art"
    args = ["build", "--data", synthetic_dir, "--model", "als", "--seed", "0", "--index", "flat", "--backend", "milvus",
            "--uri", uri, "--collection", "als", "--out", out, "--quiet"]
    try:
        first = run(*args, "--json")
        assert "Sekrit" not in first.output and "Sekrit" not in (out / "manifest.json").read_text()
        old = json.loads((out / "manifest.json").read_text())["backend"]
        assert old["uri"] == milvus_server.uri and old["mode"] == "server" and old["collection"].startswith("als_r")
        for items in ("1,2,3", "5,10,15,20,25,30,35,40"):
            q = ["query", "user", "--items", items, "-k", K + 1, "--json"]
            want_ids, want_scores = results(run(*q, "--index", built["faiss"]))
            got_ids, got_scores = results(run(*q, "--index", out))
            np.testing.assert_allclose(got_scores, want_scores, rtol=1e-4, atol=1e-6)
            if untied(want_scores):
                assert got_ids[:K] == want_ids[:K]
            assert not set(map(int, items.split(","))) & set(got_ids)
        again = run(*args)
        new = json.loads((out / "manifest.json").read_text())["backend"]["collection"]
        assert new != old["collection"] and f"dropped the previous collection {old['collection']}" in again.output
        names = set(client.list_collections())
        assert new in names and old["collection"] not in names and "theirs" in names
        from recvec.indexes import backends

        entry = {**old, "collection": "theirs"}
        assert "recvec did not create it" in backends.get("milvus").retire(entry, None)
        assert "theirs" in client.list_collections()
    finally:
        client.drop_collection("theirs")
        client.close()
