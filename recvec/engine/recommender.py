"""Recommender: an item index + a query-time UserEncoder + the item Vocabulary, answering in external ids.

Concurrency and reloads: a Recommender is an immutable snapshot. Its parts are fixed at construction
and no query changes them (searches pass efSearch/nprobe/exclusions per call; encoders only read
their arrays), so one instance answers from many threads at once exactly as it does sequentially.
A Recommender over an artifact (``recvec.indexes.build.open_index`` -> ``LoadedIndex``) holds every
array in memory and never reads the artifact's files again. To reload, open the new artifact into a
new instance and swap the reference you serve from: queries in flight finish on the old snapshot,
later ones use the new one, and no answer mixes the two (tests/test_concurrency.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recvec.engine.users import UserEncoder
from recvec.engine.vocab import Vocabulary
from recvec.errors import RecvecError, shown


@dataclass(frozen=True)
class Recommendations:
    """Ranked external item ids with their scores. `fallback` says why the ranking is not personal."""

    ids: np.ndarray  # int64 (k,)
    scores: np.ndarray  # float32 (k,)
    fallback: str | None = None
    skipped: tuple[int, ...] = field(default=())  # unknown history ids that were skipped


def check_k(k: int, available: int) -> int:
    """k as an int in 1..available (the items a call can return), else RecvecError naming ``k``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise RecvecError(f"k must be a positive integer, got {shown(k)}", params=("k",))
    if k > available:
        raise RecvecError(f"k {k} is larger than the {available} items that can be returned", params=("k",))
    return int(k)


