"""What a loaded dataset is: rating events (Ratings), the item catalogue (Catalog) and both
together with where they came from (Dataset). Plain arrays and tuples; no I/O and no parsing.

Ids are integers or strings. Integer ids are held as int64 values. String ids are held as int64
*codes* into a sorted array of the distinct ids (``Ratings.user_labels`` / ``item_labels``, numpy
unicode): code order is id order, so sorting by code sorts by id, and a 25M-row event log costs
8 bytes per id and row, not one Python string each."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from recvec.errors import UnknownIdError


def is_string_ids(ids: np.ndarray) -> bool:
    """Whether an id array holds string ids (numpy unicode 'U'), not int64 ones."""
    return np.asarray(ids).dtype.kind == "U"


def id_key(value, strings: bool):
    """``value`` as a dictionary key for ids of one kind: a Python int (integer ids) or str (string
    ids); None when it cannot be such an id (a string for integer ids, a number for string ids)."""
    if strings:
        return value if isinstance(value, (str, np.str_)) else None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return None
    return int(value)


@dataclass(frozen=True)
class Ratings:
    """Rating (or interaction) events in file order. All arrays have the same length.

    ``users``/``items`` are int64: the external ids themselves, or -- when ``user_labels`` /
    ``item_labels`` are given (string ids) -- rows of those sorted unique 'U' arrays. Use
    :meth:`user_values` / :meth:`item_values` for the external ids of every row and
    :meth:`user_key` to find the value an external user id is held as."""

    users: np.ndarray  # int64 external user ids, or codes into user_labels
    items: np.ndarray  # int64 external item ids, or codes into item_labels
    ratings: np.ndarray  # float32 (1.0 for every row when all_positive)
    timestamps: np.ndarray  # int64 unix seconds (no time column: the row's position in the file)
    user_labels: np.ndarray | None = None  # string user ids, sorted and unique ('U')
    item_labels: np.ndarray | None = None  # string item ids, sorted and unique ('U')
    all_positive: bool = False  # no rating column: every row is a positive, whatever the threshold

    def __len__(self) -> int:
        return len(self.users)

    def take(self, idx: np.ndarray) -> "Ratings":
        """The rows ``idx`` (an int array or a boolean mask), labels and flags kept."""
        return Ratings(self.users[idx], self.items[idx], self.ratings[idx], self.timestamps[idx],
                       self.user_labels, self.item_labels, self.all_positive)

    def user_values(self) -> np.ndarray:
        """The external user id of every row: int64, or 'U' strings (materialised: n x width x 4 bytes)."""
        return self.users if self.user_labels is None else self.user_labels[self.users]

    def item_values(self) -> np.ndarray:
        """The external item id of every row: int64, or 'U' strings (materialised)."""
        return self.items if self.item_labels is None else self.item_labels[self.items]

    def positive(self, threshold: float) -> np.ndarray:
        """Boolean mask of the rows that are positives: rating >= threshold (every row when
        ``all_positive``)."""
        if self.all_positive:
            return np.ones(len(self), dtype=bool)
        return self.ratings >= threshold

    def user_key(self, user_id) -> int | None:
        """The value ``users`` holds for external ``user_id`` (the id itself, or its code); None
        when no row has that user (or the id is of the other kind: a str for integer ids)."""
        key = id_key(user_id, self.user_labels is not None)
        if key is None:
            return None
        if self.user_labels is None:
            return key
        pos = int(np.searchsorted(self.user_labels, key))
        return pos if pos < len(self.user_labels) and self.user_labels[pos] == key else None


@dataclass(frozen=True)
class Catalog:
    """Items: external ids (int64 or 'U' strings) with titles and genres ('A|B|C'), same order.

    ``text`` holds, per item, the parts a text encoder reads (joined by the encoder's separator,
    empty parts dropped); None means (title, genres), the lab's ``title [SEP] genres``."""

    ids: np.ndarray  # int64 or 'U'
    titles: tuple[str, ...]
    genres: tuple[str, ...]
    text: tuple[tuple[str, ...], ...] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def string_ids(self) -> bool:
        """Whether the item ids are strings."""
        return is_string_ids(self.ids)

    def text_parts(self) -> list[tuple[str, ...]]:
        """Per item, the text parts an encoder reads (see the class docstring)."""
        if self.text is not None:
            return list(self.text)
        return list(zip(self.titles, self.genres))

    def texts(self, sep: str = "[SEP]") -> list[str]:
        """Per item, its non-empty text parts joined by ``f" {sep} "`` (the lab's 'title [SEP] genres';
        just the title when genres are empty)."""
        joiner = f" {sep} "
        return [joiner.join(p for p in parts if p) for parts in self.text_parts()]

    @cached_property
    def _position(self) -> dict:
        return {m: i for i, m in enumerate(self.ids.tolist())}

    def _row(self, movie_id) -> int | None:
        key = id_key(movie_id, self.string_ids)
        return None if key is None else self._position.get(key)

    def __contains__(self, movie_id) -> bool:
        return self._row(movie_id) is not None

    def position(self, movie_id) -> int:
        """Row of movie_id in ids/titles/genres; UnknownIdError('movie', [id]) if absent."""
        row = self._row(movie_id)
        if row is None:
            raise UnknownIdError("movie", [movie_id])
        return row

    def title_of(self, movie_id) -> str:
        """Title of movie_id; UnknownIdError('movie', [id]) if absent."""
        return self.titles[self.position(movie_id)]

    def genres_of(self, movie_id) -> str:
        """Genres ('A|B|C', may be empty) of movie_id; UnknownIdError('movie', [id]) if absent."""
        return self.genres[self.position(movie_id)]


