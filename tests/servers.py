"""Session fixtures for the database servers the served backends are tested against, started by
the suite itself (``recvec.benchmarks.servers``) and stopped at the session's end:

- ``milvus_server``: the Milvus 2.3 standalone server from the PyPI package ``milvus`` (embedded
  etcd, local storage) under a temp dir, every port on 127.0.0.1; ~10 s to healthy. Its query
  coordinator polls every 100 ms instead of 1000 / 500 (``servers.QUICK_MILVUS``): collections load
  in ~1 s instead of ~5.
- ``pg_server``: PostgreSQL 16 + pgvector from the PyPI package ``pgserver``, on a unix socket in
  a temp dir (no TCP); ~5 s.

Each ``LocalServer`` has ``uri`` (``http://127.0.0.1:PORT`` / ``postgresql://postgres:@/postgres?host=DIR``)
and ``version``. A test skips, with the reason, only where the server cannot run (its package is
not installed, or not Linux); a server that should run but fails to start is an error.
Registered in conftest.py.
"""

from __future__ import annotations

import pytest

from recvec.benchmarks.servers import ServerUnavailable, start, unavailable


def _server(name: str, tmp_path_factory):
    why = unavailable(name)
    if why:
        pytest.skip(f"{name} server cannot run here: {why}")
    try:
        srv = start(name, tmp_path_factory.mktemp(f"{name}-server"), quick=True)
    except ServerUnavailable as e:
        pytest.fail(f"the {name} server did not start: {e}")
    return srv


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A running Milvus standalone server (``LocalServer``), stopped at the end of the session."""
    srv = _server("milvus", tmp_path_factory)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """A running PostgreSQL + pgvector server (``LocalServer``), stopped at the end of the session."""
    srv = _server("pgvector", tmp_path_factory)
    try:
        yield srv
    finally:
        srv.stop()
