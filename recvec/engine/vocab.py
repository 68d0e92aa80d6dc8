"""Vocabulary: external ids <-> contiguous rows (lenskit's Vocabulary, reduced)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from recvec.errors import UnknownIdError, shown


class Vocabulary:
    """An ordered set of int64 external ids; row i holds ids[i].

    Lookups of unknown ids raise UnknownIdError naming them, unless ``missing="skip"``/``"mask"``.
    """

    def __init__(self, ids: Iterable[int], *, kind: str = "item"):
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).ravel()
        if len(np.unique(arr)) != len(arr):
            raise ValueError(f"{kind} vocabulary ids must be unique")
        self.kind = kind
        self._ids = arr
        self._ids.setflags(write=False)
        self._sorter = np.argsort(arr, kind="stable")
        self._sorted = arr[self._sorter]
        # Small non-negative ids (MovieLens's are < 300k) get a dense id -> row table: one gather per
        # lookup instead of a binary search (a query-time history lookup drops from ~10 to ~3 us).
        self._table: np.ndarray | None = None
        if len(arr) and self._sorted[0] >= 0 and self._sorted[-1] < max(1 << 16, 8 * len(arr)):
            self._table = np.full(int(self._sorted[-1]) + 1, -1, dtype=np.int64)
            self._table[arr] = np.arange(len(arr), dtype=np.int64)

    @classmethod
    def from_first_appearance(cls, values: np.ndarray, *, kind: str = "item") -> "Vocabulary":
        """Ids in order of first appearance (the lab's mapping)."""
        _, first = np.unique(values, return_index=True)
        return cls(values[np.sort(first)], kind=kind)

    @property
    def ids(self) -> np.ndarray:
        """The external ids in row order: a read-only int64 array of shape (len(self),)."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        try:
            return bool(self._lookup(np.asarray([external_id], dtype=np.int64))[0] >= 0)
        except (TypeError, ValueError):
            return False

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        if self._table is not None:
            if not ids.size or (ids.min() >= 0 and ids.max() < len(self._table)):
                return self._table[ids]
            inside = (ids >= 0) & (ids < len(self._table))
            return np.where(inside, self._table[np.where(inside, ids, 0)], -1)
        pos = np.searchsorted(self._sorted, ids)
        pos_c = np.minimum(pos, max(len(self._sorted) - 1, 0))
        found = (pos < len(self._sorted)) & (self._sorted[pos_c] == ids) if len(self._sorted) else np.zeros(len(ids), bool)
        return np.where(found, self._sorter[pos_c], -1).astype(np.int64)

    def rows(self, ids, *, missing: str = "error") -> np.ndarray:
        """Rows of external ids. missing: 'error' (raise naming them), 'skip' (drop), 'mask' (-1)."""
        if missing not in ("error", "skip", "mask"):
            raise ValueError(f"missing must be error|skip|mask, not {shown(missing)}")
        arr = np.asarray(ids, dtype=np.int64).ravel()
        rows = self._lookup(arr)
        bad = rows < 0
        if bad.any():
            if missing == "error":
                raise UnknownIdError(self.kind, arr[bad].tolist())
            if missing == "skip":
                rows = rows[~bad]
        return rows

    def row(self, external_id: int) -> int:
        """The row of one external id; UnknownIdError (a RecvecError) if the vocabulary does not hold it."""
        return int(self.rows([external_id])[0])

    def id_of(self, rows) -> np.ndarray:
        """The int64 external ids of ``rows`` (an int array of any shape; IndexError for a row out of range)."""
        return self._ids[np.asarray(rows, dtype=np.int64)]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and np.array_equal(self._ids, other._ids)

    def __repr__(self) -> str:
        return f"Vocabulary({self.kind}, {len(self)} ids)"
