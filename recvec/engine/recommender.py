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

from recvec.engine.models.text import l2_normalize
from recvec.engine.users import UserEncoder
from recvec.engine.vocab import Vocabulary
from recvec.errors import RecvecError, shown


@dataclass(frozen=True)
class Recommendations:
    """Ranked external item ids with their scores. `fallback` says why the ranking is not personal."""

    ids: np.ndarray  # (k,) int64, or 'U' strings for an index with string item ids
    scores: np.ndarray  # float32 (k,)
    fallback: str | None = None
    skipped: tuple = field(default=())  # unknown history ids that were skipped (ints or strs, as given)
    note: str | None = None  # why fewer than the k asked for came back (the history leaves fewer items)


def _positive_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise RecvecError(f"k must be a positive integer, got {shown(k)}", params=("k",))
    return int(k)


def check_k(k: int, available: int) -> int:
    """k as an int in 1..available (the items a call can return), else RecvecError naming ``k``."""
    k = _positive_k(k)
    if k > available:
        raise RecvecError(f"k {k} is larger than the {available} items that can be returned", params=("k",))
    return int(k)


def top_k_row(scores: np.ndarray, k: int) -> np.ndarray:
    """The rows of the k largest of ``scores`` (n,), best first, equal scores by the lower row: a
    partition, then a sort of the k (plus boundary ties) kept, not a sort of all n."""
    if k >= len(scores):
        return np.lexsort((np.arange(len(scores)), -scores))
    kth = -np.partition(-scores, k - 1)[k - 1]  # the k-th largest score
    top = np.flatnonzero(scores >= kth)
    return top[np.lexsort((top, -scores[top]))][:k]


def fitting_k(k: int, available: int) -> tuple[int, str | None]:
    """``(min(k, available), note)``: a valid k (else RecvecError naming ``k``) cut to the items a
    call can return, and the note saying so when it was cut (None when it was not)."""
    k = _positive_k(k)
    if k <= available:
        return k, None
    return max(available, 0), f"k={k} asked, only {max(available, 0)} items are left to return"


