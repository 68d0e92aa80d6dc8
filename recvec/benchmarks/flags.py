"""Comma-list values of the bench commands' flags (``--ef-search 16,64``, ``--indexes flat,hnsw``),
parsed and checked with errors that name the flag.
"""

from __future__ import annotations

from collections.abc import Sequence

from recvec.checks import C_INT_MAX
from recvec.errors import RecvecError, shorten, shown


def parse_ints(text: str | Sequence[int] | None, flag: str) -> tuple[int, ...] | None:
    """'16,32,64' -> (16, 32, 64); None/'' -> None. Also takes a sequence; '_' separators and
    integral floats ('1e3') are accepted.

    Raises RecvecError naming ``flag`` when a value is not an integer, is outside 1..C_INT_MAX, or
    no value is given."""
    if text is None or text == "":
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for p in parts:
        p = str(p).strip().replace("_", "")
        if not p:
            continue
        try:
            f = float(p)
        except ValueError:
            raise RecvecError(f"{flag}: {shown(p)} is not an integer (use e.g. {flag} 10,20)") from None
        if not f.is_integer():
            raise RecvecError(f"{flag}: {shown(p)} is not an integer (use e.g. {flag} 10,20)")
        v = int(f)
        if not 1 <= v <= C_INT_MAX:
            raise RecvecError(f"{flag}: values must be integers from 1 to {C_INT_MAX:,}, got {shorten(p)}")
        out.append(v)
    if not out:
        raise RecvecError(f"{flag}: no values given")
    return tuple(out)


def parse_names(text: str | Sequence[str] | None, flag: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    """'flat, hnsw' -> ('flat', 'hnsw') (blanks dropped). Also takes a sequence.

    Raises RecvecError naming ``flag`` when no name is given or (with ``allowed``) a name is not
    one of ``allowed``."""
    parts = text.split(",") if isinstance(text, str) else list(text or ())
    out = tuple(p.strip() for p in parts if p.strip())
    if not out:
        raise RecvecError(f"{flag}: no values given")
    if allowed is not None:
        bad = [p for p in out if p not in allowed]
        if bad:
            raise RecvecError(f"{flag}: unknown {', '.join(map(repr, bad))}; choose from {', '.join(allowed)}")
    return out
