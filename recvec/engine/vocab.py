"""Vocabulary: external ids <-> contiguous rows (lenskit's Vocabulary, reduced).

Ids are int64 or strings (numpy unicode 'U'), one kind per vocabulary. A lookup takes ids of the
vocabulary's kind; an id of the other kind (the string "42" for integer ids, the number 42 for
string ids) is simply not in it, reported like any unknown id."""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from recvec.errors import UnknownIdError, shown

_INT64_MAX = np.iinfo(np.int64).max
_INT_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*")


def _as_id_array(ids) -> np.ndarray:
    """ids as a 1-d int64 or 'U' array (object arrays of str become 'U'); ValueError otherwise."""
    arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids)).ravel()
    if arr.dtype.kind == "U":
        return arr
    if arr.dtype.kind == "O" and arr.size and all(isinstance(x, str) for x in arr.tolist()):
        return arr.astype(str)
    if arr.size == 0 or arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.size and int(arr.max()) > _INT64_MAX:
            raise ValueError("ids must fit in int64")
        return arr.astype(np.int64)
    raise ValueError(f"ids must be integers or strings, got {arr.dtype}")


class Vocabulary:
    """An ordered set of external ids (int64, or strings as a numpy 'U' array); row i holds ids[i].

    Lookups of unknown ids raise UnknownIdError naming them, unless ``missing="skip"``/``"mask"``.
    """

    def __init__(self, ids: Iterable, *, kind: str = "item"):
        arr = _as_id_array(ids)
        if len(np.unique(arr)) != len(arr):
            raise ValueError(f"{kind} vocabulary ids must be unique")
        self.kind = kind
        self._ids = arr
        self._ids.setflags(write=False)
        self._strings = arr.dtype.kind == "U"
        self._sorter = np.argsort(arr, kind="stable")
        self._sorted = arr[self._sorter]
        # Small non-negative ids (MovieLens's are < 300k) get a dense id -> row table: one gather per
        # lookup instead of a binary search (a query-time history lookup drops from ~10 to ~3 us).
        self._table: np.ndarray | None = None
        if not self._strings and len(arr) and self._sorted[0] >= 0 \
                and self._sorted[-1] < max(1 << 16, 8 * len(arr)):
            self._table = np.full(int(self._sorted[-1]) + 1, -1, dtype=np.int64)
            self._table[arr] = np.arange(len(arr), dtype=np.int64)

    @classmethod
    def from_first_appearance(cls, values: np.ndarray, *, kind: str = "item") -> "Vocabulary":
        """Ids in order of first appearance (the lab's mapping)."""
        _, first = np.unique(values, return_index=True)
        return cls(values[np.sort(first)], kind=kind)

    @property
    def ids(self) -> np.ndarray:
        """The external ids in row order: a read-only int64 or 'U' array of shape (len(self),)."""
        return self._ids

    @property
    def string_ids(self) -> bool:
        """Whether the ids are strings (else int64)."""
        return self._strings

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return bool(self.rows([external_id], missing="mask")[0] >= 0)

    def _keys(self, ids) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(the given ids as an array, the same as keys of this vocabulary's dtype, a mask of the
        ids that cannot be of its kind or None when all can)."""
        arr = np.asarray(ids).ravel()
        kind = arr.dtype.kind
        if self._strings:
            if kind == "U":
                return arr, arr, None
            if kind == "O":
                bad = np.fromiter((not isinstance(x, str) for x in arr.tolist()), bool, len(arr))
                return arr, np.where(bad, "", arr).astype(str), bad if bad.any() else None
            return arr, np.zeros(len(arr), dtype="U1"), np.ones(len(arr), bool) if arr.size else None
        if kind == "i" or (kind == "f" and not arr.size):
            return arr, arr.astype(np.int64, copy=False), None
        if kind == "u":
            bad = arr > _INT64_MAX
            return arr, np.where(bad, 0, arr).astype(np.int64), bad if bad.any() else None
        if kind == "f":
            bad = ~(np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2.0**63))
            return arr, np.where(bad, 0, arr).astype(np.int64), bad if bad.any() else None
        if kind == "O":
            ok = [not isinstance(x, (bool, np.bool_)) and isinstance(x, (int, np.integer))
                  and -_INT64_MAX - 1 <= x <= _INT64_MAX for x in arr.tolist()]
            bad = ~np.asarray(ok, dtype=bool)
            keys = np.asarray([x if good else 0 for x, good in zip(arr.tolist(), ok)], dtype=np.int64)
            return arr, keys, bad if bad.any() else None
        return arr, np.zeros(len(arr), np.int64), np.ones(len(arr), bool) if arr.size else None

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        if self._table is not None:
            if not ids.size or (ids.min() >= 0 and ids.max() < len(self._table)):
                return self._table[ids]
            inside = (ids >= 0) & (ids < len(self._table))
            return np.where(inside, self._table[np.where(inside, ids, 0)], -1)
        if not len(self._sorted):
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.searchsorted(self._sorted, ids)
        pos_c = np.minimum(pos, len(self._sorted) - 1)
        found = (pos < len(self._sorted)) & (self._sorted[pos_c] == ids)
        return np.where(found, self._sorter[pos_c], -1).astype(np.int64)

    def rows(self, ids, *, missing: str = "error") -> np.ndarray:
        """Rows of external ids. missing: 'error' (raise UnknownIdError naming them), 'skip' (drop),
        'mask' (-1). An id of the other kind than the vocabulary's counts as unknown."""
        if missing not in ("error", "skip", "mask"):
            raise ValueError(f"missing must be error|skip|mask, not {shown(missing)}")
        given, keys, wrong = self._keys(ids)
        rows = self._lookup(keys)
        if wrong is not None:
            rows = np.where(wrong, -1, rows)
        bad = rows < 0
        if bad.any():
            if missing == "error":
                raise UnknownIdError(self.kind, given[bad].tolist())
            if missing == "skip":
                rows = rows[~bad]
        return rows

    def row(self, external_id) -> int:
        """The row of one external id; UnknownIdError (a RecvecError) if the vocabulary does not hold it."""
        return int(self.rows([external_id])[0])

    def id_of(self, rows) -> np.ndarray:
        """The external ids (int64 or 'U') of ``rows`` (an int array of any shape; IndexError for a
        row out of range)."""
        return self._ids[np.asarray(rows, dtype=np.int64)]

    def parse(self, text: str):
        """An id typed as text (a command-line flag) as this vocabulary's kind: an int for integer
        ids when ``text`` is an integer literal within int64, else the text itself (which integer
        ids then do not hold)."""
        if self._strings or not _INT_TEXT.fullmatch(text):
            return text
        value = int(text)
        return value if -_INT64_MAX - 1 <= value <= _INT64_MAX else text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._ids.dtype.kind == other._ids.dtype.kind \
            and np.array_equal(self._ids, other._ids)

    def __repr__(self) -> str:
        return f"Vocabulary({self.kind}, {len(self)} {'string' if self._strings else 'int'} ids)"
