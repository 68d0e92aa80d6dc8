"""Serve item vectors from Milvus: Milvus Lite (a local ``FILE.db``, in process) or a Milvus server.

``MilvusIndex`` answers the same search contract as the FAISS ``ItemIndex`` (see
``recvec.indexes.backends``): rows are catalogue row numbers, which are the collection's INT64
primary keys, scores are inner products (float32), history exclusion is a Milvus filter expression
(``id not in [...]``) applied *inside* the search (pre-filtering) on FLAT/IVF collections and an
unfiltered over-fetch filtered here on HNSW ones (see ``MilvusIndex.search``); k results always
come back (k > ntotal - excluded is refused, as by ItemIndex). Use it as::

    from recvec.indexes.backends.milvus import MilvusIndex
    index = MilvusIndex.create("items.db", "ml1m_als", vectors, IndexSpec(kind="hnsw"), progress=True)
    rows, scores = index.search(queries, 10, exclude=[history_rows, ...], ef_search=128)
    manifest["index"] = index.describe()            # JSON-ready: uri, collection, index params
    index = MilvusIndex.open(d["uri"], d["collection"])   # later, from the manifest

URIs:

- ``PATH.db`` (relative or absolute; its folder must exist): Milvus Lite, embedded in this process
  (milvus-lite 3.x serves it from a thread on 127.0.0.1; ``PATH.db`` is a directory it manages).
  One process at a time may open a given ``.db``. Index kinds: flat, hnsw, ivf, ivfsq (SQ8).
- ``http://HOST:19530`` / ``https://…``: a Milvus standalone server or a Milvus cluster (its proxy
  or load balancer; the same URI form), or a managed Milvus (Zilliz Cloud) endpoint. Index kinds:
  flat, hnsw, ivf, ivfsq (SQ8), ivfpq. A token (``user:password`` or an API key) comes from the
  ``token`` argument, the ``RECVEC_MILVUS_TOKEN`` environment variable or the URI's
  ``user:password@``; it is never stored (the manifest keeps the URI without it) nor shown.

Rebuilds through ``MilvusBackend`` load a new collection (the name given + ``_r`` + 10 hex digits)
and drop the one the previous artifact pointed at only after the new artifact is published
(``recvec.indexes.backends.served``).

Collection layout: ``id`` INT64 primary key (row number 0..n-1), ``vec`` FLOAT_VECTOR(d), one
index on ``vec`` with metric IP; created at consistency level Strong, searched Bounded. Index parameters map from ``IndexSpec``:
flat→FLAT, hnsw→HNSW {M, efConstruction}, ivf→IVF_FLAT {nlist}, ivfsq→IVF_SQ8 {nlist},
ivfpq→IVF_PQ {nlist, m, nbits=8}; nlist and m are resolved from the data size as for FAISS.
FAISS factory strings have no Milvus equivalent and are refused.

pymilvus is imported inside functions only (the CLI imports this module lazily anyway).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from recvec.errors import RecvecError, shown
from recvec.indexes.backends.base import (
    BackendOptions,
    as_exclusions,
    as_queries,
    check_vectors,
)
from recvec.indexes.backends.milvus_client import (
    _DESCRIPTION,
    _HNSW_TYPES,
    _IVF_TYPES,
    _KIND_OF,
    _MARK,
    ID_FIELD,
    LITE_KINDS,
    MAX_NLIST,
    MAX_TOP_K,
    METRIC,
    SEARCH_CONSISTENCY,
    SERVER_KINDS,
    VECTOR_FIELD,
    _check_k,
    _connect,
    _index_build_params,
    _message,
    _milvus_errors,
    _written_by_recvec,
    check_collection_name,
    default_insert_batch,
    default_query_batch,
    exclusion_filter,
    hnsw_ef,
    milvus_index_params,
    overfetch_limit,
    check_lite_location,
    resolve_uri,
    retire_collection,
    uri_token,
)
from recvec.indexes.backends.served import same_place, spot_check, versioned_name
from recvec.indexes.spec import (
    DEFAULT_EF_SEARCH,
    IndexSpec,
    QueryParams,
    default_nprobe,
)


class MilvusIndex:
    """A Milvus collection of item vectors answering ``ItemIndex``'s search contract.

    Build with :meth:`create`, reopen with :meth:`open`; don't call the constructor directly.
    Attributes: ``uri``, ``mode`` ("lite"/"server"), ``collection``, ``index_type``,
    ``index_params``, ``query_batch`` (queries per Milvus call; settable).
    """

    backend = "milvus"

    def __init__(self, client: Any, *, uri: str, mode: str, collection: str, dim: int, ntotal: int,
                 index_type: str, index_params: dict[str, Any], query_batch: int | None = None):
        self._client = client
        self._vectors: np.ndarray | None = None  # the item vectors, when the builder or opener has them
        self.uri = uri
        self.mode = mode
        self.collection = collection
        self._dim = int(dim)
        self._ntotal = int(ntotal)
        self.index_type = index_type
        self.index_params = dict(index_params)
        self.query_batch = int(query_batch) if query_batch else default_query_batch(self._ntotal, self._dim)
        self._dropped = False
        #: Queries answered by the unfiltered over-fetch fallback (see ``search``); for diagnostics.
        self.fallbacks = 0
        #: How HNSW searches exclude rows: "overfetch" (unfiltered, k + excluded rounded up; default)
        #: or "filter" (a Milvus filter expression); see ``search``.
        self.hnsw_exclusion = "overfetch"
        #: Seconds ``create`` spent loading (insert + flush: load_s) and indexing (index + load: index_s).
        self.timings: dict[str, float] = {}

    # -- building and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, uri: str | os.PathLike[str], collection: str, vectors: np.ndarray, spec: IndexSpec, *,
               batch_size: int | None = None, progress: bool = False, drop_existing: bool = True,
               token: str | None = None, timeout: float = 60.0, index_timeout: float = 1800.0) -> MilvusIndex:
        """Create ``collection`` at ``uri`` holding ``vectors`` (n, d) with ids 0..n-1, indexed per ``spec``.

        Inserts ``batch_size`` rows per call (default: ~8 MiB of vectors; progress bar or lines when ``progress``),
        flushes, builds the IP
        index, waits up to ``index_timeout`` seconds for it and loads the collection. An existing
        collection of that name is dropped first when ``drop_existing``, else refused. On failure
        the half-built collection is dropped. Unsupported spec kinds raise RecvecError before any
        connection is made.
        """
        collection = check_collection_name(collection)
        x = check_vectors(vectors, "index vectors")
        if batch_size is None:
            batch_size = default_insert_batch(x.shape[1])
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise RecvecError(f"batch_size must be a positive integer, got {shown(batch_size)}")
        n, d = x.shape
        if not isinstance(spec, IndexSpec):
            raise RecvecError(f"spec must be an IndexSpec, got {type(spec).__name__}")
        token = token if token is not None else uri_token(uri)
        uri, mode = resolve_uri(uri)
        index_type, params = milvus_index_params(spec, n, d, mode=mode)
        client = _connect(uri, mode, token, timeout)
        created = False
        timings: dict[str, float] = {}
        try:
            with _milvus_errors(f"creating collection {shown(collection)} at {uri}"):
                if client.has_collection(collection):
                    if not drop_existing:
                        raise RecvecError(f"Milvus collection {shown(collection)} already exists at {uri}; "
                                          "drop it or choose another collection name")
                    if not _written_by_recvec(client.describe_collection(collection)):
                        raise RecvecError(f"Milvus collection {shown(collection)} at {uri} was not written by recvec "
                                          "(it lacks recvec's description and property); refusing to replace "
                                          "it: choose another collection name")
                    client.drop_collection(collection)
                cls._create_collection(client, collection, d)
                created = True
                t0 = time.perf_counter()
                cls._insert(client, collection, x, int(batch_size), progress)
                client.flush(collection)
                timings["load_s"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                cls._build_index(client, collection, index_type, params, mode, n, index_timeout)
                client.load_collection(collection)
                timings["index_s"] = time.perf_counter() - t0
                count = int(client.get_collection_stats(collection).get("row_count", -1))
            if count != n:
                raise RecvecError(f"Milvus collection {shown(collection)} at {uri} holds {count} rows after "
                                  f"inserting {n}")
        except BaseException:
            if created:
                try:
                    client.drop_collection(collection)
                except Exception:  # the original error is the one to report
                    pass
            client.close()
            raise
        index = cls(client, uri=uri, mode=mode, collection=collection, dim=d, ntotal=n,
                    index_type=index_type, index_params=params)
        index._vectors = x
        index.timings = timings
        return index

    @staticmethod
    def _create_collection(client: Any, collection: str, d: int) -> None:
        from pymilvus import DataType

        schema = client.create_schema(auto_id=False, enable_dynamic_field=False,
                                      description=_DESCRIPTION)
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=int(d))
        client.create_collection(collection, schema=schema, consistency_level="Strong",
                                 properties={_MARK: _DESCRIPTION})

    @staticmethod
    def _insert(client: Any, collection: str, x: np.ndarray, batch_size: int, progress: bool) -> None:
        from recvec.progress import progress as reporter

        n = x.shape[0]
        with reporter(n, f"milvus insert {collection}", "vec", enabled=progress) as bar:
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                rows = [{ID_FIELD: i, VECTOR_FIELD: x[i]} for i in range(start, stop)]
                res = client.insert(collection, rows)
                got = int(res.get("insert_count", stop - start)) if isinstance(res, dict) else stop - start
                if got != stop - start:
                    raise RecvecError(f"Milvus accepted {got} of {stop - start} rows {start}..{stop - 1} "
                                      f"into {shown(collection)}")
                bar.update(stop - start)

    @staticmethod
    def _build_index(client: Any, collection: str, index_type: str, params: dict[str, Any], mode: str,
                     n: int, timeout: float) -> None:
        index_params = client.prepare_index_params()
        # pymilvus 3 flattens build params into the request; Milvus servers read them that way, but
        # milvus-lite 3.2 only reads a JSON "params" entry (and silently ignores flat keys).
        wire = {"params": dict(params)} if (mode == "lite" and params) else dict(params)
        index_params.add_index(field_name=VECTOR_FIELD, index_type=index_type, metric_type=METRIC,
                               index_name=VECTOR_FIELD, params=wire)
        client.create_index(collection, index_params)
        deadline = time.monotonic() + timeout
        while True:
            info = client.describe_index(collection, index_name=VECTOR_FIELD) or {}
            indexed = info.get("indexed_rows")
            if str(info.get("state", "")).lower() == "finished" or (indexed is not None and int(indexed) >= n):
                return
            if str(info.get("state", "")).lower() == "failed":
                raise RecvecError(f"Milvus failed to build the {index_type} index on {shown(collection)}: "
                                  f"{info.get('index_state_fail_reason', info)}")
            if time.monotonic() > deadline:
                raise RecvecError(f"Milvus {index_type} index on {shown(collection)} not built after {timeout:.0f} s "
                                  f"({indexed} of {n} rows indexed)")
            time.sleep(0.5)

    @classmethod
    def open(cls, uri: str | os.PathLike[str], collection: str, *, token: str | None = None,
             timeout: float = 60.0, query_batch: int | None = None) -> MilvusIndex:
        """Reopen a collection made by :meth:`create` (checks its fields and IP metric, loads it)."""
        collection = check_collection_name(collection)
        token = token if token is not None else uri_token(uri)
        uri, mode = resolve_uri(uri)
        client = _connect(uri, mode, token, timeout)
        try:
            with _milvus_errors(f"opening collection {shown(collection)} at {uri}"):
                if not client.has_collection(collection):
                    raise RecvecError(f"no Milvus collection {shown(collection)} at {uri}")
                dim = cls._check_schema(client.describe_collection(collection), collection, uri)
                names = client.list_indexes(collection, field_name=VECTOR_FIELD) or []
                if not names:
                    raise RecvecError(f"Milvus collection {shown(collection)} at {uri} has no index on {shown(VECTOR_FIELD)}")
                info = client.describe_index(collection, index_name=names[0]) or {}
                metric = str(info.get("metric_type", "")).upper()
                if metric != METRIC:
                    raise RecvecError(f"Milvus collection {shown(collection)} at {uri} uses metric {metric or '?'}, "
                                      f"not inner product ({METRIC}); recvec only serves inner-product indexes")
                index_type = str(info.get("index_type", "")).upper()
                client.load_collection(collection)
                ntotal = int(client.get_collection_stats(collection).get("row_count", 0))
        except BaseException:
            client.close()
            raise
        if ntotal < 1:
            client.close()
            raise RecvecError(f"Milvus collection {shown(collection)} at {uri} is empty")
        return cls(client, uri=uri, mode=mode, collection=collection, dim=dim, ntotal=ntotal,
                   index_type=index_type, index_params=_index_build_params(info), query_batch=query_batch)

    @staticmethod
    def _check_schema(desc: dict[str, Any], collection: str, uri: str) -> int:
        from pymilvus import DataType

        fields = {f.get("name"): f for f in desc.get("fields", [])}
        pk, vec = fields.get(ID_FIELD), fields.get(VECTOR_FIELD)
        if pk is None or pk.get("type") != DataType.INT64 or not pk.get("is_primary"):
            raise RecvecError(f"Milvus collection {shown(collection)} at {uri} has no INT64 primary key {shown(ID_FIELD)}; "
                              "was it made by recvec?")
        if vec is None or vec.get("type") != DataType.FLOAT_VECTOR:
            raise RecvecError(f"Milvus collection {shown(collection)} at {uri} has no FLOAT_VECTOR field "
                              f"{shown(VECTOR_FIELD)}; was it made by recvec?")
        return int((vec.get("params") or {}).get("dim", 0))

    # -- the search contract --------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Rows in the collection (row ids are 0..ntotal-1)."""
        return self._ntotal

    @property
    def dim(self) -> int:
        """Dimension of the collection's vectors."""
        return self._dim

    @property
    def kind(self) -> str | None:
        """Our index kind for the Milvus index type (flat, hnsw, ivf, ivfsq, ivfpq), None if foreign."""
        return _KIND_OF.get(self.index_type)

    def _search_params(self, k: int, ef_search: int | None, nprobe: int | None) -> dict[str, int]:
        is_hnsw = self.index_type in _HNSW_TYPES
        nlist: int | None = None
        if self.index_type in _IVF_TYPES:
            # An IVF collection made elsewhere may not report nlist: then let Milvus judge nprobe.
            nlist = int(self.index_params.get("nlist") or MAX_NLIST)
        QueryParams(ef_search=ef_search, nprobe=nprobe).check(k, is_hnsw=is_hnsw, nlist=nlist)
        if is_hnsw:
            return {"ef": int(ef_search) if ef_search is not None else max(DEFAULT_EF_SEARCH, k)}
        if self.index_type in _IVF_TYPES:
            return {"nprobe": int(nprobe) if nprobe is not None else default_nprobe(int(nlist))}
        return {}

    def search(self, queries: np.ndarray, k: int, *, exclude: Sequence[np.ndarray] | None = None,
               ef_search: int | None = None, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product for each query: ``(rows int64 (n, k), scores float32 (n, k))``.

        Same contract and input checks as ``ItemIndex.search``: ``exclude[i]`` holds the rows query i
        must not get (rows outside 0..ntotal-1 and k > ntotal - excluded are refused); results are
        best first, with no excluded row and no -1 padding. ``ef_search`` (HNSW, default 64) and
        ``nprobe`` (IVF, default ~nlist/8) apply to this call only; a filtered HNSW query searches
        with ef >= k + its number of excluded rows, as ``ItemIndex`` does.

        Exclusion: on FLAT and IVF collections a Milvus filter (``id not in [...]``) applied inside the
        search, queries sharing an exclusion set in one call of at most ``query_batch`` queries. On
        HNSW collections (``hnsw_exclusion = "overfetch"``, the default) the search is unfiltered for
        L = k + excluded rows rounded up to a power of two (ef >= L) and the exclusion is applied
        here: Milvus 2.3.5's filtered HNSW kept recall@10 0.974 at ef=64 (0.996 at ef=256) on ML-1M
        ALS vectors with the users' histories excluded, the over-fetch 1.0 at the same latency.
        Queries with the same L go in one call; ``"filter"`` uses the filter expression on HNSW too.
        A query that comes back short of k rows is asked again: IVF with nprobe doubled up to nlist;
        then, for any kind, unfiltered for k + excluded rows with the exclusion applied here (Milvus
        2.3.5's filtered HNSW returned 1 row for some filters whatever ef was); ``fallbacks`` counts those.
        """
        if self._dropped:
            raise RecvecError(f"Milvus collection {shown(self.collection)} at {self.uri} was dropped")
        q = as_queries(queries, self._dim, against="the Milvus collection's dimension")
        n = q.shape[0]
        excl = as_exclusions(exclude, n, self._ntotal)
        k = _check_k(k, self._ntotal, excl)
        sets = [None if excl is None or not excl[i].size else excl[i] for i in range(n)]
        params = self._search_params(k, ef_search, nprobe)
        out_rows = np.full((n, k), -1, dtype=np.int64)
        out_scores = np.full((n, k), -np.inf, dtype=np.float32)
        got = np.zeros(n, dtype=np.int64)
        overfetch = "ef" in params and self.hnsw_exclusion == "overfetch"
        groups: dict[Any, list[int]] = {}
        for i, rows in enumerate(sets):
            if overfetch:  # by the over-fetch limit: a query's call never depends on the others in the batch
                key: Any = ("limit", k if rows is None else overfetch_limit(k, rows.size))
            else:
                key = None if rows is None else rows.tobytes()
            groups.setdefault(key, []).append(i)
        with _milvus_errors(f"searching collection {shown(self.collection)} at {self.uri}"):
            for key, members in groups.items():
                p = dict(params)
                if overfetch:
                    limit, expr, excl = key[1], "", None
                    p["ef"] = hnsw_ef(p["ef"], limit, 0)
                else:
                    limit, excl = k, sets[members[0]]
                    expr = exclusion_filter(excl)
                    if "ef" in p and excl is not None:
                        p["ef"] = hnsw_ef(p["ef"], k, excl.size)
                for start in range(0, len(members), self.query_batch):
                    idx = members[start:start + self.query_batch]
                    hits = self._search_call(q[idx], limit, expr, p)
                    for qi, row_hits in zip(idx, hits):
                        got[qi] = self._fill(out_rows[qi], out_scores[qi], row_hits, sets[qi] if overfetch else None)
                short = [qi for qi in members if got[qi] < k]
                for qi in short if overfetch else ():  # (k + excluded above Milvus's top-k cap): filtered
                    self.fallbacks += 1
                    ex_i, pf = sets[qi], dict(params)
                    pf["ef"] = hnsw_ef(pf["ef"], k, ex_i.size)
                    out_rows[qi], out_scores[qi] = -1, -np.inf
                    hit = self._search_call(q[qi:qi + 1], k, exclusion_filter(ex_i), pf)[0]
                    got[qi] = self._fill(out_rows[qi], out_scores[qi], hit, None)
                    if got[qi] < k:
                        self._complete(q, k, [qi], ex_i, exclusion_filter(ex_i), pf, out_rows, out_scores, got)
                if short and not overfetch:
                    self._complete(q, k, short, excl, expr, p, out_rows, out_scores, got)
        return out_rows, out_scores

    def _complete(self, q: np.ndarray, k: int, short: list[int], excl: np.ndarray | None, expr: str,
                  params: dict[str, int], out_rows: np.ndarray, out_scores: np.ndarray, got: np.ndarray) -> None:
        """Re-ask queries that came back with fewer than k rows (see ``search``)."""
        nlist = int(self.index_params.get("nlist") or MAX_NLIST)
        p = dict(params)
        while short and "nprobe" in p and p["nprobe"] < nlist:
            p["nprobe"] = min(nlist, p["nprobe"] * 2)
            hits = self._search_call(q[short], k, expr, p)
            for qi, row_hits in zip(short, hits):
                got[qi] = self._fill(out_rows[qi], out_scores[qi], row_hits, None)
            short = [qi for qi in short if got[qi] < k]
        n_excl = 0 if excl is None else excl.size
        limit = min(k + n_excl, MAX_TOP_K)
        if "ef" in p:
            p["ef"] = hnsw_ef(p["ef"], limit, 0)
        for qi in short:
            self.fallbacks += 1
            hits = self._search_call(q[qi:qi + 1], limit, "", p)
            out_rows[qi], out_scores[qi] = -1, -np.inf
            got[qi] = self._fill(out_rows[qi], out_scores[qi], hits[0], excl)
            if got[qi] < k:
                raise RecvecError(f"Milvus collection {shown(self.collection)} at {self.uri} returned only "
                                  f"{got[qi]} of k={k} rows for query {qi} even unfiltered "
                                  f"({n_excl} excluded); is the collection fully loaded?")

    def _search_call(self, q: np.ndarray, limit: int, expr: str, params: dict[str, int]) -> Any:
        return self._client.search(self.collection, data=q, limit=limit, filter=expr, anns_field=VECTOR_FIELD,
                                   output_fields=[ID_FIELD], consistency_level=SEARCH_CONSISTENCY,
                                   search_params={"metric_type": METRIC, "params": params})

    @staticmethod
    def _fill(rows_out: np.ndarray, scores_out: np.ndarray, row_hits: Any, drop: np.ndarray | None) -> int:
        """Write one query's hits in rank order (minus ``drop`` ids) into the output rows; returns the count."""
        ids = np.fromiter((h["id"] for h in row_hits), dtype=np.int64, count=len(row_hits))
        sc = np.fromiter((h["distance"] for h in row_hits), dtype=np.float32, count=len(row_hits))
        if drop is not None and ids.size:
            keep = ~np.isin(ids, drop)
            ids, sc = ids[keep], sc[keep]
        order = np.argsort(-sc, kind="stable")[:rows_out.shape[0]]
        m = order.size
        rows_out[:m] = ids[order]
        scores_out[:m] = sc[order]
        return m

    def vectors(self) -> np.ndarray:
        """The item vectors in row order, (ntotal, dim) float32: those the collection was created from
        or checked against when opened from an artifact (Milvus is not asked for them)."""
        if self._vectors is None:
            raise RecvecError(f"the item vectors of Milvus collection {shown(self.collection)} are not held here "
                              "(open it through its artifact)")
        return self._vectors

    # -- lifecycle --------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-ready description for an artifact manifest; ``open(d["uri"], d["collection"])`` reopens it.

        Keys: backend, mode, uri (absolute path for Lite), collection, metric, dim, ntotal, kind,
        index_type, index_params, search_defaults. No credentials.
        """
        defaults: dict[str, int] = {}
        if self.index_type in _HNSW_TYPES:
            defaults = {"ef": DEFAULT_EF_SEARCH}
        elif self.index_type in _IVF_TYPES and self.index_params.get("nlist"):
            defaults = {"nprobe": default_nprobe(int(self.index_params["nlist"]))}
        return {"backend": "milvus", "mode": self.mode, "uri": self.uri, "collection": self.collection,
                "metric": METRIC, "dim": self._dim, "ntotal": self._ntotal, "kind": self.kind,
                "index_type": self.index_type, "index_params": dict(self.index_params),
                "search_defaults": defaults}

    def drop(self) -> None:
        """Drop the collection from Milvus (its data is gone; this object can no longer search)."""
        with _milvus_errors(f"dropping collection {shown(self.collection)} at {self.uri}"):
            self._client.drop_collection(self.collection)
        self._dropped = True

    def close(self) -> None:
        """Close the client connection (the collection stays)."""
        try:
            self._client.close()
        except Exception as e:
            raise RecvecError(f"closing Milvus client for {self.uri}: {_message(e)}") from e

    def __enter__(self) -> MilvusIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"MilvusIndex(uri={shown(self.uri)}, collection={shown(self.collection)}, {self.index_type} "
                f"{self.index_params}, ntotal={self._ntotal}, dim={self._dim})")


class MilvusBackend:
    """A Milvus collection (Milvus Lite ``FILE.db`` in process, or a Milvus server by URI): the
    artifact records where it is (``describe()`` minus credentials) and stores the item vectors,
    which build the query-time user vectors and check the collection when it is opened again."""

    name = "milvus"
    label = "Milvus"

    def check(self, spec: IndexSpec, options: BackendOptions, dest=None) -> BackendOptions:
        """Requires ``uri`` and ``collection``, resolves the URI, and refuses (RecvecError) an invalid
        collection name, an index kind the Lite or server mode cannot build, and a Lite database
        inside ``dest``."""
        missing = [p for p in ("uri", "collection") if not getattr(options, p)]
        if missing:
            raise RecvecError(f"backend milvus needs {' and '.join(missing)} (uri: FILE.db for Milvus Lite or "
                              "http://HOST:19530 for a Milvus server; collection: a name)",
                              params=("backend", "uri", "collection"))
        uri, mode = resolve_uri(options.uri)
        check_collection_name(options.collection)
        if len(options.collection) > 243:  # the build adds _r + 10 hex digits
            raise RecvecError(f"Milvus collection name {shown(options.collection[:20])}... is longer than 243 characters",
                              params=("collection",))
        if spec is not None:
            supported = LITE_KINDS if mode == "lite" else SERVER_KINDS
            if spec.kind not in supported:
                what = f"FAISS factory string {shown(spec.factory)}" if spec.kind == "factory" else f"index kind {shown(spec.kind)}"
                where = "Milvus Lite" if mode == "lite" else "a Milvus server"
                raise RecvecError(f"{what} cannot be built on {where}; supported kinds: {', '.join(supported)}")
        if dest is not None:
            check_lite_location(uri, dest)
        return replace(options, uri=options.uri.strip() if mode == "server" else uri)

    def build(self, vectors: np.ndarray, spec: IndexSpec, options: BackendOptions, *, seed: int = 0) -> MilvusIndex:
        """Create a new collection ``<collection>_r<10 hex>`` and load ``vectors`` into it
        (``options.batch_size`` rows per insert call)."""
        return MilvusIndex.create(options.uri, versioned_name(options.collection), vectors, spec,
                                  batch_size=options.batch_size, progress=options.progress, drop_existing=False)

    def manifest_entry(self, index: MilvusIndex, dest=None) -> dict:
        """``{"kind": "milvus", uri, collection, index parameters, "index_kind"}``, never a token;
        RecvecError for a Milvus Lite database inside ``dest``."""
        if dest is not None:
            check_lite_location(index.uri, dest)
        d = dict(index.describe())
        d.pop("backend", None)
        index_kind = d.pop("kind", None)
        d.pop("token", None)  # describe() never holds one; make sure no credential reaches the manifest
        return {"kind": "milvus", **d, "index_kind": index_kind}

    def files(self, index: MilvusIndex) -> dict[str, bytes]:
        """``{}``: the index lives in Milvus."""
        return {}

    def reproduces(self, index: MilvusIndex, vectors: np.ndarray) -> bool:
        """False: the artifact always stores the item vectors, which check the collection when it is opened."""
        return False  # the artifact stores the vectors: they check the collection when it is opened

    def check_entry(self, entry: dict, where: str) -> dict:
        """Requires string ``uri`` and ``collection`` entries and a valid collection name."""
        for key in ("uri", "collection"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise RecvecError(f"{where}: backend {key} is missing or not a string")
        try:
            check_collection_name(entry["collection"])
        except RecvecError as e:
            raise RecvecError(f"{where}: backend collection: {e}") from None
        return entry

    def open(self, entry: dict, files: dict[str, bytes], vectors: np.ndarray | None, *,
             verify: bool = True) -> MilvusIndex:
        """Open the collection the entry points at and check that it holds these item vectors."""
        uri, collection = entry["uri"], entry["collection"]
        what = f"Milvus collection {shown(collection)} at {uri}"
        uri, mode = resolve_uri(uri)
        if mode == "lite" and not os.path.exists(uri):  # don't let Milvus Lite create an empty database
            raise RecvecError(f"its index is {what}, but the Milvus Lite database {uri} does not exist (moved or "
                              "deleted?); rebuild with recvec build --backend milvus")
        try:
            ix = MilvusIndex.open(uri, collection)
        except RecvecError as e:
            msg = str(e) if collection in str(e) and uri in str(e) else f"{what}: {e}"
            hint = "; rebuild the artifact with recvec build --backend milvus" if "no Milvus collection" in msg else ""
            raise RecvecError(msg + hint) from None
        try:
            self._check(ix, entry, vectors, what, verify)
        except BaseException:
            ix.close()
            raise
        ix._vectors = vectors
        return ix

    @staticmethod
    def _check(ix: MilvusIndex, entry: dict, vectors: np.ndarray, what: str, verify: bool) -> None:
        want_type = entry.get("index_type")
        if isinstance(want_type, str) and want_type and ix.index_type != want_type.upper():
            raise RecvecError(f"{what} has a {ix.index_type} index, the manifest says {want_type}; was it rebuilt "
                              "or replaced since this artifact was written? Rebuild the artifact")
        spot_check(ix, vectors, what, exact=verify and ix.kind in ("flat", "hnsw", "ivf"))

    def discard(self, index: MilvusIndex) -> None:
        """Drop the collection that the failed save built."""
        index.drop()

    def retire(self, entry: dict, keep: dict | None) -> str | None:
        """Drop the collection a replaced artifact pointed at, unless ``keep`` (the new artifact's
        entry) names it, it is gone, or recvec did not create it. Returns what was done, for messages."""
        return None if same_place(entry, keep) else retire_collection(entry["uri"], entry["collection"])
