"""What ``recvec serve`` runs with: the artifact, the address, the pools and the request bounds."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from recvec.checks import C_INT_MAX, check_float, check_int
from recvec.errors import RecvecError

#: The environment variable a worker process reads its ServeConfig from (``--workers`` > 1).
CONFIG_ENV = "RECVEC_SERVE_CONFIG"
#: The environment variable holding the admin token (never written to logs or answers).
TOKEN_ENV = "RECVEC_ADMIN_TOKEN"


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask for. Counts are items / histories / characters; bytes
    are of the request body as sent."""

    max_k: int = 1000  # results per answer
    max_history: int = 10_000  # ids in one history (an ML-1M user has at most ~1,400 positives)
    max_batch: int = 256  # histories in one batch request
    max_body_bytes: int = 1 << 20  # request body (1 MiB)
    max_text_chars: int = 1000  # a free-text query
    max_ef_search: int = 4096  # HNSW efSearch (each search allocates a heap of that size)
    max_nprobe: int = 65536  # IVF lists probed (FAISS caps it at nlist)

    def __post_init__(self):
        for name in ("max_k", "max_history", "max_batch", "max_body_bytes", "max_text_chars", "max_ef_search",
                     "max_nprobe"):
            check_int(name, getattr(self, name), 1, C_INT_MAX)


@dataclass(frozen=True)
class ServeConfig:
    """One server: ``index`` a directory or ``s3://`` prefix (reloads read the same place);
    ``workers`` uvicorn worker processes (each holds its own copy of the artifact); ``threads``
    search threads per process (0: the CPUs available); ``watch_s`` seconds between checks of the
    artifact's manifest for a new version (0: only ``POST /admin/reload``; with several workers it
    defaults to 2 so every worker follows a reload); ``shutdown_timeout_s`` how long SIGTERM waits
    for requests in flight; ``inline_single``: a lone single-history request is answered on the
    event loop's thread instead of a search thread (no hand-off; under concurrency the pool answers)."""

    index: str
    endpoint_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int = 0
    watch_s: float = 0.0
    shutdown_timeout_s: float = 10.0
    access_log: bool = False
    log_level: str = "info"
    inline_single: bool = True
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self):
        if not str(self.index).strip():
            raise RecvecError("index must name an artifact directory or s3:// prefix", params=("index",))
        check_int("port", self.port, 0, 65535)
        check_int("workers", self.workers, 1, 1024)
        check_int("threads", self.threads, 0, 1024)
        check_float("watch_s", self.watch_s, 0, 86400)
        check_float("shutdown_timeout_s", self.shutdown_timeout_s, 0, 3600)

    @property
    def search_threads(self) -> int:
        """Threads of the search pool: ``threads``, else the thread policy's count (``recvec.threads``:
        $RECVEC_THREADS, else the cores this process may run on)."""
        from recvec.threads import threads

        return self.threads or threads()

    @property
    def watch_interval_s(self) -> float:
        """Seconds between manifest checks: ``watch_s``, or 2 with several workers (0: no watching)."""
        return self.watch_s or (2.0 if self.workers > 1 else 0.0)

    def to_json(self) -> str:
        """The config as JSON (what a worker process reads from $RECVEC_SERVE_CONFIG)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        """The config :meth:`to_json` wrote."""
        d = json.loads(text)
        return cls(**{**d, "limits": Limits(**d.get("limits", {}))})
