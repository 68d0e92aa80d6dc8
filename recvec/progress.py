"""Progress of long work, on a terminal or not.

On a terminal (stderr is a TTY) a tqdm bar; otherwise (``nohup``, CI, ``2> log``) a plain line at
most every ``PLAIN_EVERY_S`` seconds and one at the end: ``[stage] done/total (rate/s, ETA)``.
``enabled=False`` (the CLI's ``--quiet``) silences both. Both forms offer tqdm's ``update``,
``set_postfix`` and ``close`` and work as context managers.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

#: Seconds between plain progress lines (the first comes after this long, the last at the end).
PLAIN_EVERY_S = 10.0
#: Work that ends sooner than this without having printed a line prints none at all.
PLAIN_QUIET_BELOW_S = 1.0


def _fmt_s(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes}m{s:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class PlainProgress:
    """Progress lines for a log: ``[desc] done/total unit (rate unit/s, ETA ...)``, at most every
    ``every`` seconds (default PLAIN_EVERY_S; time from ``clock``, for tests) and once on ``close``
    (not for work that took under PLAIN_QUIET_BELOW_S and printed nothing)."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", *, file: TextIO | None = None,
                 every: float | None = None, clock=time.monotonic):
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file if file is not None else sys.stderr
        self.every, self.clock = float(PLAIN_EVERY_S if every is None else every), clock
        self.printed = 0
        self.n = 0
        self.postfix = ""
        self._start = self._last = clock()
        self._closed = False

    def line(self) -> str:
        """The line as it would be printed now."""
        elapsed = self.clock() - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        done = f"{self.n:,}/{self.total:,}" if self.total else f"{self.n:,}"
        parts = [f"{rate:,.1f} {self.unit}/s"]
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {_fmt_s((self.total - self.n) / rate)}")
        parts.append(f"elapsed {_fmt_s(elapsed)}")
        extra = f" {self.postfix}" if self.postfix else ""
        return f"[{self.desc or 'progress'}] {done} {self.unit} ({', '.join(parts)}){extra}"

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            self.printed += 1
            print(self.line(), file=self.file, flush=True)

    def set_postfix(self, info: dict | None = None, refresh: bool = True, **kw: Any) -> None:
        items = {**(info or {}), **kw}
        self.postfix = " ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.printed or self.clock() - self._start >= PLAIN_QUIET_BELOW_S:
                print(self.line(), file=self.file, flush=True)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Silent:
    """No output at all (``--quiet``)."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += int(n)

    def set_postfix(self, *a: Any, **kw: Any) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress(total: int | None = None, desc: str = "", unit: str = "it", *, enabled: bool = True,
             file: TextIO | None = None) -> Any:
    """A progress reporter for ``total`` steps: a tqdm bar on a terminal, PlainProgress lines
    otherwise, nothing when not ``enabled``."""
    if not enabled:
        return _Silent()
    out = file if file is not None else sys.stderr
    if hasattr(out, "isatty") and out.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=out)
    return PlainProgress(total, desc, unit, file=out)
