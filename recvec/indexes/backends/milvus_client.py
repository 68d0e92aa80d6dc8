"""Milvus without a collection in hand: URIs, collection names, index and search parameters, the
marker recvec puts on its collections, and the pymilvus connection and error plumbing (pymilvus
is imported inside functions only)."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from recvec.errors import RecvecError, shown
from recvec.indexes.backends.base import check_k
from recvec.indexes.backends.base import hnsw_ef as base_hnsw_ef
from recvec.indexes.backends.served import masked, scrub, split_credentials
from recvec.indexes.spec import IndexSpec

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
#: is in a sealed segment, and a "Strong" search waits for the server's time tick on every call
#: (measured as the dominant cost of a search on a Milvus standalone server).
SEARCH_CONSISTENCY = "Bounded"
PIP_HINT = "pip install 'pymilvus==3.0.2' 'milvus-lite==3.2.2'"

_COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_SERVER_URI = re.compile(r"^(https?|tcp)://[^/\s]+", re.IGNORECASE)
# Keys of a describe_index answer that are not build parameters.
_INDEX_META_KEYS = {"index_type", "metric_type", "field_name", "index_name", "total_rows", "indexed_rows",
                    "pending_index_rows", "state", "params", "search_params", "mmap.enabled"}


def milvus_available() -> bool:
    """True when pymilvus is importable (Milvus Lite ``.db`` URIs also need the milvus-lite package)."""
    return importlib.util.find_spec("pymilvus") is not None


# -- URIs, names, parameters (no pymilvus needed) -----------------------------------------------

def resolve_uri(uri: str | os.PathLike[str]) -> tuple[str, str]:
    """``(uri, mode)``: mode "lite" for a ``.db`` path (made absolute) or "server" for http(s)://
    (any ``user:password@`` taken out: see :func:`uri_token`)."""
    if not isinstance(uri, (str, os.PathLike)):
        raise RecvecError(f"Milvus URI must be a string, got {type(uri).__name__}")
    text = os.fspath(uri).strip()
    if _SERVER_URI.match(text):
        scheme, rest = text.split("://", 1)
        host = rest.split("/", 1)[0]
        if "@" in host:  # user:password@ travels as the token, never in the URI
            rest = rest.replace(host, host.rsplit("@", 1)[1], 1)
        return f"{scheme}://{rest}".rstrip("/"), "server"
    if "://" in text:
        raise RecvecError(f"Milvus URI {shown(masked(text))}: unsupported scheme; use a local FILE.db path (Milvus Lite) "
                          "or http://HOST:19530 (Milvus server)")
    if not text.endswith(".db"):
        raise RecvecError(f"Milvus URI {shown(text)}: use a local path ending in .db (Milvus Lite) "
                          "or http://HOST:19530 (Milvus server)")
    path = os.path.abspath(os.path.expanduser(text))
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise RecvecError(f"Milvus Lite URI {shown(text)}: folder {parent} does not exist")
    return path, "lite"


def uri_token(uri: str | os.PathLike[str]) -> str | None:
    """The ``user:password`` a server URI carries (``http://user:password@host:19530``), else None."""
    text = os.fspath(uri).strip() if isinstance(uri, (str, os.PathLike)) else ""
    if not _SERVER_URI.match(text):
        return None
    _, user, password = split_credentials(text)
    return None if user is None and not password else f"{user or ''}:{password or ''}"


def default_insert_batch(d: int) -> int:
    """Rows per insert call: about 8 MiB of vectors (Milvus caps a request at 64 MiB), at most 50,000."""
    return int(max(1, min(50_000, (8 << 20) // (4 * max(1, int(d)) + 8))))


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
        raise RecvecError(scrub(f"cannot connect to Milvus at {masked(uri)}: {_message(e)}{hint}", token),
                          params=("uri",)) from None
    finally:
        lite_log.setLevel(level)


def _check_k(k: Any, ntotal: int, excl: list[np.ndarray] | None) -> int:
    """k as every backend takes it (``base.check_k``), and within Milvus's cap on results."""
    k = check_k(k, ntotal, excl)
    if k > MAX_TOP_K:
        raise RecvecError(f"k={k} is above Milvus's limit of {MAX_TOP_K} results per query")
    return k


def overfetch_limit(k: int, n_excluded: int) -> int:
    """Results an unfiltered HNSW search asks for so that k remain after dropping ``n_excluded``:
    k + n_excluded rounded up to a power of two (few distinct limits: queries batch), within MAX_TOP_K."""
    need = int(k) + int(n_excluded)
    return int(min(MAX_TOP_K, 1 << max(0, need - 1).bit_length()))


def hnsw_ef(ef: int, k: int, n_excluded: int) -> int:
    """ef for a filtered HNSW query: ``base.hnsw_ef`` (k + excluded, as pgvector; FAISS walks at
    ``base.walk_ef``), within Milvus's cap."""
    return int(min(MAX_HNSW_EF, base_hnsw_ef(ef, k, n_excluded)))


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


def retire_collection(uri: str, collection: str) -> str | None:
    """Drop ``collection`` at ``uri`` if it exists and recvec created it (``MilvusBackend.retire``);
    never raises: returns what was done (None: nothing there)."""
    try:
        uri, mode = resolve_uri(uri)
        if mode == "lite" and not os.path.exists(uri):
            return None
        client = _connect(uri, mode, None, 30.0)
    except RecvecError as e:
        return f"previous collection {collection} left in place ({e})"
    try:
        with _milvus_errors(f"dropping the previous collection {shown(collection)} at {uri}"):
            if not client.has_collection(collection):
                return None
            if not _written_by_recvec(client.describe_collection(collection)):
                return f"previous collection {collection} left in place: recvec did not create it"
            client.drop_collection(collection)
    except RecvecError as e:
        return f"previous collection {collection} left in place ({e})"
    finally:
        client.close()
    return f"dropped the previous collection {collection}"


def check_lite_location(uri: str, dest) -> None:
    """Refuse a Milvus Lite database inside the artifact directory (publishing replaces that directory)."""
    if "://" in str(uri) or str(dest).startswith("s3://"):
        return
    db, out = Path(uri).resolve(), Path(dest).resolve()
    if db == out or out in db.parents:
        raise RecvecError(f"the Milvus Lite database {db} is inside the artifact directory {out}, which is "
                          "replaced on every build; put the .db file outside the artifact", params=("uri",))