class Recommender:
    """Joins an ItemIndex (rows = `items`), a UserEncoder and popularity (the fallback ranking).
    Immutable after construction and safe to query from many threads (see the module docstring).

    `item_vectors` (optional) are the raw vectors of the index rows; when given and not normalised,
    item-to-item similarity is exact cosine over them rather than the index's inner product."""

    def __init__(self, index, items: Vocabulary, user_encoder: UserEncoder, popularity: np.ndarray, *,
                 item_vectors: np.ndarray | None = None, normalized: bool = True):
        self.index = index
        self.items = items
        self.user_encoder = user_encoder
        self.popularity = np.asarray(popularity, dtype=np.float32)
        self.item_vectors = item_vectors
        self.normalized = normalized
        self._pop_order = np.argsort(-self.popularity, kind="stable")
        self._unit: np.ndarray | None = None  # the L2-normalised item vectors, made on the first similar()

    def _vectors(self) -> np.ndarray:
        """The index rows' item vectors: those given, else the index's own (``SearchBackend.vectors``)."""
        if self.item_vectors is None:
            self.item_vectors = np.ascontiguousarray(self.index.vectors(), dtype=np.float32)
        return self.item_vectors

    def _history_rows(self, ids, unknown: str, times=None
                      ) -> tuple[np.ndarray, tuple[int, ...], np.ndarray | None, np.ndarray]:
        """Known rows in history order (each item once, at its most recent position: recency-aware
        encoders read the order), the skipped unknown ids, the timestamps aligned with the rows, and
        the same rows sorted (the exclusion set, in the form the index checks fastest)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if unknown not in ("error", "skip"):
            raise ValueError("unknown must be 'error' or 'skip'")
        rows = self.items.rows(ids, missing="mask")
        skipped: tuple[int, ...] = ()
        if times is not None:
            times = np.asarray(times).ravel()
            if times.shape != ids.shape:
                raise RecvecError(f"a history of {len(ids)} items came with {len(times)} timestamps")
        if rows.size and rows.min() < 0:
            skipped = tuple(int(i) for i in ids[rows < 0])
            if unknown == "error":
                self.items.rows(ids)  # raises UnknownIdError naming them
            keep = np.flatnonzero(rows >= 0)
            rows, times = rows[keep], (None if times is None else times[keep])
        ordered = np.sort(rows)
        if rows.size > 1 and (ordered[1:] == ordered[:-1]).any():  # repeats: keep each at its most recent position
            _, last_from_end = np.unique(rows[::-1], return_index=True)
            keep = np.sort(len(rows) - 1 - last_from_end)
            rows, times = rows[keep], (None if times is None else times[keep])
            ordered = np.sort(rows)
        return rows, skipped, times, ordered

    def _popular(self, exclude: np.ndarray, k: int, skipped) -> Recommendations:
        """The fallback for a history with no known item: popularity, saying why."""
        why = "popularity: all history ids unknown" if skipped else "popularity: empty history"
        order = self._pop_order[~np.isin(self._pop_order, exclude)][:k]
        return Recommendations(self.items.id_of(order), self.popularity[order], fallback=why, skipped=skipped)

    def recommend_batch(self, histories: Sequence[Sequence[int]], k: int = 10, *, timestamps=None,
                        unknown: str = "error", **query_params) -> list[Recommendations]:
        """Top-k items per history (external ids), the history's own items excluded.

        Empty or all-unknown histories fall back to popularity and say so."""
        if timestamps is not None and len(timestamps) != len(histories):
            raise RecvecError(f"{len(timestamps)} timestamp lists for {len(histories)} histories")
        parsed = [self._history_rows(h, unknown, None if timestamps is None else timestamps[i])
                  for i, h in enumerate(histories)]
        longest = max((len(p[0]) for p in parsed), default=0)
        check_k(k, len(self.items) - longest)
        out: list[Recommendations | None] = [None] * len(parsed)
        personal = [i for i, p in enumerate(parsed) if len(p[0])]
        for i, (rows, skipped, _, _) in enumerate(parsed):
            if not len(rows):
                out[i] = self._popular(rows, k, skipped)
        if personal:
            hist = [parsed[i][0] for i in personal]
            ts = None if timestamps is None else [parsed[i][2] for i in personal]
            queries = self.user_encoder.encode(hist, ts)
            rows, scores = self.index.search(queries, k, exclude=[parsed[i][3] for i in personal], **query_params)
            for j, i in enumerate(personal):
                out[i] = Recommendations(self.items.id_of(rows[j]), scores[j], skipped=parsed[i][1])
        return out  # type: ignore[return-value]

    def recommend(self, history: Sequence[int], k: int = 10, *, timestamps=None, unknown: str = "error",
                  **query_params) -> Recommendations:
        """Top-k items for one history: ``recommend_batch([history], ...)[0]`` on a lean path (one
        query per call is how a service answers; this path's overhead around the search is ~0.03 ms).
        ``timestamps`` is given as for the batch call: a list holding this history's timestamps."""
        if timestamps is not None and len(timestamps) != 1:
            raise RecvecError(f"{len(timestamps)} timestamp lists for 1 history")
        rows, skipped, ts, ordered = self._history_rows(history, unknown, None if timestamps is None else timestamps[0])
        check_k(k, len(self.items) - len(rows))
        if not len(rows):
            return self._popular(rows, k, skipped)
        query = self.user_encoder.encode([rows], None if ts is None else [ts])
        found, scores = self.index.search(query, k, exclude=[ordered], **query_params)
        return Recommendations(self.items.id_of(found[0]), scores[0], skipped=skipped)

    def similar(self, item_id: int, k: int = 10, **query_params) -> Recommendations:
        """Nearest items to one item by cosine, the item itself excluded."""
        row = self.items.row(item_id)
        check_k(k, len(self.items) - 1)
        vectors = self._vectors()
        if self.normalized:
            rows, scores = self.index.search(np.ascontiguousarray(vectors[row][None, :], dtype=np.float32), k,
                                             exclude=[np.array([row])], **query_params)
            return Recommendations(self.items.id_of(rows[0]), scores[0])
        if self._unit is None:  # once per Recommender, not per call (benign if two threads race here)
            self._unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        v = self._unit
        s = v @ v[row]
        s[row] = -np.inf
        top = np.lexsort((np.arange(len(s)), -s))[:k]
        return Recommendations(self.items.id_of(top), s[top].astype(np.float32))

    def search_vectors(self, queries: np.ndarray, k: int = 10, **query_params) -> list[Recommendations]:
        """Top-k items for ready-made query vectors (e.g. an encoded free-text query)."""
        check_k(k, len(self.items))
        rows, scores = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, **query_params)
        return [Recommendations(self.items.id_of(r), s) for r, s in zip(rows, scores)]
