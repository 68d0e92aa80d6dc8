"""What the backends that serve an index from a database (Milvus, PostgreSQL + pgvector) share:
credentials kept out of manifests and messages, the versioned names that make rebuilds swap
atomically, and the spot check that an opened collection holds the artifact's vectors.

- **Credentials** come from the environment or the URI, never from the artifact: :func:`split_credentials`
  takes ``user:password@`` (or a ``password=`` keyword of a PostgreSQL DSN) out of a URI, so the
  manifest records the URI without it, and :func:`masked` shows a URI in messages with the password
  as ``***``.
- **Rebuilds.** A build loads a *new* collection / table named :func:`versioned_name` (the name the
  user gave plus ``_r`` and 10 hex digits), fully, before the artifact is published pointing at it;
  only then does ``Backend.retire`` drop the one the previous artifact at that destination pointed
  at (if recvec created it). A reader of the old artifact never sees a half-loaded collection.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from recvec.errors import RecvecError

#: The suffix a build adds to the collection / table name it is given.
VERSION_SUFFIX = re.compile(r"_r[0-9a-f]{10}$")
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def versioned_name(name: str) -> str:
    """``name`` + ``_r`` + 10 random hex digits (a previous suffix is replaced, not stacked)."""
    return f"{VERSION_SUFFIX.sub('', name)}_r{uuid.uuid4().hex[:10]}"


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """``(uri without password, user, password)`` for ``scheme://user:password@host/...`` or a
    ``key=value`` DSN with ``password=...``; user/password None when the URI holds none."""
    text = str(uri).strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.password is None and "@" not in parts.netloc:
            return text, None, None
        user, password = parts.username, parts.password
        host = parts.netloc.rsplit("@", 1)[1]
        netloc = f"{parts.netloc.rsplit('@', 1)[0].split(':', 1)[0]}@{host}" if user else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), user, password
    m = _KV_PASSWORD.search(text)
    if not m:
        return text, None, None
    password = m.group(2)
    if password.startswith("'"):
        password = re.sub(r"\\(.)", r"\1", password[1:-1])
    rest = (text[:m.start()] + text[m.end():]).strip()
    return re.sub(r"\s{2,}", " ", rest), None, password


def masked(uri: Any) -> str:
    """The URI for messages: any password replaced by ``***`` (user, host, port, database kept)."""
    text = str(uri)
    if "://" in text:
        try:
            parts = urlsplit(text)
        except ValueError:
            return re.sub(r"//[^/@]*@", "//***@", text)
        if parts.password is not None:
            user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
            host = parts.netloc.rsplit("@", 1)[1]
            return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
        return text
    return _KV_PASSWORD.sub(lambda m: m.group(1) + "***", text)


def scrub(message: str, secret: str | None) -> str:
    """``message`` with ``secret`` (a password or token) replaced by ``***``."""
    return message.replace(secret, "***") if secret else message


def spot_check(ix: Any, vectors: np.ndarray | None, what: str, *, exact: bool) -> None:
    """RecvecError unless ``ix`` holds ``vectors``: same shape, and (``exact`` kinds) a few rows searched
    for themselves score exactly as the stored vectors say (tolerance: float32 noise)."""
    rebuilt = "; was it rebuilt or replaced since this artifact was written? Rebuild the artifact"
    if vectors is None or vectors.shape != (ix.ntotal, ix.dim):
        shape = None if vectors is None else vectors.shape
        raise RecvecError(f"{what} holds {ix.ntotal} x {ix.dim} vectors, the artifact's item vectors are "
                          f"{shape}{rebuilt}")
    if not exact:
        return  # quantised indexes (SQ8, PQ) return approximate scores: nothing exact to compare
    n = ix.ntotal
    rows = np.unique(np.linspace(0, n - 1, num=min(n, 3)).astype(np.int64))
    got_rows, got_scores = ix.search(vectors[rows], int(min(n, 5)))
    q, v = vectors[rows].astype(np.float64), vectors[got_rows].astype(np.float64)
    want = np.einsum("qd,qkd->qk", q, v)
    scale = np.linalg.norm(q, axis=1, keepdims=True) * np.linalg.norm(v, axis=2)  # |q.v| <= |q||v|
    bad = np.abs(got_scores.astype(np.float64) - want) > 1e-4 * scale + 1e-6
    if bad.any():
        row = int(rows[np.argwhere(bad)[0][0]])
        raise RecvecError(f"{what} does not hold this artifact's item vectors (search scores for row {row} "
                          f"disagree with item_vectors.npy){rebuilt}")


def same_place(a: dict | None, b: dict | None) -> bool:
    """Whether two manifest backend entries name the same collection at the same URI."""
    return bool(a and b and a.get("kind") == b.get("kind") and a.get("uri") == b.get("uri")
                and a.get("collection") == b.get("collection"))
