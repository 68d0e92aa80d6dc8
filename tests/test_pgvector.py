"""The pgvector backend (recvec.indexes.backends.pgvector) against a real PostgreSQL 16 + pgvector
server that the suite starts (``pg_server``, tests/servers.py: pgserver on a unix socket in a temp
dir): the shared backend contract over exact (flat) and HNSW tables, bulk loading, exclusion
beyond pgvector's ef_search cap, what recvec refuses to drop or open, credentials kept out of
manifests and messages, and ``recvec build --backend pgvector`` / ``recvec query`` / rebuilds.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from contracts import SearchBackendContract, assert_complete, clustered, contract_data
from recvec.errors import RecvecError
from recvec.indexes.backends.faiss import brute_force_search
from recvec.indexes.backends.pgvector import PgVectorIndex, check_table_name, check_uri, pgvector_params
from recvec.indexes.backends.served import masked, split_credentials, versioned_name
from recvec.indexes.spec import IndexSpec
from clirun import run_raising as run

K = 10
#: Index specs of the contract tables (a small graph builds in ~1 s) and their minimum recall@10 on
#: contracts.contract_data() at the default ef_search (64): measured 1.0 for both (pgvector 0.6.2),
#: held with a margin for the HNSW graph.
CONTRACT_SPECS = {"flat": IndexSpec(kind="flat"), "hnsw": IndexSpec(kind="hnsw", M=16, ef_construction=64)}
CONTRACT_KINDS = {"flat": 1.0, "hnsw": 0.98}


def sql(server, statement: str, params=()):
    import psycopg

    with psycopg.connect(server.uri, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else None


def tables(server) -> set[str]:
    return {r[0] for r in sql(server, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


# -- the shared backend contract ----------------------------------------------------------------


@pytest.fixture(scope="module", params=list(CONTRACT_KINDS))
def pg_contract_index(request, pg_server):
    index = PgVectorIndex.create(pg_server.uri, f"contract_{request.param}", contract_data()["items"],
                                 CONTRACT_SPECS[request.param])
    yield request.param, index
    index.drop()
    index.close()


class TestPgVectorContract(SearchBackendContract):
    """The backend contract every FAISS kind passes, on PostgreSQL + pgvector tables."""

    @pytest.fixture
    def backend_index(self, pg_contract_index):
        kind, index = pg_contract_index
        return kind, index, CONTRACT_KINDS[kind]


def test_flat_table_equals_exact_filtered_search_and_describes_itself(pg_contract_index):
    kind, ix = pg_contract_index
    data = contract_data()
    rows, scores = ix.search(data["queries"], K, exclude=data["exclude"])
    want_rows, want_scores = brute_force_search(data["items"], data["queries"], K, data["exclude"])
    if kind == "flat":
        np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores[rows == want_rows], want_scores[rows == want_rows], rtol=1e-5, atol=1e-4)
    d = ix.describe()
    assert d["backend"] == "pgvector" and d["kind"] == kind and d["pgvector"] and d["metric"] == "IP"
    if kind == "hnsw":
        assert d["index_params"] == {"m": 16, "ef_construction": 64} and d["search_defaults"] == {"ef_search": 64}


# -- no server needed ---------------------------------------------------------------------------


def test_names_uris_and_kinds_are_checked_before_connecting():
    assert check_table_name("items_1") == "items_1"
    for bad in ("1x", "a-b", "x" * 52, "", None, 'a"; DROP TABLE b'):
        with pytest.raises(RecvecError, match="table name"):
            check_table_name(bad)
    assert check_table_name("x" * 51 + "_r0123456789", suffixed=True)
    assert len(versioned_name("x" * 51)) == 63 and versioned_name("items_r0123456789a").startswith("items_r")
    assert check_uri(" postgresql://u@h/db ") == "postgresql://u@h/db" and check_uri("host=/tmp dbname=x")
    for bad in ("http://h:19530", "items.db", "", 3):
        with pytest.raises(RecvecError, match="PostgreSQL URI"):
            check_uri(bad)
    assert pgvector_params(IndexSpec(kind="hnsw", M=16, ef_construction=64)) == ("hnsw", {"m": 16, "ef_construction": 64})
    for spec in (IndexSpec(kind="ivf"), IndexSpec(kind="factory", factory="PQ16")):
        with pytest.raises(RecvecError, match="supported kinds: flat, hnsw"):
            pgvector_params(spec)
    with pytest.raises(RecvecError, match="ef_construction >= 2 M"):
        pgvector_params(IndexSpec(kind="hnsw", M=64, ef_construction=100))


def test_credentials_are_split_off_and_masked():
    assert split_credentials("postgresql://app:s3cr%40t@db:5432/recs?sslmode=require") == (
        "postgresql://app@db:5432/recs?sslmode=require", "app", "s3cr%40t")
    assert split_credentials("host=db user=app password='a b\\'c' dbname=recs") == (
        "host=db user=app dbname=recs", None, "a b'c")
    assert split_credentials("http://root:Milvus@127.0.0.1:19530") == ("http://root@127.0.0.1:19530", "root", "Milvus")
    assert split_credentials("postgresql:///recs?host=/tmp") == ("postgresql:///recs?host=/tmp", None, None)
    assert masked("postgresql://app:hunter2@db/recs") == "postgresql://app:***@db/recs"
    assert masked("host=db password=hunter2 dbname=x") == "host=db password=*** dbname=x"
    assert masked("postgresql://app@db/recs") == "postgresql://app@db/recs"


def test_module_import_does_not_load_psycopg():
    code = "import sys, recvec.indexes.backends.pgvector; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- against the server -------------------------------------------------------------------------


def test_bulk_load_in_batches_and_exclusion_past_the_ef_cap(pg_server):
    """2,985 excluded rows of 3,000 exceed pgvector 0.6's ef_search cap (1000): the index scan cannot
    reach the 15 rows left, the exact completion does -- still exactly k, none excluded."""
    x = clustered(3000, 16, seed=3)
    q = x[:4] + 0.01
    ix = PgVectorIndex.create(pg_server.uri, "bulk", x, IndexSpec(kind="hnsw", M=8, ef_construction=32),
                              batch_size=700)
    try:
        assert ix.ntotal == 3000 and set(ix.timings) == {"load_s", "index_s"}
        top, _ = brute_force_search(x, q, 3000)
        exclude = [t[:2985] for t in top]
        ix._set("enable_seqscan", "off")  # a table this small would otherwise be scanned, not searched
        rows, scores = ix.search(q, K, exclude=exclude)
        assert_complete(rows, K, 3000, exclude)
        want, _ = brute_force_search(x, q, K, exclude)
        if not ix.describe()["iterative_scan"]:  # pgvector < 0.8: the short answers were completed exactly
            assert ix.fallbacks >= 1
            np.testing.assert_array_equal(rows, want)
        with pytest.raises(RecvecError, match="ef_search=1001 is above pgvector's limit of 1000") as e:
            ix.search(q, K, ef_search=1001)
        assert e.value.params == ("ef_search",)
        with pytest.raises(RecvecError, match="already exists"):
            PgVectorIndex.create(pg_server.uri, "bulk", x, IndexSpec(kind="flat"))
        again = PgVectorIndex.open(pg_server.uri, "bulk")
        try:
            assert again.describe() == ix.describe()
            np.testing.assert_array_equal(again.search(q, K, exclude=exclude)[0], rows)
        finally:
            again.close()
    finally:
        ix.drop()
        ix.close()
    assert "bulk" not in tables(pg_server)


def test_foreign_tables_are_never_dropped_or_served(pg_server):
    sql(pg_server, "CREATE TABLE theirs (id bigint PRIMARY KEY, vec vector(4))")
    sql(pg_server, "INSERT INTO theirs VALUES (0, '[1,0,0,0]'), (1, '[0,1,0,0]')")
    sql(pg_server, "CREATE TABLE l2 (id bigint PRIMARY KEY, vec vector(4))")
    sql(pg_server, "INSERT INTO l2 VALUES (0, '[1,0,0,0]'), (1, '[0,1,0,0]')")
    sql(pg_server, "CREATE INDEX ON l2 USING hnsw (vec vector_l2_ops)")
    try:
        ix = PgVectorIndex.open(pg_server.uri, "theirs")  # serving it is fine (flat, ids 0..n-1) ...
        with pytest.raises(RecvecError, match="not written by recvec"):
            ix.drop()  # ... dropping it is not
        ix.close()
        from recvec.indexes.backends import get

        entry = {"kind": "pgvector", "uri": pg_server.uri, "collection": "theirs"}
        assert "no recvec comment" in get("pgvector").retire(entry, None)
        assert get("pgvector").retire({**entry, "collection": "never_was"}, None) is None
        with pytest.raises(RecvecError, match="vector_l2_ops, not inner product"):
            PgVectorIndex.open(pg_server.uri, "l2")
        with pytest.raises(RecvecError, match="no PostgreSQL table 'nope'"):
            PgVectorIndex.open(pg_server.uri, "nope")
        assert {"theirs", "l2"} <= tables(pg_server)
    finally:
        sql(pg_server, "DROP TABLE theirs, l2")


def test_connection_errors_name_the_uri_without_the_password(pg_server):
    host = pg_server.uri.split("host=", 1)[1]
    bad = f"postgresql://postgres:Hunter2-secret@/no_such_db?host={host}"
    with pytest.raises(RecvecError) as e:
        PgVectorIndex.open(bad, "items")
    assert "Hunter2-secret" not in str(e.value) and "postgres:***@" in str(e.value) and e.value.params == ("uri",)


@pytest.fixture(scope="module")
def cli_built(synthetic_dir, pg_server, tmp_path_factory):
    """FAISS flat and pgvector flat / HNSW artifacts of the same seeded ALS model (the pgvector ones
    built with a password in the URI: the local server trusts the socket, so any password connects)."""
    root = tmp_path_factory.mktemp("pg_cli")
    uri = pg_server.uri.replace("postgres:@", "postgres:Hunter2-secret@")
    common = ["--data", synthetic_dir, "--model", "als", "--seed", "0", "--quiet"]
    run("build", *common, "--index", "flat", "--out", root / "faiss")
    flat = run("build", *common, "--index", "flat", "--backend", "pgvector", "--uri", uri, "--collection", "als",
               "--out", root / "flat", "--json")
    run("build", *common, "--index", "hnsw", "--backend", "pgvector", "--uri", uri, "--collection", "als_hnsw",
        "--out", root / "hnsw")
    return {"root": root, "uri": uri, "faiss": root / "faiss", "flat": root / "flat", "hnsw": root / "hnsw",
            "summary": flat.output}


def results(res) -> list[int]:
    return [r["id"] for r in json.loads(res.output)["results"]]


def test_cli_build_points_the_artifact_at_a_new_table(cli_built, pg_server):
    assert "Hunter2-secret" not in cli_built["summary"]
    m = json.loads((cli_built["flat"] / "manifest.json").read_text())
    b = m["backend"]
    assert b["kind"] == "pgvector" and b["collection"].startswith("als_r") and b["index_kind"] == "flat"
    assert "Hunter2-secret" not in json.dumps(m) and b["uri"] == pg_server.uri.replace("postgres:@", "postgres@")
    assert m["index_file"] is None and "item_vectors.npy" in m["files"]
    assert b["collection"] in tables(pg_server)
    assert json.loads(cli_built["summary"])["backend"]["collection"] == b["collection"]


def test_cli_queries_equal_faiss_flat_with_the_history_excluded(cli_built):
    for items in ("1,2,3", "10,20,30,40,50,60,70,80,90,100"):
        want = results(run("query", "user", "--index", cli_built["faiss"], "--items", items, "-k", K, "--json"))
        got = results(run("query", "user", "--index", cli_built["flat"], "--items", items, "-k", K, "--json"))
        hnsw = results(run("query", "user", "--index", cli_built["hnsw"], "--items", items, "-k", K, "--json"))
        hist = set(map(int, items.split(",")))
        assert got == want and not hist & set(got) and len(set(hnsw) & set(want)) >= K - 1 and not hist & set(hnsw)
    similar = ["query", "similar", "--item", 1, "--json"]
    assert results(run(*similar, "--index", cli_built["flat"])) == results(run(*similar, "--index", cli_built["faiss"]))


def test_cli_rebuild_swaps_tables_and_drops_only_the_old_one(cli_built, pg_server, synthetic_dir):
    out = cli_built["root"] / "rebuilt"
    args = ["build", "--data", synthetic_dir, "--model", "popular", "--backend", "pgvector", "--uri",
            cli_built["uri"], "--collection", "pop", "--out", out, "--quiet"]
    run(*args)
    first = json.loads((out / "manifest.json").read_text())["backend"]["collection"]
    others = tables(pg_server) - {first}
    res = run(*args)
    second = json.loads((out / "manifest.json").read_text())["backend"]["collection"]
    assert second != first and "dropped the previous table " + first in res.output
    assert tables(pg_server) == others | {second}  # the other artifacts' tables are untouched
    assert len(results(run("query", "user", "--index", out, "--items", "1,2", "-k", 5, "--json"))) == 5


@pytest.mark.parametrize("args,message", [
    (["--backend", "pgvector", "--uri", "postgresql://u@h/db"], "needs --collection"),
    (["--backend", "pgvector", "--collection", "c"], "needs --uri"),
    (["--backend", "pgvector", "--uri", "http://h:19530", "--collection", "c"], "PostgreSQL URI"),
    (["--backend", "pgvector", "--uri", "postgresql://u:pw@h/db", "--collection", "c", "--index", "ivfpq"],
     "supported kinds: flat, hnsw"),
    (["--backend", "pgvector", "--uri", "postgresql://u@h/db", "--collection", "bad-name"], "table name"),
])
def test_build_option_errors_are_clean_and_early(tmp_path, args, message):
    out = tmp_path / "out"
    res = run("build", "--data", tmp_path / "no_such_data", *args, "--out", out, ok=False)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output and "pw@" not in res.output
    assert not out.exists()
