"""Serve item vectors from PostgreSQL with the pgvector extension.

``PgVectorIndex`` answers the search contract of ``recvec.indexes.backends.base``: rows are catalogue
row numbers (the table's ``id bigint`` primary key), scores inner products (float32, from pgvector's
negative inner product ``<#>``), best first. Use it as::

    from recvec.indexes.backends.pgvector import PgVectorIndex
    index = PgVectorIndex.create("postgresql://app@db.internal/recs", "ml1m_als", vectors, IndexSpec(kind="hnsw"))
    rows, scores = index.search(queries, 10, exclude=[history_rows, ...], ef_search=128)
    index = PgVectorIndex.open(d["uri"], d["collection"])     # later, from the manifest

URIs are libpq DSNs: ``postgresql://USER@HOST:5432/DB?sslmode=require`` or ``host=... dbname=...``;
a unix socket is ``postgresql://postgres@/postgres?host=/path/to/socket-dir``. The password comes
from the URI, ``PGPASSWORD``, ``~/.pgpass`` or a service file (libpq's own rules); the manifest and
every message carry the URI without it. The extension must exist in the database or be creatable
by the user (``CREATE EXTENSION vector``).

Table layout: ``id bigint PRIMARY KEY`` (row 0..n-1), ``vec vector(d)``, and the table comment
``recvec item vectors; id = catalogue row number`` -- the marker without which recvec never drops
a table. Index kinds: ``flat`` (no vector index: a sequential scan, exact) and ``hnsw`` (an HNSW
index ``vector_ip_ops`` with ``m``/``ef_construction`` from ``IndexSpec.M``/``ef_construction``,
built after loading). Loading is one ``COPY ... FROM STDIN (FORMAT BINARY)`` fed in batches (a progress
bar when ``progress``), then the primary key, the HNSW index and ``ANALYZE``.

History exclusion is ``WHERE id <> ALL(rows)`` inside the query. On an HNSW index pgvector
filters the candidates the index scan yields: with pgvector >= 0.8 the scan is iterative
(``hnsw.iterative_scan = strict_order``) and goes on until k rows pass; on older versions
(pgserver bundles 0.6.2) ``hnsw.ef_search`` is raised to k + the number excluded (at most
pgvector's cap of 1000), the rule every recvec backend uses. A query that still comes back short of
k rows is answered again by an exact scan (``enable_indexscan = off``); ``fallbacks`` counts those.

psycopg (3) is imported inside functions only (connection plumbing: ``pgvector_client``).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from recvec.errors import RecvecError, shown
from recvec.indexes.backends.base import (
    BackendOptions,
    as_exclusions,
    as_queries,
    check_k,
    check_vectors,
    hnsw_ef,
)
from recvec.indexes.backends.pgvector_client import (
    _COPY_HEADER,
    _COPY_TRAILER,
    KINDS,
    MARK,
    MAX_EF_SEARCH,
    _connect,
    _marked,
    _pg_errors,
    _Vec,
    _version,
    check_table_name,
    check_uri,
    pgvector_params,
)
from recvec.indexes.backends.served import same_place, spot_check, versioned_name
from recvec.indexes.spec import DEFAULT_EF_SEARCH, IndexSpec, QueryParams

__all__ = ["KINDS", "MARK", "MAX_EF_SEARCH", "PgVectorBackend", "PgVectorIndex", "check_table_name", "check_uri",
           "pgvector_params"]


class PgVectorIndex:
    """A PostgreSQL table of item vectors answering the search contract.

    Build with :meth:`create`, reopen with :meth:`open`. Attributes: ``uri`` (no password),
    ``collection`` (the table), ``kind`` ("flat"/"hnsw"), ``index_params``, ``pgvector`` (version),
    ``fallbacks`` (queries answered by the exact completion), ``timings`` (create: load_s, index_s).
    """

    backend = "pgvector"

    def __init__(self, conn: Any, *, uri: str, password: str | None, table: str, dim: int, ntotal: int,
                 kind: str, index_params: dict[str, int], version: tuple[int, ...]):
        self._conn = conn
        self._password = password
        self._vectors: np.ndarray | None = None
        self.uri = uri
        self.collection = table
        self._dim, self._ntotal = int(dim), int(ntotal)
        self.kind = kind
        self.index_params = dict(index_params)
        self.pgvector = ".".join(map(str, version))
        self.iterative = version >= (0, 8)
        self._session: dict[str, str] = {}
        self._lock = threading.Lock()  # one search at a time on the connection: session settings are per call
        self._dropped = False
        self.fallbacks = 0
        self.timings: dict[str, float] = {}
        if self.kind == "hnsw" and self.iterative:
            self._set("hnsw.iterative_scan", "strict_order")

    # -- building and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, uri: str, table: str, vectors: np.ndarray, spec: IndexSpec, *, batch_size: int | None = None,
               progress: bool = False, timeout: float = 60.0) -> PgVectorIndex:
        """Create ``table`` holding ``vectors`` (n, d) with ids 0..n-1, indexed per ``spec``; an existing
        table of that name is refused. Loads ``batch_size`` rows per COPY write (default ~8 MiB of
        rows), then adds the primary key, the HNSW index and statistics. On failure the table is dropped."""
        table = check_table_name(table, suffixed=True)
        x = check_vectors(vectors, "index vectors")
        n, d = x.shape
        kind, params = pgvector_params(spec)
        if batch_size is None:
            batch_size = max(1, (8 << 20) // (4 * d + 26))
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise RecvecError(f"batch_size must be a positive integer, got {shown(batch_size)}", params=("batch_size",))
        conn, public, password = _connect(uri, timeout)
        from psycopg import sql

        ident = sql.Identifier(table)
        created = False
        timings = {}
        try:
            with _pg_errors(f"creating table {shown(table)} at {public}", password):
                if _marked(conn, table) is not None:
                    raise RecvecError(f"PostgreSQL table {shown(table)} already exists at {public}")
                conn.execute(sql.SQL("CREATE TABLE {} (id bigint NOT NULL, vec vector({}) NOT NULL)")
                             .format(ident, sql.Literal(int(d))))
                created = True
                conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(ident, sql.Literal(MARK)))
                t0 = time.perf_counter()
                cls._copy(conn, ident, table, x, int(batch_size), progress)
                timings["load_s"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(ident))
                if kind == "hnsw":
                    cls._build_hnsw(conn, ident, table, n, d, params)
                conn.execute(sql.SQL("ANALYZE {}").format(ident))
                timings["index_s"] = time.perf_counter() - t0
                count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0]
                version = _version(conn)
            if count != n:
                raise RecvecError(f"PostgreSQL table {shown(table)} at {public} holds {count} rows after loading {n}")
        except BaseException:
            if created:
                try:
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
                except Exception:  # the original error is the one to report
                    pass
            conn.close()
            raise
        index = cls(conn, uri=public, password=password, table=table, dim=d, ntotal=n, kind=kind,
                    index_params=params, version=version)
        index._vectors = x
        index.timings = timings
        return index

    @staticmethod
    def _copy(conn: Any, ident: Any, table: str, x: np.ndarray, batch_size: int, progress: bool) -> None:
        """One binary COPY of rows (id, vec), written ``batch_size`` rows at a time."""
        from psycopg import sql

        from recvec.progress import progress as reporter

        n, d = x.shape
        row = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("vec_len", ">i4"),
                        ("dim", ">i2"), ("unused", ">i2"), ("vec", ">f4", (d,))])
        with conn.cursor() as cur, reporter(n, f"pgvector COPY {table}", "vec", enabled=progress) as bar:
            with cur.copy(sql.SQL("COPY {} (id, vec) FROM STDIN (FORMAT BINARY)").format(ident)) as copy:
                copy.write(_COPY_HEADER)
                for start in range(0, n, batch_size):
                    stop = min(n, start + batch_size)
                    buf = np.empty(stop - start, dtype=row)
                    buf["fields"], buf["id_len"], buf["vec_len"], buf["dim"], buf["unused"] = 2, 8, 4 + 4 * d, d, 0
                    buf["id"] = np.arange(start, stop)
                    buf["vec"] = x[start:stop]
                    copy.write(buf.tobytes())
                    bar.update(stop - start)
                copy.write(_COPY_TRAILER)

    @staticmethod
    def _build_hnsw(conn: Any, ident: Any, table: str, n: int, d: int, params: dict[str, int]) -> None:
        """The HNSW index, with maintenance_work_mem raised (never lowered) so the graph fits in memory."""
        from psycopg import sql

        need = n * (4 * d + 24 * params["m"] + 200)  # vector + neighbour lists + per-element overhead, bytes
        have = int(conn.execute("SELECT setting::bigint * 1024 FROM pg_settings WHERE name = 'maintenance_work_mem'")
                   .fetchone()[0])
        want = min(max(have, need), 8 << 30)
        if want > have:
            conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(f"{want // (1 << 20)}MB")))
        conn.execute(sql.SQL("CREATE INDEX {} ON {} USING hnsw (vec vector_ip_ops) WITH (m = {}, ef_construction = {})")
                     .format(sql.Identifier(f"{table[:50]}_hnsw"), ident, sql.Literal(params["m"]),
                             sql.Literal(params["ef_construction"])))
        conn.execute("RESET maintenance_work_mem")

    @classmethod
    def open(cls, uri: str, table: str, *, timeout: float = 60.0) -> PgVectorIndex:
        """Reopen a table made by :meth:`create`: checks its columns, its index (an HNSW index must use
        inner product, ``vector_ip_ops``) and that its ids are 0..n-1."""
        table = check_table_name(table, suffixed=True)
        conn, public, password = _connect(uri, timeout)
        from psycopg import sql

        what = f"PostgreSQL table {shown(table)} at {public}"
        try:
            with _pg_errors(f"opening table {shown(table)} at {public}", password):
                cols = dict(conn.execute(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                    "WHERE a.attrelid = to_regclass(quote_ident(%s)) AND a.attnum > 0 AND NOT a.attisdropped",
                    (table,)).fetchall())
                if not cols:
                    raise RecvecError(f"no {what}")
                m = re.fullmatch(r"vector\((\d+)\)", cols.get("vec", ""))
                if cols.get("id") != "bigint" or m is None:
                    raise RecvecError(f"{what} has no id bigint and vec vector(d) columns; was it made by recvec?")
                dim = int(m.group(1))
                indexes = conn.execute(
                    "SELECT am.amname, opc.opcname, ic.reloptions FROM pg_index i "
                    "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam "
                    "JOIN pg_opclass opc ON opc.oid = i.indclass[0] "
                    "WHERE i.indrelid = to_regclass(quote_ident(%s)) AND am.amname IN ('hnsw', 'ivfflat')",
                    (table,)).fetchall()
                kind, params = "flat", {}
                for am, opclass, options in indexes:
                    if opclass != "vector_ip_ops":
                        raise RecvecError(f"{what} has a {am} index with {opclass}, not inner product "
                                          "(vector_ip_ops); recvec only serves inner-product indexes")
                    if am != "hnsw":
                        raise RecvecError(f"{what} has an {am} index; recvec serves flat and hnsw tables")
                    opts = dict(o.split("=", 1) for o in (options or []))
                    kind, params = "hnsw", {"m": int(opts.get("m", 16)),
                                            "ef_construction": int(opts.get("ef_construction", 64))}
                lo, hi, count = conn.execute(sql.SQL("SELECT min(id), max(id), count(*) FROM {}")
                                             .format(sql.Identifier(table))).fetchone()
                version = _version(conn)
        except BaseException:
            conn.close()
            raise
        if not count:
            conn.close()
            raise RecvecError(f"{what} is empty")
        if (lo, hi) != (0, count - 1):
            conn.close()
            raise RecvecError(f"{what}: ids run {lo}..{hi} over {count} rows, not 0..{count - 1}; was it made by recvec?")
        return cls(conn, uri=public, password=password, table=table, dim=dim, ntotal=count, kind=kind,
                   index_params=params, version=version)

    # -- the search contract --------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Rows in the table (row ids are 0..ntotal-1)."""
        return self._ntotal

    @property
    def dim(self) -> int:
        """Dimension of the table's vectors."""
        return self._dim

    def _set(self, name: str, value: str) -> None:
        """A session setting, sent only when it changes."""
        if self._session.get(name) != value:
            self._conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            self._session[name] = value

    def search(self, queries: np.ndarray, k: int, *, exclude: Sequence[np.ndarray] | None = None,
               ef_search: int | None = None, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product for each query: ``(rows int64 (n, k), scores float32 (n, k))``.

        The contract of ``base``: ``exclude[i]`` holds the rows query i must not get; exactly k rows
        come back, best first, none excluded. ``ef_search`` (HNSW, default 64, at most 1000) applies to
        this call. All queries of a call go to the server in one pipeline (one round trip)."""
        if self._dropped:
            raise RecvecError(f"PostgreSQL table {shown(self.collection)} at {self.uri} was dropped")
        q = as_queries(queries, self._dim, against="the PostgreSQL table's dimension")
        n = q.shape[0]
        excl = as_exclusions(exclude, n, self._ntotal)
        k = check_k(k, self._ntotal, excl)
        is_hnsw = self.kind == "hnsw"
        QueryParams(ef_search=ef_search, nprobe=nprobe).check(k, is_hnsw=is_hnsw, nlist=None)
        if ef_search is not None and ef_search > MAX_EF_SEARCH:
            raise RecvecError(f"ef_search={ef_search} is above pgvector's limit of {MAX_EF_SEARCH}",
                              params=("ef_search",))
        ef = int(ef_search) if ef_search is not None else max(DEFAULT_EF_SEARCH, k)
        out_rows = np.full((n, k), -1, dtype=np.int64)
        out_scores = np.full((n, k), -np.inf, dtype=np.float32)
        if n == 0:
            return out_rows, out_scores
        sets = [np.empty(0, np.int64) if excl is None else excl[i] for i in range(n)]
        with self._lock, _pg_errors(f"searching table {shown(self.collection)} at {self.uri}", self._password):
            groups: dict[int, list[int]] = {}
            for i in range(n):  # one ef per group: hnsw.ef_search is a session setting
                e = min(MAX_EF_SEARCH, ef if self.iterative else hnsw_ef(ef, k, sets[i].size)) if is_hnsw else 0
                groups.setdefault(e, []).append(i)
            short = []
            for e, members in groups.items():
                if is_hnsw:
                    self._set("hnsw.ef_search", str(e))
                    self._set("enable_indexscan", "on")
                got = self._run(q, k, members, sets)
                for i, (ids, dist) in zip(members, got):
                    m = len(ids)
                    out_rows[i, :m], out_scores[i, :m] = ids, -dist
                    if m < k:
                        short.append(i)
            if short:
                self.fallbacks += len(short)
                self._set("enable_indexscan", "off")  # the exact completion: a sequential scan
                self._set("enable_seqscan", "on")
                for i, (ids, dist) in zip(short, self._run(q, k, short, sets)):
                    if len(ids) < k:
                        raise RecvecError(f"PostgreSQL table {shown(self.collection)} at {self.uri} returned only "
                                          f"{len(ids)} of k={k} rows for query {i} even by a full scan")
                    out_rows[i], out_scores[i] = ids, -dist
                self._set("enable_indexscan", "on")
        return out_rows, out_scores

    def _run(self, q: np.ndarray, k: int, members: list[int], sets: list[np.ndarray]) -> list[tuple]:
        """The SQL for each query in ``members``, pipelined; [(ids int64, distances float64)] in order."""
        from psycopg import sql

        table = sql.Identifier(self.collection)
        query = sql.SQL("SELECT id, vec <#> %b AS d FROM {} WHERE id <> ALL(%b::bigint[]) ORDER BY d LIMIT %b").format(table)
        # -1 is no row's id: a query excluding nothing shares the statement (and the pipeline)
        params = [(_Vec(q[i]), sets[i].tolist() if sets[i].size else [-1], k) for i in members]
        out = []
        with self._conn.cursor(binary=True) as cur:
            cur.executemany(query, params, returning=True)
            while True:
                out.append(self._arrays(cur.fetchall()))
                if not cur.nextset():
                    break
        return out

    @staticmethod
    def _arrays(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        dist = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
        order = np.argsort(dist, kind="stable")  # the index scan's order is approximate; rank by score
        return ids[order], dist[order]

    def vectors(self) -> np.ndarray:
        """The item vectors in row order, (ntotal, dim) float32: those the table was created from or
        checked against when opened from an artifact (PostgreSQL is not asked for them)."""
        if self._vectors is None:
            raise RecvecError(f"the item vectors of PostgreSQL table {shown(self.collection)} are not held here "
                              "(open it through its artifact)")
        return self._vectors

    # -- lifecycle --------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-ready: backend, uri (no password), collection (the table), metric, dim, ntotal, kind,
        index_type, index_params, search_defaults, pgvector (version). No credentials."""
        return {"backend": "pgvector", "uri": self.uri, "collection": self.collection, "metric": "IP",
                "dim": self._dim, "ntotal": self._ntotal, "kind": self.kind,
                "index_type": "HNSW" if self.kind == "hnsw" else "FLAT", "index_params": dict(self.index_params),
                "search_defaults": {"ef_search": DEFAULT_EF_SEARCH} if self.kind == "hnsw" else {},
                "pgvector": self.pgvector, "iterative_scan": self.iterative and self.kind == "hnsw"}

    def drop(self) -> None:
        """Drop the table (only one carrying recvec's comment); this object can no longer search."""
        from psycopg import sql

        with _pg_errors(f"dropping table {shown(self.collection)} at {self.uri}", self._password):
            marked = _marked(self._conn, self.collection)
            if marked is False:
                raise RecvecError(f"PostgreSQL table {shown(self.collection)} at {self.uri} was not written by recvec "
                                  "(no recvec comment); not dropping it")
            if marked:
                self._conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(self.collection)))
        self._dropped = True

    def close(self) -> None:
        """Close the connection (the table stays)."""
        self._conn.close()

    def __enter__(self) -> PgVectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"PgVectorIndex(uri={shown(self.uri)}, table={shown(self.collection)}, {self.kind} "
                f"{self.index_params}, ntotal={self._ntotal}, dim={self._dim})")


