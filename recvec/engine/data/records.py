"""What a loaded dataset is: rating events (Ratings), the movie catalogue (Catalog) and both
together with where they came from (Dataset). Plain arrays and tuples; no I/O and no parsing."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from recvec.errors import UnknownIdError


@dataclass(frozen=True)
class Ratings:
    """Raw rating events in file order. All arrays have the same length."""

    users: np.ndarray  # int64 external user ids
    items: np.ndarray  # int64 external movie ids
    ratings: np.ndarray  # float32 stars
    timestamps: np.ndarray  # int64 unix seconds

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Catalog:
    """Movies: external ids with titles and genres ('A|B|C'), same order."""

    ids: np.ndarray  # int64
    titles: tuple[str, ...]
    genres: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def texts(self, sep: str = "[SEP]") -> list[str]:
        """The lab's item text: 'title [SEP] genres'."""
        return [f"{t} {sep} {g}" for t, g in zip(self.titles, self.genres)]

    @cached_property
    def _position(self) -> dict[int, int]:
        return {int(m): i for i, m in enumerate(self.ids)}

    def __contains__(self, movie_id) -> bool:
        try:
            return int(movie_id) in self._position
        except (TypeError, ValueError):
            return False

    def position(self, movie_id: int) -> int:
        """Row of movie_id in ids/titles/genres; UnknownIdError('movie', [id]) if absent."""
        try:
            return self._position[int(movie_id)]
        except (KeyError, TypeError, ValueError):
            raise UnknownIdError("movie", [movie_id]) from None

    def title_of(self, movie_id: int) -> str:
        """Title of movie_id; UnknownIdError('movie', [id]) if absent."""
        return self.titles[self.position(movie_id)]

    def genres_of(self, movie_id: int) -> str:
        """Genres ('A|B|C', may be empty) of movie_id; UnknownIdError('movie', [id]) if absent."""
        return self.genres[self.position(movie_id)]


@dataclass(frozen=True)
class Dataset:
    """One loaded dataset: its ratings and catalogue (every rated movie is in the catalogue), the
    registered format it was read as, and a fingerprint of the exact bytes read."""

    ratings: Ratings
    catalog: Catalog
    source: str  # what the user gave (path or URI)
    format: str  # the registered format's name: "ml-1m" | "ml-100k" | "ml-latest"
    fingerprint: str  # sha256 over the raw bytes of the files read
    files: tuple[str, ...] = field(default=())  # names of the files read, in fingerprint order
