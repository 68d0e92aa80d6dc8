"""PostgreSQL + pgvector without a table in hand: table names, DSNs, index parameters, the marker
recvec puts on its tables, and the psycopg connection (with a binary ``vector`` dumper) and error
plumbing. psycopg is imported inside functions only."""

from __future__ import annotations

import importlib.util
import re
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from recvec.errors import RecvecError, shown
from recvec.indexes.backends.served import masked, scrub, split_credentials
from recvec.indexes.spec import IndexSpec

MARK = "recvec item vectors; id = catalogue row number"
KINDS = ("flat", "hnsw")
#: pgvector caps hnsw.ef_search at 1000.
MAX_EF_SEARCH = 1000
PIP_HINT = "pip install 'psycopg[binary]>=3.1'"
#: A table name the build suffixes with ``_r`` + 10 hex digits stays within PostgreSQL's 63 bytes.
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,50}$")
_OPEN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def check_table_name(name: Any, *, suffixed: bool = False) -> str:
    """A table name recvec can create (letters, digits, _; <= 51 characters, as the build adds 12) or,
    with ``suffixed``, open (<= 63)."""
    pattern, most = (_OPEN_NAME, 63) if suffixed else (_TABLE_NAME, 51)
    if not isinstance(name, str) or not pattern.match(name):
        raise RecvecError(f"PostgreSQL table name {shown(name)} is invalid: use letters, digits and _, starting "
                          f"with a letter or _ (at most {most} characters)", params=("collection",))
    return name


def check_uri(uri: Any) -> str:
    """The DSN as given (stripped), or RecvecError for something that is not a PostgreSQL DSN."""
    if not isinstance(uri, str) or not uri.strip():
        raise RecvecError(f"PostgreSQL URI must be a non-empty string, got {shown(uri)}", params=("uri",))
    text = uri.strip()
    if "://" in text and not re.match(r"^postgres(ql)?://", text, re.IGNORECASE):
        raise RecvecError(f"PostgreSQL URI {shown(masked(text))}: use postgresql://USER@HOST:PORT/DB or a "
                          "'host=... dbname=...' DSN", params=("uri",))
    if "://" not in text and "=" not in text:
        raise RecvecError(f"PostgreSQL URI {shown(masked(text))}: use postgresql://USER@HOST:PORT/DB or a "
                          "'host=... dbname=...' DSN", params=("uri",))
    return text


def pgvector_params(spec: IndexSpec) -> tuple[str, dict[str, int]]:
    """``(kind, index params)`` for our spec; RecvecError naming the supported kinds otherwise."""
    if spec.kind not in KINDS:
        what = f"FAISS factory string {shown(spec.factory)}" if spec.kind == "factory" else f"index kind {shown(spec.kind)}"
        raise RecvecError(f"{what} is not supported on pgvector; supported kinds: {', '.join(KINDS)}",
                          params=("index",))
    if spec.kind == "flat":
        return "flat", {}
    m, efc = int(spec.M), int(spec.ef_construction)
    if not 2 <= m <= 100 or not 4 <= efc <= 1000 or efc < 2 * m:
        raise RecvecError(f"pgvector HNSW needs 2 <= M <= 100, 4 <= ef_construction <= 1000 and ef_construction "
                          f">= 2 M; got M={m}, ef_construction={efc}", params=("index",))
    return "hnsw", {"m": m, "ef_construction": efc}


def _message(e: BaseException) -> str:
    text = str(getattr(e, "diag", None) and e.diag.message_primary or e) or type(e).__name__
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


@contextmanager
def _pg_errors(what: str, secret: str | None = None) -> Iterator[None]:
    """psycopg failures as RecvecError naming what we were doing (the password scrubbed)."""
    try:
        yield
    except RecvecError:
        raise
    except Exception as e:
        if (type(e).__module__ or "").startswith("psycopg"):
            raise RecvecError(scrub(f"PostgreSQL {what}: {_message(e)}", secret)) from None
        raise


class _Vec:
    """A float32 query vector for the binary ``vector`` dumper."""

    __slots__ = ("a",)

    def __init__(self, a: np.ndarray):
        self.a = a


def _connect(uri: str, timeout: float) -> tuple[Any, str, str | None]:
    """``(connection, uri without password, password)``: autocommit, the binary vector dumper registered."""
    if importlib.util.find_spec("psycopg") is None:
        raise RecvecError(f"the pgvector backend needs psycopg: {PIP_HINT}")
    import psycopg
    from psycopg.adapt import Dumper
    from psycopg.pq import Format
    from psycopg.types import TypeInfo

    uri = check_uri(uri)
    public, _, password = split_credentials(uri)
    try:
        conn = psycopg.connect(uri, autocommit=True, connect_timeout=max(1, int(timeout)))
    except psycopg.Error as e:
        raise RecvecError(scrub(f"cannot connect to PostgreSQL at {masked(uri)}: {_message(e)}", password),
                          params=("uri",)) from None
    try:
        with _pg_errors(f"at {public}: enabling the vector extension", password):
            if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
                try:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                except psycopg.Error as e:
                    raise RecvecError(f"PostgreSQL at {public} has no pgvector extension and this user cannot "
                                      f"create it ({_message(e)}); run CREATE EXTENSION vector as its owner") from None
            info = TypeInfo.fetch(conn, "vector")
        if info is None:
            raise RecvecError(f"PostgreSQL at {public}: type vector not found after CREATE EXTENSION vector")

        class VectorDumper(Dumper):
            format = Format.BINARY
            oid = info.oid

            def dump(self, obj: _Vec) -> bytes:
                a = obj.a
                return len(a).to_bytes(2, "big") + b"\x00\x00" + a.astype(">f4").tobytes()

        conn.adapters.register_dumper(_Vec, VectorDumper)
    except BaseException:
        conn.close()
        raise
    return conn, public, password


def _version(conn: Any) -> tuple[int, ...]:
    v = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def _marked(conn: Any, table: str) -> bool | None:
    """Whether ``table`` carries recvec's comment (None: no such table)."""
    row = conn.execute("SELECT obj_description(c.oid, 'pg_class') FROM pg_class c "
                       "WHERE c.oid = to_regclass(quote_ident(%s))", (table,)).fetchone()
    if row is None:
        return None
    return bool(row[0]) and str(row[0]).startswith(MARK)
