"""Where an artifact may be published, and what may be deleted there: recvec replaces only what it
wrote. Locally a destination must be absent, empty, or a recvec artifact whose manifest lists every
file in it; on S3 every object under the prefix must be accounted for by the live manifest or by an
upload journal (``.recvec-upload.<tag>.json``, written before any file of an upload), and clean-up
after a publish deletes only names those record."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from recvec.engine import storage
from recvec.errors import ArtifactError, RecvecError, shorten, shorten_path
from recvec.indexes.manifest import MANIFEST, parse_manifest

_log = logging.getLogger(__name__)


def os_reason(e: OSError, where: Path) -> str:
    """'Permission denied: /path' -- the OS's reason and the path it names (where, if none)."""
    path = e.filename if e.filename is not None else where
    return f"{e.strerror or type(e).__name__}: {shorten_path(path)}"


def check_replaceable(final: Path) -> None:
    """Refuse to publish over a local directory that is not a recvec artifact.

    Publishing replaces the destination whole, so it may only stand where nothing is, where an
    empty directory is, or where a recvec artifact is whose manifest lists every file in it (its
    ``manifest.json`` parses and nothing else is there). Anything else -- a file, a symbolic link,
    a folder of the user's own files, an artifact with files added to it -- raises ArtifactError
    naming what is in the way; nothing is touched."""
    for above in final.parents:
        if os.path.lexists(above):
            if not above.is_dir():
                raise ArtifactError(f"cannot write an artifact to {shorten_path(final)}: {shorten_path(above)} "
                                    "is a file, not a directory")
            break
    if not os.path.lexists(final):
        return
    if final.is_symlink() or not final.is_dir():
        kind = "a symbolic link" if final.is_symlink() else "a file"
        raise ArtifactError(f"cannot write an artifact to {final}: it exists and is {kind}, not a directory; "
                            "choose another destination")
    try:
        entries = sorted(p.name for p in final.iterdir())
    except OSError as e:
        raise ArtifactError(f"cannot write an artifact to {final}: {os_reason(e, final)}") from None
    if not entries:
        return
    refuse = (f"refusing to replace {final}: it is not a recvec artifact ({{why}}), and publishing an artifact "
              "replaces the whole directory; nothing was changed. Choose a new or empty directory")
    if MANIFEST not in entries:
        raise ArtifactError(refuse.format(why=f"no {MANIFEST}; it holds {listed_names(entries)}"))
    try:
        listed = set(parse_manifest((final / MANIFEST).read_bytes(), str(final / MANIFEST))["files"])
    except OSError as e:
        raise ArtifactError(f"cannot write an artifact to {final}: {os_reason(e, final / MANIFEST)}") from None
    except RecvecError as e:
        raise ArtifactError(refuse.format(why=f"its {MANIFEST} is not a recvec manifest: {e}")) from None
    foreign = [n for n in entries if n != MANIFEST and n not in listed]
    if foreign:
        raise ArtifactError(refuse.format(why=f"its manifest does not list {listed_names(foreign)}, which recvec did "
                                              "not write; move them out first"))


def listed_names(names: list[str], limit: int = 5) -> str:
    """Up to ``limit`` names (each cut to 60 characters), comma-separated, with "and N more" for the rest."""
    shown = ", ".join(shorten(n, 60) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


JOURNAL_PREFIX = ".recvec-upload."
JOURNAL = re.compile(r"^\.recvec-upload\.[0-9a-f]{12}\.json$")


def s3_prefix_state(dest: str, client: Any) -> tuple[set[str] | None, list[str], set[str]]:
    """(files the live manifest lists or None when there is no manifest, the upload journals there,
    the names those journals record) for an S3 artifact prefix; raises ArtifactError when the prefix
    holds an object that is none of these (not recvec's: it must not be overwritten or deleted)."""
    present = storage.list_files(dest, client=client)
    live = live_s3_files(dest, client) if MANIFEST in present else None
    journals = [n for n in present if JOURNAL.match(n)]
    recorded: set[str] = set()
    for name in journals:
        try:
            j = json.loads(storage.read_bytes(f"{dest.rstrip('/')}/{name}", client=client).decode("utf-8"))
            recorded |= {n for key in ("writes", "replaces") for n in j.get(key, []) if isinstance(n, str)}
        except (storage.StorageError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue  # unreadable: the names it would have covered count as foreign below
    accounted = {MANIFEST, *(live or ()), *journals, *recorded}
    foreign = [n for n in present if n not in accounted]
    if foreign:
        why = "its manifest does not list" if live is not None else f"it has no {MANIFEST} and holds"
        raise ArtifactError(f"refusing to write an artifact to {dest}: it is not a recvec artifact prefix "
                            f"({why} {listed_names(foreign)}, which recvec did not write); nothing was changed. "
                            "Choose an empty prefix")
    return live, journals, recorded


def live_s3_files(dest: str, client: Any) -> set[str]:
    """The files the manifest now at dest lists; an empty set when it cannot be read or parsed
    (protect it, delete nothing of it)."""
    where = f"{dest.rstrip('/')}/{MANIFEST}"
    try:
        raw = storage.read_bytes(where, client=client)
    except storage.StorageError as e:
        if e.code == "AccessDenied":  # write-only credentials: assume an artifact may be there
            return set()
        raise
    try:
        return set(parse_manifest(raw, where)["files"])
    except RecvecError:
        return set()


def remove_stale_s3(dest: str, client: Any, *, stale: set[str], journals: set[str]) -> None:
    """After publishing: delete the previous version's files and what killed uploads recorded in their
    journals (``stale``, never a name the new manifest lists), then the journals. Nothing else under
    the prefix is touched. The new artifact is live already, so a failure is logged, not raised."""
    try:
        present = set(storage.list_files(dest, client=client))
        storage.delete_files(dest, sorted(stale & present), client=client)
        storage.delete_files(dest, sorted(journals & present), client=client)
    except RecvecError as e:
        _log.warning("published %s, but could not remove the previous version's files: %s", dest, e)


