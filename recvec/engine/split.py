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
    return Ratings(r.users[idx], r.items[idx], r.ratings[idx], r.timestamps[idx])


def positives(ratings: Ratings, threshold: float = 4.0) -> Ratings:
    """Ratings >= threshold, sorted by (user, timestamp), stable (ties keep file order)."""
    keep = np.flatnonzero(ratings.ratings >= threshold)
    pos = _take(ratings, keep)
    order = np.lexsort((pos.timestamps, pos.users))  # lexsort is stable
    return _take(pos, order)


def _last_per_user(users_sorted: np.ndarray) -> np.ndarray:
    """Boolean mask of the last row of each user's run in a user-sorted array."""
    last = np.ones(len(users_sorted), dtype=bool)
    last[:-1] = users_sorted[1:] != users_sorted[:-1]
    return last


@dataclass(frozen=True)
class Split:
    """Train positives (sorted by user, time), one held-out test positive per user, and the mapping.

    `users`/`items` index train in order of first appearance; `matrix` is the binary CSR float32
    user-item matrix [num_users, num_items] of train.
    """

    train: Ratings
    test: Ratings
    users: Vocabulary
    items: Vocabulary
    threshold: float

    @cached_property
    def train_user_rows(self) -> np.ndarray:
        """(len(train),) int64: each train rating's user row in ``users``."""
        return self.users.rows(self.train.users)

    @cached_property
    def train_item_rows(self) -> np.ndarray:
        """(len(train),) int64: each train rating's item row in ``items``."""
        return self.items.rows(self.train.items)

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

    def evaluable(self, items: Vocabulary | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(user rows, held-out item rows) of test rows whose user and item are known to train.

        Item rows are in `items` (default: the train vocabulary)."""
        u = self.users.rows(self.test.users, missing="mask")
        i = self.items.rows(self.test.items, missing="mask")
        ok = (u >= 0) & (i >= 0)
        if items is not None and items != self.items:
            return u[ok], items.rows(self.test.items[ok])
        return u[ok], i[ok]


def leave_last_out(ratings: Ratings, threshold: float = 4.0, *, already_positive: bool = False) -> Split:
    """SPEC split: positives >= threshold; each user's last positive by time -> test; rest -> train."""
    pos = ratings if already_positive else positives(ratings, threshold)
    if len(pos) == 0:
        raise DataError(f"no ratings >= {threshold:g}: nothing to split (lower threshold)", params=("threshold",))
    last = _last_per_user(pos.users)
    train = _take(pos, np.flatnonzero(~last))
    test = _take(pos, np.flatnonzero(last))
    users = Vocabulary.from_first_appearance(train.users, kind="user")
    items = Vocabulary.from_first_appearance(train.items, kind="movie")
    return Split(train=train, test=test, users=users, items=items, threshold=threshold)


def user_history(split: Split, ratings: Ratings, user_id) -> np.ndarray:
    """A user's train item ids in time order (int64). Raises UnknownIdError for a user not in
    ``ratings`` and DataError for one who is there but has no train positive (saying why)."""
    rows = split.users.rows(np.asarray([user_id]), missing="mask")
    if rows[0] >= 0:
        return split.items.id_of(split.histories()[int(rows[0])])
    mine = ratings.ratings[ratings.users == user_id]
    if mine.size == 0:
        raise UnknownIdError("user", [user_id])
    n_pos = int((mine >= split.threshold).sum())
    why = (f"none of their {mine.size:,} ratings is >= {split.threshold:g}" if n_pos == 0 else
           f"their only rating >= {split.threshold:g} is the last one, held out as the test item")
    raise DataError(f"user {user_id} is in the data but has no train positive: {why}")


def validation_split(split: Split) -> Split:
    """Hold out each user's second-to-last positive: leave-last-out applied to train again.

    Selection (tuning) uses this split only; the test split is never read.
    """
    return leave_last_out(split.train, split.threshold, already_positive=True)