class PgVectorBackend:
    """A PostgreSQL + pgvector table: the artifact records where it is (URI without password, table)
    and stores the item vectors, which build the query-time user vectors and check the table when it
    is opened again. Each build loads a new table (``collection`` + ``_r`` + 10 hex digits); the table
    the previous artifact at the destination pointed at is dropped once the new artifact is published."""

    name = "pgvector"
    label = "PostgreSQL + pgvector"

    def check(self, spec: IndexSpec, options: BackendOptions, dest=None) -> BackendOptions:
        """Requires ``uri`` (a DSN) and ``collection`` (the table name to start from); refuses kinds
        other than flat and hnsw. Nothing is connected to yet."""
        missing = [p for p in ("uri", "collection") if not getattr(options, p)]
        if missing:
            raise RecvecError(f"backend pgvector needs {' and '.join(missing)} (uri: a PostgreSQL DSN such as "
                              "postgresql://USER@HOST/DB; collection: a table name)",
                              params=("backend", "uri", "collection"))
        uri = check_uri(options.uri)
        check_table_name(options.collection)
        if spec is not None:
            pgvector_params(spec)
        return replace(options, uri=uri)

    def build(self, vectors: np.ndarray, spec: IndexSpec, options: BackendOptions, *, seed: int = 0) -> PgVectorIndex:
        """Load ``vectors`` into a new table ``<collection>_r<10 hex>`` and index it."""
        return PgVectorIndex.create(options.uri, versioned_name(options.collection), vectors, spec,
                                    batch_size=options.batch_size, progress=options.progress)

    def manifest_entry(self, index: PgVectorIndex, dest=None) -> dict:
        """``{"kind": "pgvector", uri (no password), collection, index parameters, "index_kind"}``."""
        d = dict(index.describe())
        d.pop("backend", None)
        index_kind = d.pop("kind", None)
        return {"kind": "pgvector", **d, "index_kind": index_kind}

    def files(self, index: PgVectorIndex) -> dict[str, bytes]:
        """``{}``: the index lives in PostgreSQL."""
        return {}

    def reproduces(self, index: PgVectorIndex, vectors: np.ndarray) -> bool:
        """False: the artifact stores the item vectors, which check the table when it is opened."""
        return False

    def check_entry(self, entry: dict, where: str) -> dict:
        """Requires string ``uri`` and ``collection`` entries and a valid table name."""
        for key in ("uri", "collection"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise RecvecError(f"{where}: backend {key} is missing or not a string")
        try:
            check_table_name(entry["collection"], suffixed=True)
        except RecvecError as e:
            raise RecvecError(f"{where}: backend collection: {e}") from None
        return entry

    def open(self, entry: dict, files: dict[str, bytes], vectors: np.ndarray | None, *,
             verify: bool = True) -> PgVectorIndex:
        """Open the table the entry points at and check that it holds these item vectors."""
        what = f"PostgreSQL table {shown(entry['collection'])} at {entry['uri']}"
        try:
            ix = PgVectorIndex.open(entry["uri"], entry["collection"])
        except RecvecError as e:
            msg = str(e) if entry["collection"] in str(e) else f"{what}: {e}"
            hint = "; rebuild the artifact with recvec build --backend pgvector" if msg.startswith("no ") else ""
            raise RecvecError(msg + hint) from None
        try:
            want = entry.get("index_kind")
            if isinstance(want, str) and want and want != ix.kind:
                raise RecvecError(f"{what} has a {ix.kind} index, the manifest says {want}; rebuild the artifact")
            spot_check(ix, vectors, what, exact=verify)
        except BaseException:
            ix.close()
            raise
        ix._vectors = vectors
        return ix

    def discard(self, index: PgVectorIndex) -> None:
        """Drop the table that the failed save built."""
        index.drop()

    def retire(self, entry: dict, keep: dict | None) -> str | None:
        """Drop the table a replaced artifact pointed at, unless ``keep`` (the new artifact's entry)
        names it, it is gone, or recvec did not create it. Returns what was done, for messages."""
        if same_place(entry, keep):
            return None
        table = entry["collection"]
        try:
            conn, public, password = _connect(entry["uri"], 30.0)
        except RecvecError as e:
            return f"previous table {table} left in place ({e})"
        from psycopg import sql

        try:
            with _pg_errors(f"dropping the previous table {shown(table)} at {public}", password):
                marked = _marked(conn, table)
                if marked is None:
                    return None
                if not marked:
                    return f"previous table {table} left in place: it has no recvec comment"
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
        except RecvecError as e:
            return f"previous table {table} left in place ({e})"
        finally:
            conn.close()
        return f"dropped the previous table {table}"
