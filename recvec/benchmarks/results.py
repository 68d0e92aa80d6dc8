"""Stored raw benchmark results: one directory per unit of work, its path derived from its parameters.

A unit is (group, params): e.g. group ``"ml-1m/search"`` and params ``{"index": "hnsw32",
"ef_search": 64, ...}``. It is stored as ``ROOT/raw/<group>/<label>-<hash>/`` holding
``meta.json`` (the params, the machine it ran on, scalar results) and one ``.npy`` file per array
(per-query ids, latencies; loaded with ``allow_pickle=False``). The hash is of the canonical JSON of
the params, so rerunning a sweep with the same parameters finds the units already done (an
interrupted run resumes) and ``force`` reruns them. A unit is written to a temporary sibling and
renamed into place, so a killed run never leaves a half-written unit that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recvec.errors import RecvecError, shown

META = "meta.json"
_SAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")


def canonical(params: dict) -> str:
    """The params as canonical JSON (sorted keys, no spaces); numpy scalars become Python numbers."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def params_hash(params: dict) -> str:
    """12 hex digits of the SHA-256 of the params' canonical JSON (key order does not matter)."""
    return hashlib.sha256(canonical(params).encode("utf-8")).hexdigest()[:12]


def slug(text: str) -> str:
    """``text`` safe as a file name: runs of other characters than letters, digits and ``_.=+-``
    become ``_``; at most 80 characters; "unit" if nothing is left."""
    return _SAFE.sub("_", str(text)).strip("_")[:80] or "unit"


@dataclass(frozen=True)
class Stored:
    """One stored unit: its group, params, scalar results (``meta``) and arrays (read lazily, or all
    at once by :meth:`loaded`)."""

    group: str
    path: Path
    meta: dict
    _arrays: dict = field(default_factory=dict, repr=False, compare=False)
    _all_read: bool = field(default=False, repr=False, compare=False)

    @property
    def params(self) -> dict:
        """The unit's params, as stored in its meta (``{}`` when absent)."""
        return self.meta.get("params", {})

    def array(self, name: str) -> np.ndarray:
        """The stored array ``name``; RecvecError if the unit has none of that name."""
        if name not in self._arrays:
            p = self.path / f"{name}.npy"
            if self._all_read or not p.is_file():
                raise RecvecError(f"stored result {self.path} has no array {shown(name)}")
            self._arrays[name] = np.load(p, allow_pickle=False)
        return self._arrays[name]

    def has_array(self, name: str) -> bool:
        """Whether the unit stores an array ``name`` (its ``.npy`` file; after :meth:`loaded`, among
        the arrays read)."""
        if self._all_read:
            return name in self._arrays
        return (self.path / f"{name}.npy").is_file()

    def loaded(self) -> Stored:
        """This unit with every array read into memory: its ``array``/``has_array`` touch no file."""
        arrays = {p.stem: np.load(p, allow_pickle=False) for p in sorted(self.path.glob("*.npy"))}
        return Stored(self.group, self.path, self.meta, arrays, True)

    @property
    def measured_at(self) -> float:
        """When the unit was stored (its meta file's mtime, seconds since the epoch)."""
        return (self.path / META).stat().st_mtime


class ResultStore:
    """Raw results under ``root/raw``; see the module doc."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.raw = self.root / "raw"

    def path(self, group: str, params: dict) -> Path:
        """The unit's directory: ``raw/<group>/<label>-<hash of params>``."""
        label = params.get("label") or params.get("name") or "unit"
        parts = [slug(p) for p in str(group).split("/") if p]
        return self.raw.joinpath(*parts) / f"{slug(label)}-{params_hash(params)}"

    def has(self, group: str, params: dict) -> bool:
        """Whether the unit is stored (complete)."""
        return (self.path(group, params) / META).is_file()

    def save(self, group: str, params: dict, meta: dict, arrays: dict[str, np.ndarray] | None = None) -> Stored:
        """Write a unit atomically (replacing an existing one); returns it."""
        dest = self.path(group, params)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            for name, a in (arrays or {}).items():
                if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                    raise RecvecError(f"array name {shown(name)}: use letters, digits and _")
                a = np.asarray(a)
                if a.dtype == object:
                    raise RecvecError(f"array {shown(name)} has dtype object; store numbers only (no pickle)")
                np.save(tmp / f"{name}.npy", a, allow_pickle=False)
            body = {"group": group, "params": params, **meta}
            (tmp / META).write_text(json.dumps(body, indent=1, sort_keys=True, default=_jsonable) + "\n")
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Stored(group, dest, json.loads((dest / META).read_text()))

    def load(self, group: str, params: dict) -> Stored:
        """The stored unit; RecvecError if it is not stored or unreadable."""
        p = self.path(group, params)
        if not (p / META).is_file():
            raise RecvecError(f"no stored result for {group} {canonical(params)} (expected {p})")
        return self.load_path(p)

    def get(self, group: str, params: dict) -> Stored | None:
        """The stored unit, or None if it is not stored."""
        return self.load(group, params) if self.has(group, params) else None

    @staticmethod
    def load_path(path: str | Path) -> Stored:
        """The unit stored in directory ``path``; RecvecError if its meta.json is missing or invalid."""
        p = Path(path)
        try:
            meta = json.loads((p / META).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise RecvecError(f"cannot read stored result {p / META}: {e}") from None
        return Stored(meta.get("group", ""), p, meta)

    def units(self, group: str | None = None) -> Iterator[Stored]:
        """Every complete unit (optionally of one group), in path order."""
        base = self.raw
        if not base.is_dir():
            return
        for meta in sorted(base.rglob(META)):
            if any(part.startswith(".") for part in meta.parent.relative_to(base).parts):
                continue  # an unfinished temporary unit
            s = self.load_path(meta.parent)
            if group is None or s.group == group:
                yield s

    def groups(self) -> list[str]:
        """The groups of every complete unit, sorted."""
        return sorted({s.group for s in self.units()})
