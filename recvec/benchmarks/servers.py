"""Local database servers for the test suite and the benchmarks, each under a directory of its own
and reachable only from this machine:

- :func:`start_milvus`: the Milvus standalone server (PyPI package ``milvus``, the real Milvus
  2.3 server binary with embedded etcd and local storage, shipped compressed inside the wheel and
  unpacked under the base directory; nothing is downloaded). Every component, etcd included, is
  bound to free ports chosen here and registers itself as 127.0.0.1, so two servers can run on one
  machine and no traffic leaves the loopback interface. URI ``http://127.0.0.1:PORT``.
- :func:`start_postgres`: PostgreSQL 16 with pgvector (PyPI package ``pgserver``), listening on a
  unix socket in its data directory only (no TCP). URI ``postgresql://postgres:@/postgres?host=DIR``.

Both return a :class:`LocalServer` (``uri``, ``version``, ``start_s``, ``stop()``) once the server
answers its health check, or raise :class:`ServerUnavailable` saying why (package missing, start
failed: with the tail of the server's log). :func:`unavailable` tells why a server cannot run
without starting it. The packages are imported inside functions only.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recvec.errors import RecvecError

#: Milvus server parts and the config keys of their ports (the ``milvus`` package's template).
_MILVUS_PORT_KEYS = ("proxy_port", "proxy_internal_port", "root_coord_port", "query_coord_port", "query_node_port",
                     "index_coord_port", "index_node_port", "data_coord_port", "data_node_port")
_MILVUS_PARTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")
PACKAGES = {"milvus": "milvus==2.3.5", "pgvector": "pgserver==0.1.4"}


class ServerUnavailable(RecvecError):
    """A local server cannot be started here (the message says why)."""


@dataclass
class LocalServer:
    """A running local server: ``name`` ("milvus" / "pgvector", the backend it serves), ``uri``,
    ``version``, ``start_s`` (seconds from start to healthy), ``base_dir``, ``pid``."""

    name: str
    uri: str
    version: str
    start_s: float
    base_dir: Path
    pid: int | None
    _stop: Callable[[], None] = field(repr=False)

    def stop(self) -> None:
        """Stop the server (idempotent); its files stay under ``base_dir``."""
        stop, self._stop = self._stop, (lambda: None)
        stop()


def unavailable(name: str) -> str | None:
    """Why the local server for backend ``name`` cannot run here (None: it can be tried)."""
    module = {"milvus": "milvus", "pgvector": "pgserver"}.get(name)
    if module is None:
        return f"no local server for backend {name!r}"
    if importlib.util.find_spec(module) is None:
        return f"the {module} package is not installed (pip install '{PACKAGES[name]}')"
    if name == "pgvector" and importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    if name == "milvus" and importlib.util.find_spec("pymilvus") is None:
        return "pymilvus is not installed"
    if not os.sys.platform.startswith("linux"):
        return f"the bundled servers are run on Linux only here, not {os.sys.platform}"
    return None


#: Milvus settings that make loading a small collection quick (the query coordinator's poll
#: intervals, 1000 / 500 ms by default): for the test suite, not for measurements.
QUICK_MILVUS = {"queryCoord.checkInterval": 100, "queryCoord.distPullInterval": 100}


def start(name: str, base_dir: str | Path, *, timeout: float = 180.0, quick: bool = False) -> LocalServer:
    """Start the local server for backend ``name`` ("milvus" or "pgvector") under ``base_dir``;
    ``quick``: Milvus with :data:`QUICK_MILVUS` (tests), else its stock settings."""
    why = unavailable(name)
    if why:
        raise ServerUnavailable(why)
    if name == "milvus":
        return start_milvus(base_dir, timeout=timeout, settings=QUICK_MILVUS if quick else None)
    return start_postgres(base_dir, timeout=timeout)


# ------------------------------------------------------------------------------- Milvus


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(url, timeout=2) as resp:
            return b"OK" in resp.read()
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def start_milvus(base_dir: str | Path, *, timeout: float = 180.0, settings: dict | None = None) -> LocalServer:
    """Start a Milvus standalone server under ``base_dir`` (see the module docstring); ~10 s.
    ``settings``: config keys (``section.key``, as in milvus.yaml) to override."""
    import milvus  # the PyPI package "milvus": the server binary and its config template

    base = Path(base_dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = milvus.MilvusServerConfig()
    cfg.configs.update(data_dir=str(base))
    cfg.resolve_storage()
    ports = {key: _free_port() for key in _MILVUS_PORT_KEYS + ("etcd_port",)}
    peer, health = _free_port(), _free_port()
    for key, port in ports.items():
        cfg.configurable_items[key][1] = port
    for part in _MILVUS_PARTS:
        cfg.set(f"{part}.ip", "127.0.0.1")  # register as loopback, not the first unicast address
    for key, value in (settings or {}).items():
        cfg.set(key, value)
    for key in cfg.configurable_items:
        if cfg.configurable_items[key][1] is None:
            raise ServerUnavailable(f"milvus config item {key} unresolved")
    cfg.write_config()
    etcd_yaml = base / "configs" / "embedEtcd.yaml"
    etcd_yaml.write_text("\n".join([
        "name: recvec", f"data-dir: {base / 'data' / 'etcd.data'}",
        f"listen-client-urls: http://127.0.0.1:{ports['etcd_port']}",
        f"advertise-client-urls: http://127.0.0.1:{ports['etcd_port']}",
        f"listen-peer-urls: http://127.0.0.1:{peer}", f"initial-advertise-peer-urls: http://127.0.0.1:{peer}",
        f"initial-cluster: recvec=http://127.0.0.1:{peer}", "initial-cluster-state: new", ""]))
    conf = base / "configs" / "milvus.yaml"
    text = conf.read_text()
    anchor = "  use:\n    embed: true"
    if anchor not in text:
        raise ServerUnavailable("the milvus package's config template changed (no etcd.use.embed); pin milvus==2.3.5")
    conf.write_text(text.replace(anchor, f"  config:\n    path: {etcd_yaml}\n{anchor}", 1)
                    .replace("localhost:", "127.0.0.1:"))
    milvus._initialize_data_files(str(base))  # unpack the bundled binaries (md5-checked: once per base dir)
    exe = base / "bin" / "milvus"
    env = {**os.environ, "DEPLOY_MODE": "STANDALONE", "METRICS_PORT": str(health),
           "MILVUS_RUN_DIR": str(base / "run"),
           "LD_LIBRARY_PATH": ":".join(p for p in (str(exe.parent), os.environ.get("LD_LIBRARY_PATH", "")) if p)}
    log = base / "logs" / "milvus-stdout.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(exe), "run", "standalone"], cwd=str(base), env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{health}/healthz"
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = "exited" if proc.poll() is not None else f"not healthy after {timeout:.0f} s"
            stop()
            raise ServerUnavailable(f"Milvus server {why}; log {log}:\n{_tail(log)}")
        time.sleep(0.2)
    return LocalServer("milvus", f"http://127.0.0.1:{ports['proxy_port']}", str(milvus.__version__),
                       time.perf_counter() - t0, base, proc.pid, stop)


# ------------------------------------------------------------------------------- PostgreSQL


def start_postgres(base_dir: str | Path, *, timeout: float = 60.0) -> LocalServer:
    """Start PostgreSQL + pgvector on a unix socket under ``base_dir`` (see the module docstring); ~5 s.

    As root, pgserver runs PostgreSQL as a system user ``pgserver`` (creating it once) and makes the
    directories above ``base_dir`` traversable for it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: "XDG_RUNTIME_DIR is not set"
        import pgserver

    base = Path(base_dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            srv = pgserver.get_server(base, cleanup_mode="stop")
    except Exception as e:  # initdb / pg_ctl failures
        raise ServerUnavailable(f"PostgreSQL (pgserver) did not start under {base}: {e}\n"
                                f"{_tail(base / 'log')}") from None
    uri = srv.get_uri()
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(uri, autocommit=True, connect_timeout=5) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                version = conn.execute("SHOW server_version").fetchone()[0]
                vector = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
            break
        except psycopg.Error as e:
            if time.monotonic() > deadline:
                srv.cleanup()
                raise ServerUnavailable(f"PostgreSQL under {base} did not answer: {e}") from None
            time.sleep(0.2)

    return LocalServer("pgvector", uri, f"PostgreSQL {version}, pgvector {vector}", time.perf_counter() - t0,
                       base, srv.get_pid(), srv.cleanup)
