"""Positives and the leave-last-positive-out split (SPEC: Split, Id mapping)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from recvec.engine.data import Ratings
from recvec.engine.vocab import Vocabulary
from recvec.errors import DataError, UnknownIdError


def _take(r: Ratings, idx: np.ndarray) -> Ratings:
    return r.take(idx)


def positives(ratings: Ratings, threshold: float = 4.0) -> Ratings:
    """Ratings >= threshold (every row when ``ratings.all_positive``), sorted by (user, timestamp),
    stable (ties keep file order). Users sort by id: integers by value, string ids by code point
    (their codes are in that order). A (user, item) pair that is positive more than once (an event
    log's repeats; the MovieLens formats refuse them) counts once, at its latest positive."""
    keep = np.flatnonzero(ratings.positive(threshold))
    pos = _take(ratings, keep)
    order = np.lexsort((pos.timestamps, pos.users))  # lexsort is stable
    pos = _take(pos, order)
    repeated = _earlier_repeats(pos.users, pos.items)
    return pos if repeated is None else _take(pos, np.flatnonzero(~repeated))


def _earlier_repeats(users: np.ndarray, items: np.ndarray) -> np.ndarray | None:
    """Mask of the rows whose (user, item) pair comes again later, or None when no pair repeats."""
    import pandas as pd

    if len(users) < 2:
        return None
    if int(users.min()) >= 0 and int(items.min()) >= 0 and int(users.max()) < 2**31 and int(items.max()) < 2**32:
        dup = pd.Series((users << 32) | items).duplicated(keep="last").to_numpy()
    else:
        dup = pd.DataFrame({"u": users, "i": items}).duplicated(keep="last").to_numpy()
    return dup if dup.any() else None


def _last_per_user(users_sorted: np.ndarray) -> np.ndarray:
    """Boolean mask of the last row of each user's run in a user-sorted array."""
    last = np.ones(len(users_sorted), dtype=bool)
    last[:-1] = users_sorted[1:] != users_sorted[:-1]
    return last


@dataclass(frozen=True)
class Split:
    """Train positives (sorted by user, time), one held-out test positive per user, and the mapping.

    `users`/`items` index train in order of first appearance (external ids: int64 or strings);
    `matrix` is the binary CSR float32 user-item matrix [num_users, num_items] of train.

    With string ids the Ratings hold codes (see :class:`~recvec.engine.data.Ratings`):
    ``user_keys``/``item_keys`` are then the same vocabularies over those codes (None: the ids are
    the codes, as for integer ids).
    """

    train: Ratings
    test: Ratings
    users: Vocabulary
    items: Vocabulary
    threshold: float
    user_keys: Vocabulary | None = None
    item_keys: Vocabulary | None = None

    @property
    def _ukeys(self) -> Vocabulary:
        return self.users if self.user_keys is None else self.user_keys

    @property
    def _ikeys(self) -> Vocabulary:
        return self.items if self.item_keys is None else self.item_keys

    @cached_property
    def train_user_rows(self) -> np.ndarray:
        """(len(train),) int64: each train rating's user row in ``users``."""
        return self._ukeys.rows(self.train.users)

    @cached_property
    def train_item_rows(self) -> np.ndarray:
        """(len(train),) int64: each train rating's item row in ``items``."""
        return self._ikeys.rows(self.train.items)

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """The binary train matrix: CSR float32 (num_users, num_items), 1.0 where a user has a train positive."""
        m = sp.csr_matrix(
            (np.ones(len(self.train), np.float32), (self.train_user_rows, self.train_item_rows)),
            shape=(len(self.users), len(self.items)),
            dtype=np.float32,
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def matrix_for(self, items: Vocabulary) -> sp.csr_matrix:
        """The train matrix with columns in another item vocabulary (e.g. the whole catalogue)."""
        if items == self.items:
            return self.matrix
        cols = items.rows(self.items.ids, missing="mask")
        m = self.matrix.tocoo()
        keep = cols[m.col] >= 0
        return sp.csr_matrix(
            (m.data[keep], (m.row[keep], cols[m.col[keep]])), shape=(len(self.users), len(items)), dtype=np.float32
        )

    def require_train(self) -> None:
        """Raise DataError (saying why) when the train split is empty: nothing to fit on."""
        if len(self.train):
            return
        n = len(self.test)
        who = "the one user" if n == 1 else f"each of the {n:,} users"
        raise DataError(f"the train split is empty: {who} with a rating >= {self.threshold:g} has only one such "
                        "rating, and each user's last one is held out; training needs a user with at least two")

    def histories(self) -> list[np.ndarray]:
        """Each user's train item rows in time order (row u of `users`)."""
        bounds = np.flatnonzero(np.diff(self.train_user_rows)) + 1
        return np.split(self.train_item_rows, bounds)

    def history_times(self) -> list[np.ndarray]:
        """Each user's train timestamps (int64 Unix seconds) in time order, aligned with :meth:`histories`."""
        bounds = np.flatnonzero(np.diff(self.train_user_rows)) + 1
        return np.split(self.train.timestamps, bounds)

    def evaluable_mask(self) -> np.ndarray:
        """(test rows,) bool: the test rows whose user and item are known to train (``evaluable``'s)."""
        u = self._ukeys.rows(self.test.users, missing="mask")
        i = self._ikeys.rows(self.test.items, missing="mask")
        return (u >= 0) & (i >= 0)

    def evaluable(self, items: Vocabulary | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(user rows, held-out item rows) of test rows whose user and item are known to train.

        Item rows are in `items` (default: the train vocabulary)."""
        u = self._ukeys.rows(self.test.users, missing="mask")
        i = self._ikeys.rows(self.test.items, missing="mask")
        ok = (u >= 0) & (i >= 0)
        if items is not None and items != self.items:
            return u[ok], items.rows(self.items.id_of(i[ok]))
        return u[ok], i[ok]


def leave_last_out(ratings: Ratings, threshold: float = 4.0, *, already_positive: bool = False) -> Split:
    """SPEC split: positives >= threshold; each user's last positive by time -> test; rest -> train."""
    pos = ratings if already_positive else positives(ratings, threshold)
    if len(pos) == 0:
        raise DataError(f"no ratings >= {threshold:g}: nothing to split (lower threshold)", params=("threshold",))
    last = _last_per_user(pos.users)
    train = _take(pos, np.flatnonzero(~last))
    test = _take(pos, np.flatnonzero(last))
    user_keys = Vocabulary.from_first_appearance(train.users, kind="user")
    item_keys = Vocabulary.from_first_appearance(train.items, kind="movie" if pos.item_labels is None else "item")
    users = user_keys if pos.user_labels is None else Vocabulary(pos.user_labels[user_keys.ids], kind="user")
    items = item_keys if pos.item_labels is None else Vocabulary(pos.item_labels[item_keys.ids], kind="item")
    return Split(train=train, test=test, users=users, items=items, threshold=threshold,
                 user_keys=None if pos.user_labels is None else user_keys,
                 item_keys=None if pos.item_labels is None else item_keys)


def user_history(split: Split, ratings: Ratings, user_id) -> np.ndarray:
    """A user's train item ids in time order (int64 or strings, as the data's ids). Raises
    UnknownIdError for a user not in ``ratings`` and DataError for one who is there but has no
    train positive (saying why)."""
    rows = split.users.rows([user_id], missing="mask")
    if rows[0] >= 0:
        return split.items.id_of(split.histories()[int(rows[0])])
    key = ratings.user_key(user_id)
    mine = ratings.ratings[ratings.users == key] if key is not None else ratings.ratings[:0]
    if mine.size == 0:
        raise UnknownIdError("user", [user_id])
    if ratings.all_positive:
        raise DataError(f"user {user_id} is in the data but has no train positive: their only event is the last "
                        "one, held out as the test item")
    n_pos = int((mine >= split.threshold).sum())
    why = (f"none of their {mine.size:,} ratings is >= {split.threshold:g}" if n_pos == 0 else
           f"their only rating >= {split.threshold:g} is the last one, held out as the test item")
    raise DataError(f"user {user_id} is in the data but has no train positive: {why}")


def validation_split(split: Split) -> Split:
    """Hold out each user's second-to-last positive: leave-last-out applied to train again.

    Selection (tuning) uses this split only; the test split is never read.
    """
    return leave_last_out(split.train, split.threshold, already_positive=True)