def arrays_fingerprint(ratings: Ratings, catalog: Catalog) -> str:
    """sha256 hex over the loaded arrays (ids, labels, ratings, times, catalogue ids, titles and texts):
    the fingerprint of a dataset read from a table, where the values, not the file's bytes, are the data."""
    h = hashlib.sha256()
    for a in (ratings.users, ratings.items, ratings.ratings, ratings.timestamps, ratings.user_labels,
              ratings.item_labels, catalog.ids):
        if a is None:
            h.update(b"-\0")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}\0".encode())
        h.update(memoryview(a).cast("B"))
    h.update(b"positive\0" if ratings.all_positive else b"rated\0")
    for t in catalog.texts() + list(catalog.titles):
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


@dataclass(frozen=True)
class Dataset:
    """One loaded dataset: its ratings and catalogue (every rated item is in the catalogue), the
    format it was read as, and a fingerprint of the data.

    ``digest`` is the sha256 of the exact bytes read (the MovieLens formats); when it is None
    (a table: CSV, Parquet, JSON Lines) :attr:`fingerprint` hashes the loaded arrays on first use,
    so loading a large file does not pay for it. ``notes`` say how the data was read where that
    was a choice (time units detected, file order taken as time order, repeated events)."""

    ratings: Ratings
    catalog: Catalog
    source: str  # what the user gave (path or URI)
    format: str  # the format's name: "ml-1m" | "ml-100k" | "ml-latest" | "csv" | "parquet" | ...
    digest: str | None = None  # sha256 over the raw bytes of the files read (None: see fingerprint)
    files: tuple[str, ...] = field(default=())  # names of the files read, in fingerprint order
    notes: tuple[str, ...] = field(default=())

    @cached_property
    def fingerprint(self) -> str:
        """sha256 hex identifying the data: ``digest``, else a hash of the loaded arrays."""
        return self.digest if self.digest is not None else arrays_fingerprint(self.ratings, self.catalog)

    @property
    def string_ids(self) -> bool:
        """Whether the item ids are strings."""
        return self.catalog.string_ids
