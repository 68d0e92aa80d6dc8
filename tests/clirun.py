"""The one helper the CLI tests call: ``run(*args)`` invokes ``recvec`` in process (click's
CliRunner) and checks the exit code.

``code``: the exit code wanted (None: not checked); ``ok=False`` also skips the check (the older
spelling); ``catch_exceptions=False`` lets an unexpected exception fail the test with its own
traceback instead of an exit code of 1. Arguments are passed as strings (paths, numbers).
"""

from __future__ import annotations

from click.testing import CliRunner, Result

from recvec.cli import main


def run(*args, code: int | None = 0, ok: bool = True, catch_exceptions: bool = True) -> Result:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=catch_exceptions)
    if ok and code is not None:
        assert res.exit_code == code, res.output
    return res


def run_raising(*args, code: int | None = 0, ok: bool = True) -> Result:
    """``run`` with ``catch_exceptions=False``."""
    return run(*args, code=code, ok=ok, catch_exceptions=False)
