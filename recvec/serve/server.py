"""Running the application on uvicorn: the listening socket, one process or several workers,
logging, and graceful shutdown.

SIGTERM or SIGINT stops accepting connections, lets the requests in flight finish (up to
``shutdown_timeout_s``), shuts the application down and returns; the process then exits 0. With
``workers`` > 1 uvicorn's supervisor starts that many processes on the one socket, each loading the
artifact and watching its manifest (``ServeConfig.watch_interval_s``); their metrics are shared
through a temporary directory removed at exit.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from contextlib import contextmanager

from recvec.errors import RecvecError
from recvec.serve.config import CONFIG_ENV, ServeConfig
from recvec.serve.holder import IndexHolder

BACKLOG = 2048


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); RecvecError naming ``port``/``host``
    when the address cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)  # connections queue from now on, before uvicorn accepts them
    except OSError as e:
        sock.close()
        raise RecvecError(f"cannot listen on {host}:{port}: {e.strerror or e}", params=("host", "port")) from None
    except (OverflowError, UnicodeError, ValueError) as e:
        sock.close()
        raise RecvecError(f"cannot listen on {host}:{port}: {e}", params=("host", "port")) from None
    sock.set_inheritable(True)
    return sock


def log_config(level: str) -> dict:
    """uvicorn's logging config with the ``recvec`` loggers on its stderr handler."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"]["recvec"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return cfg


@contextmanager
def _signals_end_the_server():
    """uvicorn re-raises the signal that stopped it once it has shut down; a no-op handler in place
    meanwhile lets the process exit 0 after a graceful stop instead of dying of the signal."""
    noted = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in noted.items():
            signal.signal(sig, handler)


def _uvicorn_options(config: ServeConfig) -> dict:
    return {"log_config": log_config(config.log_level), "log_level": config.log_level,
            "access_log": config.access_log, "timeout_graceful_shutdown": config.shutdown_timeout_s or None,
            "lifespan": "on", "server_header": False, "backlog": BACKLOG}


def serve(config: ServeConfig, holder: IndexHolder, *, announce: Callable[[str], None] = print) -> None:
    """Serve ``holder`` (already loaded: a bad artifact fails before anything listens) until SIGTERM
    or SIGINT; ``announce(url)`` is called once the socket listens. With ``config.workers`` > 1 the
    holder only checked the artifact: each worker loads its own. RecvecError when the address cannot
    be had or the server does not start."""
    import uvicorn

    sock = bind_socket(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    if config.workers == 1:
        from recvec.serve.app import create_app

        server = uvicorn.Server(uvicorn.Config(create_app(config, holder), **_uvicorn_options(config)))
        announce(url)
        with _signals_end_the_server():
            server.run(sockets=[sock])
        if not server.started:
            raise RecvecError("the server did not start (see the log above)")
        return
    from uvicorn.supervisors import Multiprocess

    holder.close()  # each worker loads its own copy
    shared = tempfile.mkdtemp(prefix="recvec-serve-metrics-")
    os.environ[CONFIG_ENV] = config.to_json()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    try:
        ucfg = uvicorn.Config("recvec.serve.app:app_from_env", factory=True, workers=config.workers,
                              **_uvicorn_options(config))
        announce(url)
        Multiprocess(ucfg, sockets=[sock]).run()
    finally:
        sock.close()
        shutil.rmtree(shared, ignore_errors=True)
