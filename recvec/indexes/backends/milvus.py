"""Serve item vectors from Milvus: Milvus Lite (a local ``FILE.db``, in process) or a Milvus server.

``MilvusIndex`` answers the same search contract as the FAISS ``ItemIndex`` (see
``recvec.indexes.backends``): rows are catalogue row numbers, which are the collection's INT64
primary keys, scores are inner products (float32), history exclusion is a Milvus filter expression
(``id not in [...]``) applied *inside* the search (pre-filtering); k results always come back
(k > ntotal - excluded is refused, as by ItemIndex). Use it as::

    from recvec.indexes.backends.milvus import MilvusIndex
    index = MilvusIndex.create("items.db", "ml1m_als", vectors, IndexSpec(kind="hnsw"), progress=True)
    rows, scores = index.search(queries, 10, exclude=[history_rows, ...], ef_search=128)
    manifest["index"] = index.describe()            # JSON-ready: uri, collection, index params
    index = MilvusIndex.open(d["uri"], d["collection"])   # later, from the manifest

URIs:

- ``PATH.db`` (relative or absolute; its folder must exist): Milvus Lite, embedded in this process
  (milvus-lite 3.x serves it from a thread on 127.0.0.1; ``PATH.db`` is a directory it manages).
  One process at a time may open a given ``.db``. Index kinds: flat, hnsw, ivf, ivfsq (SQ8).
- ``http://HOST:19530`` / ``https://…``: a Milvus standalone or distributed server. Index kinds:
  flat, hnsw, ivf, ivfsq (SQ8), ivfpq. A token (``user:password`` or an API key) comes from the
  ``token`` argument or the ``RECVEC_MILVUS_TOKEN`` environment variable and is never stored.

Collection layout: ``id`` INT64 primary key (row number 0..n-1), ``vec`` FLOAT_VECTOR(d), one
index on ``vec`` with metric IP; created at consistency level Strong, searched Bounded. Index parameters map from ``IndexSpec``:
flat→FLAT, hnsw→HNSW {M, efConstruction}, ivf→IVF_FLAT {nlist}, ivfsq→IVF_SQ8 {nlist},
ivfpq→IVF_PQ {nlist, m, nbits=8}; nlist and m are resolved from the data size as for FAISS.
FAISS factory strings have no Milvus equivalent and are refused.

pymilvus is imported inside functions only (the CLI imports this module lazily anyway).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from recvec.errors import RecvecError, shown
from recvec.indexes.spec import DEFAULT_EF_SEARCH, IndexSpec, QueryParams, default_nprobe

ID_FIELD = "id"
VECTOR_FIELD = "vec"
METRIC = "IP"
#: Every collection recvec creates carries this description: only those does it ever drop.
_DESCRIPTION = "recvec item vectors; id = catalogue row number"
_MARK = "recvec"  # ... and this collection property (Milvus Lite keeps properties, not descriptions)


def _written_by_recvec(described: dict) -> bool:
    """Whether a collection (``describe_collection``'s answer) is one recvec created."""
    props = described.get("properties") or {}
    return str(described.get("description", "")).startswith(_DESCRIPTION) or props.get(_MARK) == _DESCRIPTION
#: Milvus caps topk (limit) at 16384 per search.
MAX_TOP_K = 16384
#: Milvus caps HNSW ef at 32768 and IVF nlist at 65536.
MAX_HNSW_EF = 32768
MAX_NLIST = 65536
#: Our index kinds each Milvus flavour can build.
LITE_KINDS = ("flat", "hnsw", "ivf", "ivfsq")
SERVER_KINDS = ("flat", "hnsw", "ivf", "ivfsq", "ivfpq")
INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT", "ivfsq": "IVF_SQ8", "ivfpq": "IVF_PQ"}
_KIND_OF = {**{v: k for k, v in INDEX_TYPES.items()}, "BRUTE_FORCE": "flat"}
_HNSW_TYPES = ("HNSW",)
_IVF_TYPES = ("IVF_FLAT", "IVF_SQ8", "IVF_PQ")
#: A FLAT search of a query batch may allocate about batch x ntotal x dim floats (Milvus Lite 2.x
#: did exactly that); keep that product under this many bytes, and batches at most 64 queries.
QUERY_BUDGET_BYTES = 256 << 20
MAX_QUERY_BATCH = 64
#: Searches read at "Bounded" consistency: create() flushes and loads before returning, so every row
#: is in a sealed segment, and a "Strong" search waits ~200 ms per call on a Milvus server for the
#: time tick (measured on Milvus 2.3.5 standalone).
SEARCH_CONSISTENCY = "Bounded"
PIP_HINT = "pip install 'pymilvus==3.0.2' 'milvus-lite==3.2.2'"

_COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_SERVER_URI = re.compile(r"^(https?|tcp)://[^/\s]+", re.IGNORECASE)
# Keys of a describe_index answer that are not build parameters.
_INDEX_META_KEYS = {"index_type", "metric_type", "field_name", "index_name", "total_rows", "indexed_rows",
                    "pending_index_rows", "state", "params", "search_params", "mmap.enabled"}


# -- URIs, names, parameters (no pymilvus needed) -----------------------------------------------

def resolve_uri(uri: str | os.PathLike[str]) -> tuple[str, str]:
    """``(uri, mode)``: mode "lite" for a ``.db`` path (made absolute) or "server" for http(s)://."""
    if not isinstance(uri, (str, os.PathLike)):
        raise RecvecError(f"Milvus URI must be a string, got {type(uri).__name__}")
    text = os.fspath(uri).strip()
    if _SERVER_URI.match(text):
        return text.rstrip("/"), "server"
    if "://" in text:
        raise RecvecError(f"Milvus URI {shown(text)}: unsupported scheme; use a local FILE.db path (Milvus Lite) "
                          "or http://HOST:19530 (Milvus server)")
    if not text.endswith(".db"):
        raise RecvecError(f"Milvus URI {shown(text)}: use a local path ending in .db (Milvus Lite) "
                          "or http://HOST:19530 (Milvus server)")
    path = os.path.abspath(os.path.expanduser(text))
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise RecvecError(f"Milvus Lite URI {shown(text)}: folder {parent} does not exist")
    return path, "lite"


def check_collection_name(name: str) -> str:
    """Milvus collection names: a letter or _, then letters, digits or _, at most 255 characters."""
    if not isinstance(name, str) or not _COLLECTION_NAME.match(name):
        raise RecvecError(f"Milvus collection name {shown(name)} is invalid: use letters, digits and _, "
                          "starting with a letter or _ (at most 255 characters)")
    return name


def milvus_index_params(spec: IndexSpec, n: int, d: int, *, mode: str) -> tuple[str, dict[str, int]]:
    """``(index_type, build params)`` for our spec on n vectors of dimension d, for "lite" or "server".

    Raises RecvecError naming the supported kinds when this Milvus flavour cannot build the spec.
    """
    supported = LITE_KINDS if mode == "lite" else SERVER_KINDS
    flavour = "Milvus Lite" if mode == "lite" else "a Milvus server"
    if spec.kind not in supported:
        what = (f"FAISS factory string {shown(spec.factory)}" if spec.kind == "factory"
                else f"index kind {shown(spec.kind)}")
        raise RecvecError(f"{what} is not supported on {flavour}; supported kinds: {', '.join(supported)}"
                          + (" (ivfpq needs a Milvus server)" if mode == "lite" and spec.kind == "ivfpq" else ""))
    if spec.kind == "flat":
        return "FLAT", {}
    if spec.kind == "hnsw":
        return "HNSW", {"M": int(spec.M), "efConstruction": int(spec.ef_construction)}
    nlist = int(spec.resolve_nlist(n))
    if spec.kind == "ivf":
        return "IVF_FLAT", {"nlist": nlist}
    if spec.kind == "ivfsq":
        if spec.sq != "SQ8":
            raise RecvecError(f"Milvus scalar quantisation is SQ8 only, not {spec.sq}; use ivfsq with sq='SQ8'")
        return "IVF_SQ8", {"nlist": nlist}
    return "IVF_PQ", {"nlist": nlist, "m": int(spec.resolve_pq_m(d)), "nbits": 8}


def default_query_batch(ntotal: int, dim: int) -> int:
    """Queries per Milvus call: at most 64, and batch x ntotal x dim x 4 bytes <= QUERY_BUDGET_BYTES."""
    return int(max(1, min(MAX_QUERY_BATCH, QUERY_BUDGET_BYTES // max(1, ntotal * dim * 4))))


def exclusion_filter(rows: np.ndarray | None) -> str:
    """The Milvus boolean expression that drops these row ids ("" when there are none)."""
    if rows is None or len(rows) == 0:
        return ""
    return f"{ID_FIELD} not in [{','.join(str(int(r)) for r in rows)}]"


# -- pymilvus plumbing --------------------------------------------------------------------------

def _message(e: BaseException) -> str:
    msg = getattr(e, "message", None) or str(e) or type(e).__name__
    return str(msg).strip().splitlines()[0] if str(msg).strip() else type(e).__name__


@contextmanager
def _milvus_errors(what: str) -> Iterator[None]:
    """Turn pymilvus / milvus-lite / gRPC failures into RecvecError naming what we were doing."""
    try:
        yield
    except RecvecError:
        raise
    except Exception as e:
        module = type(e).__module__ or ""
        if module.startswith(("pymilvus", "milvus_lite", "grpc")):
            raise RecvecError(f"Milvus {what}: {_message(e)}") from e
        raise


def _connect(uri: str, mode: str, token: str | None, timeout: float) -> Any:
    if importlib.util.find_spec("pymilvus") is None:
        raise RecvecError(f"the milvus backend needs pymilvus: {PIP_HINT}")
    if mode == "lite" and importlib.util.find_spec("milvus_lite") is None:
        raise RecvecError(f"Milvus Lite URIs (.db) need the milvus-lite package: {PIP_HINT}")
    from pymilvus import MilvusClient

    if token is None:
        token = os.environ.get("RECVEC_MILVUS_TOKEN", "")
    # milvus-lite logs a full traceback when it cannot start (e.g. the .db is locked); we raise instead.
    lite_log = logging.getLogger("milvus_lite.server_manager")
    level = lite_log.level
    lite_log.setLevel(logging.CRITICAL)
    try:
        return MilvusClient(uri=uri, token=token or "", timeout=timeout)
    except Exception as e:  # connection refused, locked .db, bad token: all user-fixable
        hint = ""
        if mode == "lite":
            hint = ("; Milvus Lite lets one process at a time open a .db (is another process using it?)"
                    if os.path.exists(os.path.join(uri, "LOCK")) else "")
        raise RecvecError(f"cannot connect to Milvus at {uri}: {_message(e)}{hint}") from e
    finally:
        lite_log.setLevel(level)


def _check_vectors(vectors: Any, what: str) -> np.ndarray:
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise RecvecError(f"{what} must be a non-empty (n, d) array, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise RecvecError(f"{what} must be numeric, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise RecvecError(f"{what} contain NaN or infinite values (rows {bad[:10].tolist()})")
    return x


def _check_queries(queries: Any, dim: int) -> np.ndarray:
    from recvec.indexes.search import _as_queries  # the FAISS index's checks, one definition

    return _as_queries(queries, dim, against="the Milvus collection's dimension")


def _check_k(k: Any, ntotal: int, sets: list[np.ndarray | None]) -> int:
    """k as ItemIndex takes it: 1 <= k <= ntotal - (each query's excluded rows); also Milvus's cap."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise RecvecError(f"k must be a positive integer, got {shown(k)}")
    k = int(k)
    if k > ntotal:
        raise RecvecError(f"k={k} is larger than the {ntotal} items in the index")
    if k > MAX_TOP_K:
        raise RecvecError(f"k={k} is above Milvus's limit of {MAX_TOP_K} results per query")
    for i, rows in enumerate(sets):
        if rows is not None and ntotal - rows.size < k:
            raise RecvecError(f"k={k} is larger than the {ntotal - rows.size} items left for query {i} "
                              f"after excluding {rows.size} of {ntotal}")
    return k


def hnsw_ef(ef: int, k: int, n_excluded: int) -> int:
    """ef for a filtered HNSW query: the asked ef, at least k + the number excluded (the rule
    ``recvec.indexes.search`` uses for FAISS), within Milvus's ef cap."""
    return int(min(MAX_HNSW_EF, max(ef, k + n_excluded)))


def _exclusion_sets(exclude: Sequence[np.ndarray] | None, n: int, ntotal: int) -> list[np.ndarray | None]:
    """Per query: sorted unique row ids to exclude, or None; ids outside 0..ntotal-1 are refused."""
    if exclude is None:
        return [None] * n
    if len(exclude) != n:
        raise RecvecError(f"exclude has {len(exclude)} entries for {n} queries; give one array per query")
    out: list[np.ndarray | None] = []
    for i, rows in enumerate(exclude):
        a = np.asarray(rows if rows is not None else []).ravel()
        if a.size == 0:
            out.append(None)
            continue
        if not np.issubdtype(a.dtype, np.integer):
            raise RecvecError(f"exclude[{i}] must hold integer row ids, got dtype {a.dtype}")
        a = np.unique(a.astype(np.int64))
        if a[0] < 0 or a[-1] >= ntotal:
            bad = a[(a < 0) | (a >= ntotal)]
            raise RecvecError(f"exclude[{i}] has item rows outside 0..{ntotal - 1}: {bad[:10].tolist()}")
        out.append(a)
    return out


def _index_build_params(info: dict[str, Any]) -> dict[str, Any]:
    """Build parameters from a describe_index answer (Lite nests them under "params", servers flatten)."""
    nested = info.get("params")
    raw = dict(nested) if isinstance(nested, dict) else {}
    raw.update({k: v for k, v in info.items() if k not in _INDEX_META_KEYS})
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        out[key] = value
    return out


class MilvusIndex:
    """A Milvus collection of item vectors answering ``ItemIndex``'s search contract.

    Build with :meth:`create`, reopen with :meth:`open`; don't call the constructor directly.
    Attributes: ``uri``, ``mode`` ("lite"/"server"), ``collection``, ``index_type``,
    ``index_params``, ``query_batch`` (queries per Milvus call; settable).
    """

    def __init__(self, client: Any, *, uri: str, mode: str, collection: str, dim: int, ntotal: int,
                 index_type: str, index_params: dict[str, Any], query_batch: int | None = None):
        self._client = client
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

    # -- building and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, uri: str | os.PathLike[str], collection: str, vectors: np.ndarray, spec: IndexSpec, *,
               batch_size: int = 2000, progress: bool = False, drop_existing: bool = True,
               token: str | None = None, timeout: float = 60.0, index_timeout: float = 1800.0) -> MilvusIndex:
        """Create ``collection`` at ``uri`` holding ``vectors`` (n, d) with ids 0..n-1, indexed per ``spec``.

        Inserts ``batch_size`` rows per call (tqdm bar when ``progress``), flushes, builds the IP
        index, waits up to ``index_timeout`` seconds for it and loads the collection. An existing
        collection of that name is dropped first when ``drop_existing``, else refused. On failure
        the half-built collection is dropped. Unsupported spec kinds raise RecvecError before any
        connection is made.
        """
        collection = check_collection_name(collection)
        x = _check_vectors(vectors, "index vectors")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise RecvecError(f"batch_size must be a positive integer, got {shown(batch_size)}")
        n, d = x.shape
        if not isinstance(spec, IndexSpec):
            raise RecvecError(f"spec must be an IndexSpec, got {type(spec).__name__}")
        uri, mode = resolve_uri(uri)
        index_type, params = milvus_index_params(spec, n, d, mode=mode)
        client = _connect(uri, mode, token, timeout)
        created = False
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
                cls._insert(client, collection, x, int(batch_size), progress)
                client.flush(collection)
                cls._build_index(client, collection, index_type, params, mode, n, index_timeout)
                client.load_collection(collection)
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
        return cls(client, uri=uri, mode=mode, collection=collection, dim=d, ntotal=n,
                   index_type=index_type, index_params=params)

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
        from tqdm.auto import tqdm

        n = x.shape[0]
        with tqdm(total=n, unit="vec", desc=f"milvus insert {collection}", disable=not progress) as bar:
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

        Exclusion is a Milvus filter (``id not in [...]``) applied inside the search. Queries sharing
        an exclusion set go in one call of at most ``query_batch`` queries. A query that comes back
        short of k rows is asked again: IVF with nprobe doubled up to nlist; then, for any kind,
        unfiltered for k + excluded rows with the exclusion applied here (Milvus 2.3.5's filtered
        HNSW returned 1 row for some filters whatever ef was); ``fallbacks`` counts those.
        """
        if self._dropped:
            raise RecvecError(f"Milvus collection {shown(self.collection)} at {self.uri} was dropped")
        q = _check_queries(queries, self._dim)
        n = q.shape[0]
        sets = _exclusion_sets(exclude, n, self._ntotal)
        k = _check_k(k, self._ntotal, sets)
        params = self._search_params(k, ef_search, nprobe)
        out_rows = np.full((n, k), -1, dtype=np.int64)
        out_scores = np.full((n, k), -np.inf, dtype=np.float32)
        got = np.zeros(n, dtype=np.int64)
        groups: dict[bytes | None, list[int]] = {}
        for i, rows in enumerate(sets):
            groups.setdefault(None if rows is None else rows.tobytes(), []).append(i)
        with _milvus_errors(f"searching collection {shown(self.collection)} at {self.uri}"):
            for members in groups.values():
                excl = sets[members[0]]
                expr = exclusion_filter(excl)
                p = dict(params)
                if "ef" in p and excl is not None:
                    p["ef"] = hnsw_ef(p["ef"], k, excl.size)
                for start in range(0, len(members), self.query_batch):
                    idx = members[start:start + self.query_batch]
                    hits = self._search_call(q[idx], k, expr, p)
                    for qi, row_hits in zip(idx, hits):
                        got[qi] = self._fill(out_rows[qi], out_scores[qi], row_hits, None)
                short = [qi for qi in members if got[qi] < k]
                if short:
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