class Recommender:
    """Joins an ItemIndex (rows = `items`), a UserEncoder and popularity (the fallback ranking).
    Immutable after construction and safe to query from many threads (see the module docstring).

    `item_vectors` (optional) are the raw vectors of the index rows; when given and not normalised,
    item-to-item similarity is cosine over them rather than the index's inner product: answered by
    `similar_index` (a SearchBackend over the L2-normalised rows, same row order) when given, else
    exactly by a scan of the normalised table."""

    def __init__(self, index, items: Vocabulary, user_encoder: UserEncoder, popularity: np.ndarray, *,
                 item_vectors: np.ndarray | None = None, normalized: bool = True, similar_index=None):
        self.index = index
        self.items = items
        self.user_encoder = user_encoder
        self.popularity = np.asarray(popularity, dtype=np.float32)
        self.item_vectors = item_vectors
        self.normalized = normalized
        self.similar_index = similar_index
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
        if unknown not in ("error", "skip"):
            raise ValueError("unknown must be 'error' or 'skip'")
        ids = np.asarray(ids).ravel()
        rows = self.items.rows(ids, missing="mask")
        skipped: tuple = ()
        if times is not None:
            times = np.asarray(times).ravel()
            if times.shape != ids.shape:
                raise RecvecError(f"a history of {len(ids)} items came with {len(times)} timestamps")
        if rows.size and rows.min() < 0:
            skipped = tuple(ids[rows < 0].tolist())
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

    def _popular(self, k: int, skipped) -> Recommendations:
        """The fallback for a history with no known item: popularity, saying why."""
        why = "popularity: all history ids unknown" if skipped else "popularity: empty history"
        k, note = fitting_k(k, len(self.items))
        order = self._pop_order[:k]
        return Recommendations(self.items.id_of(order), self.popularity[order], fallback=why, skipped=skipped,
                               note=note)

    def recommend_batch(self, histories: Sequence[Sequence], k: int = 10, *, timestamps=None,
                        unknown: str = "error", **query_params) -> list[Recommendations]:
        """Top-k items per history (external ids: ints, or strs for an index with string item ids),
        the history's own items excluded. Unknown ids raise UnknownIdError naming them (``unknown=
        "skip"``: dropped and listed in ``skipped``). Empty or all-unknown histories fall back to
        popularity and say so. A history that leaves fewer than k items gets those, and ``note`` says
        so (k itself must be a positive int, else RecvecError naming ``k``)."""
        if timestamps is not None and len(timestamps) != len(histories):
            raise RecvecError(f"{len(timestamps)} timestamp lists for {len(histories)} histories")
        parsed = [self._history_rows(h, unknown, None if timestamps is None else timestamps[i])
                  for i, h in enumerate(histories)]
        n = len(self.items)
        for rows, *_ in parsed:
            fitting_k(k, n - len(rows))  # a bad k raises before any work
        out: list[Recommendations | None] = [None] * len(parsed)
        full = []  # histories that leave k items: one batched search
        for i, (rows, skipped, times, ordered) in enumerate(parsed):
            if not len(rows):
                out[i] = self._popular(k, skipped)
            elif n - len(rows) >= k:
                full.append(i)
            else:  # fewer than k left: this one on its own with what there is
                out[i] = self._personal(rows, times, ordered, skipped, k, **query_params)
        if full:
            hist = [parsed[i][0] for i in full]
            ts = None if timestamps is None else [parsed[i][2] for i in full]
            queries = self.user_encoder.encode(hist, ts)
            rows, scores = self.index.search(queries, k, exclude=[parsed[i][3] for i in full], **query_params)
            for j, i in enumerate(full):
                out[i] = Recommendations(self.items.id_of(rows[j]), scores[j], skipped=parsed[i][1])
        return out  # type: ignore[return-value]

    def recommend(self, history: Sequence, k: int = 10, *, timestamps=None, unknown: str = "error",
                  **query_params) -> Recommendations:
        """Top-k items for one history: ``recommend_batch([history], ...)[0]`` on a lean path (one
        query per call is how a service answers; this path's overhead around the search is ~0.03 ms).
        ``timestamps`` is given as for the batch call: a list holding this history's timestamps."""
        if timestamps is not None and len(timestamps) != 1:
            raise RecvecError(f"{len(timestamps)} timestamp lists for 1 history")
        rows, skipped, ts, ordered = self._history_rows(history, unknown, None if timestamps is None else timestamps[0])
        fitting_k(k, len(self.items) - len(rows))
        if not len(rows):
            return self._popular(k, skipped)
        return self._personal(rows, ts, ordered, skipped, k, **query_params)

    def _personal(self, rows, times, ordered, skipped, k: int, **query_params) -> Recommendations:
        """One known history's top-k (cut, with a note, to the items its exclusion leaves)."""
        k, note = fitting_k(k, len(self.items) - len(rows))
        if k == 0:
            return Recommendations(self.items.id_of(np.zeros(0, dtype=np.int64)), np.zeros(0, np.float32),
                                   skipped=skipped, note=note)
        query = self.user_encoder.encode([rows], None if times is None else [times])
        found, scores = self.index.search(query, k, exclude=[ordered], **query_params)
        return Recommendations(self.items.id_of(found[0]), scores[0], skipped=skipped, note=note)

    def similar(self, item_id, k: int = 10, **query_params) -> Recommendations:
        """Nearest items to one item (an int, or a str for string item ids) by cosine, the item itself
        excluded; UnknownIdError naming an id the index does not hold. ``query_params`` (ef_search,
        nprobe) go to the index that answers: the main one over normalised vectors, else the similar
        index; the exact scan takes none."""
        row = self.items.row(item_id)
        k, note = fitting_k(k, len(self.items) - 1)
        vectors = self._vectors()
        if k == 0:
            return Recommendations(self.items.id_of(np.zeros(0, dtype=np.int64)), np.zeros(0, np.float32), note=note)
        if self.normalized:
            rows, scores = self.index.search(np.ascontiguousarray(vectors[row][None, :], dtype=np.float32), k,
                                             exclude=[np.array([row])], **query_params)
            return Recommendations(self.items.id_of(rows[0]), scores[0], note=note)
        if self.similar_index is not None:
            q = l2_normalize(vectors[row : row + 1])  # as the similar index's rows were
            # k + 1 unfiltered and the item dropped: the same answer as excluding it, without a selector
            rows, scores = self.similar_index.search(q, k + 1, **query_params)
            keep = np.flatnonzero(rows[0] != row)[:k]
            return Recommendations(self.items.id_of(rows[0][keep]), scores[0][keep], note=note)
        if self._unit is None:  # once per Recommender, not per call (benign if two threads race here)
            self._unit = l2_normalize(vectors)
        v = self._unit
        s = v @ v[row]
        s[row] = -np.inf
        top = top_k_row(s, k)
        return Recommendations(self.items.id_of(top), s[top].astype(np.float32), note=note)

    def search_vectors(self, queries: np.ndarray, k: int = 10, **query_params) -> list[Recommendations]:
        """Top-k items for ready-made query vectors (e.g. an encoded free-text query); k above the
        catalogue's size returns every item, with a note."""
        k, note = fitting_k(k, len(self.items))
        rows, scores = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, **query_params)
        return [Recommendations(self.items.id_of(r), s, note=note) for r, s in zip(rows, scores)]
