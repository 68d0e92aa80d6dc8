"""What the service's endpoints compute, without HTTP: ids as clients send them -> Recommender
calls on one Snapshot -> the ``recvec query --json`` shape (``recvec.indexes.payload``).

Ids pass through as JSON gives them (an int or a string). Only where the artifact's ids are integers
is an id converted: an int within int64 is used as it is, a string holding an integer becomes that
integer, and anything else cannot be one of the artifact's ids, so it is unknown. Unknown history
ids are a 422 naming them (``unknown="error"``, the default) or are skipped and listed
(``unknown="skip"``); unknown ``exclude`` ids are ignored (they cannot be recommended anyway).

Every error a client can cause is an :class:`ApiError`: an HTTP status, a ``type``, the request
``field`` it is about, and a message.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from recvec.errors import RecvecError, UnknownIdError, shorten
from recvec.indexes.payload import result_payload

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Unknown ids listed in an error (the message shows 10; ``ids`` holds at most this many).
MAX_LISTED_IDS = 20


class ApiError(Exception):
    """A request the service refuses: ``status`` (4xx), ``kind`` (its ``type``: validation,
    unknown_id, out_of_range, unsupported, too_large, ...), ``field`` (the request field, dotted, with
    ``[i]`` for list positions; None when it is about the whole request) and ``message``; ``extra``
    goes into the JSON error as it is (e.g. ``ids``)."""

    def __init__(self, status: int, kind: str, message: str, field: str | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.kind, self.message, self.field, self.extra = status, kind, message, field, extra

    def body(self) -> dict:
        """``{"error": {"status", "type", "field", "message", ...extra}}``."""
        return {"error": {"status": self.status, "type": self.kind, "field": self.field, "message": self.message,
                          **self.extra}}


def api_error(e: RecvecError, field: str | None = None) -> ApiError:
    """The ApiError for a library error: an unknown id is a 422 ``unknown_id`` naming the ids (on
    ``field``); an error naming a parameter (``k``, ``ef_search``, ``nprobe``) a 422 on that field;
    any other a 400 on ``field``."""
    if isinstance(e, UnknownIdError):
        return unknown_ids(e.ids, field or "items")
    if e.params:
        return ApiError(422, "invalid", str(e), e.params[0])
    return ApiError(400, "invalid", str(e), field)


def unknown_ids(ids: list, field: str, status: int = 422) -> ApiError:
    """The error for ids the artifact does not hold (each shown cut to 80 characters)."""
    listed = [i if isinstance(i, int) else shorten(i) for i in ids[:MAX_LISTED_IDS]]
    shown = ", ".join(str(i) for i in listed[:10])
    more = f" (and {len(ids) - 10:,} more)" if len(ids) > 10 else ""
    return ApiError(status, "unknown_id", f"unknown item id{'s' if len(ids) > 1 else ''}: {shown}{more}", field,
                    ids=listed)


# ----------------------------------------------------------------------------------- ids


def as_id(value: Any, int_ids: bool) -> Any:
    """``value`` as an id of an artifact whose ids are integers (``int_ids``), or None when it cannot
    be one (not an int or a decimal string, or outside int64); other artifacts take it unchanged."""
    if not int_ids:
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text or not (text.isdigit() or (text[0] in "+-" and text[1:].isdigit())) or len(text) > 20:
            return None
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
        return None
    return value


def known_ids(snap, values: list, field: str, unknown: str, times: np.ndarray | None = None):
    """The known ids among ``values`` in order (an int64 array for integer artifacts, else a list),
    their timestamps (``times`` aligned with ``values``, or None) and the unknown ids skipped.
    ApiError 422 naming the unknown ids on ``field`` when ``unknown`` is "error"."""
    items = snap.loaded.recommender.items
    if snap.int_ids and _all_int64(values):  # the common case: one vectorised lookup
        arr = np.asarray(values, dtype=np.int64)
        rows = items.rows(arr, missing="mask")
        if not len(rows) or rows.min() >= 0:
            return arr, times, []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ApiError(422, "validation", f"an item id must be an integer or a string, got {shorten(repr(v))}",
                           f"{field}[{i}]")
    converted = [as_id(v, snap.int_ids) for v in values]
    castable = [c for c in converted if c is not None]
    rows = iter(items.rows(castable, missing="mask").tolist() if castable else [])
    known = np.array([c is not None and next(rows) >= 0 for c in converted], dtype=bool)
    missing = [v for v, ok in zip(values, known) if not ok]
    if missing and unknown == "error":
        raise unknown_ids(missing, field)
    ids = [c for c, ok in zip(converted, known) if ok]
    out = np.asarray(ids, dtype=np.int64) if snap.int_ids else ids
    return out, (None if times is None else times[known]), missing


def check_times(times: list | None, n: int, field: str) -> np.ndarray | None:
    """Timestamps (seconds) for a history of ``n`` ids as float64 (n,); ApiError 422 on ``field``
    unless they are ``n`` finite numbers."""
    if times is None:
        return None
    if not isinstance(times, list):
        raise ApiError(422, "validation", "timestamps must be a list of numbers, one per history item", field)
    for i, t in enumerate(times):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ApiError(422, "validation", f"a timestamp must be a finite number (seconds), got {shorten(repr(t))}",
                           f"{field}[{i}]")
    if len(times) != n:
        raise ApiError(422, "validation", f"{len(times)} timestamps for a history of {n} items", field)
    return np.asarray(times, dtype=np.float64)


def _distinct(ids) -> Any:
    return np.unique(ids) if isinstance(ids, np.ndarray) else list(dict.fromkeys(ids))


def _exclusions(snap, exclude: list | None) -> Any:
    """The distinct known ids of ``exclude`` (unknown ones ignored)."""
    if not exclude:
        return []
    ids, _, _ = known_ids(snap, exclude, "exclude", "skip")
    return _distinct(ids)


def _fetch_k(snap, k: int, history, extra) -> int:
    """k plus the extra exclusions the history does not already remove; ApiError 422 on ``k`` when
    fewer than k items remain once the history and ``extra`` are excluded."""
    n = len(snap.loaded.recommender.items)
    distinct = _distinct(history)
    more = 0
    if len(extra):
        hist = set(distinct.tolist() if isinstance(distinct, np.ndarray) else distinct)
        more = sum(1 for e in (extra.tolist() if isinstance(extra, np.ndarray) else extra) if e not in hist)
    available = n - len(distinct) - more
    if k > available:
        raise _too_few(k, available, n)
    return k + more


def _without(recs, extra, k: int):
    """``recs`` without the ids of ``extra``, cut to k."""
    if len(extra) == 0:
        return recs
    keep = ~np.isin(recs.ids, np.asarray(extra))
    return dataclasses.replace(recs, ids=recs.ids[keep][:k], scores=recs.scores[keep][:k])


def _query(kind: str, k: int, params: dict, **fields) -> dict:
    return {"type": kind, **fields, "k": k, **{p: v for p, v in params.items() if v is not None}}


# ----------------------------------------------------------------------------------- endpoints


def recommend(snap, items: list, *, k: int, timestamps: list | None = None, exclude: list | None = None,
              unknown: str = "error", params: dict) -> dict:
    """Top-k for one history (``items``, oldest first), its items and ``exclude`` excluded; the
    ``query --json`` shape. ``params``: ef_search / nprobe (None: the index's default)."""
    times = check_times(timestamps, len(items), "timestamps")
    rec = snap.loaded.recommender
    if not exclude and snap.int_ids and _all_int64(items):
        return _recommend_ints(snap, items, k, times, unknown, params)
    hist, times, skipped = known_ids(snap, items, "items", unknown, times)
    extra = _exclusions(snap, exclude)
    fetch = _fetch_k(snap, k, hist, extra)
    try:
        recs = rec.recommend(hist, fetch, timestamps=None if times is None else [times], **params)
    except RecvecError as e:
        raise api_error(e, "items") from None
    recs = _without(recs, extra, k)
    if skipped:
        recs = dataclasses.replace(recs, skipped=tuple(skipped))
    query = _query("user", k, params, items=items, **({"exclude": exclude} if exclude else {}))
    return result_payload(snap.loaded, query, recs)


def _all_int64(values: list) -> bool:
    """Every value a Python int (not a bool) within int64."""
    if set(map(type, values)) - {int}:
        return False
    return not values or (INT64_MIN <= min(values) and max(values) <= INT64_MAX)


def _recommend_ints(snap, items: list, k: int, times, unknown: str, params: dict) -> dict:
    """``recommend`` for the common request (integer ids on an integer artifact, no ``exclude``):
    the Recommender looks the ids up once and names unknown ones itself; a k over the items the
    history leaves is the same 422 as on the general path (the Recommender cuts k and says so)."""
    rec = snap.loaded.recommender
    try:
        recs = rec.recommend(np.asarray(items, dtype=np.int64), k, unknown=unknown,
                             timestamps=None if times is None else [times], **params)
    except RecvecError as e:
        raise api_error(e, "items") from None
    if recs.note is not None:
        raise _too_few(k, len(recs.ids), len(rec.items))
    return result_payload(snap.loaded, _query("user", k, params, items=items), recs)


def _too_few(k: int, available: int, n: int) -> ApiError:
    return ApiError(422, "out_of_range", f"k {k} is larger than the {max(available, 0):,} items that can be "
                    f"returned ({n:,} in the index, minus the history and exclude)", "k")


def recommend_batch(snap, histories: list, *, k: int, timestamps: list | None = None, exclude: list | None = None,
                    unknown: str = "error", params: dict) -> dict:
    """Top-k for each history of ``histories`` from one snapshot: ``{"query": {"type": "batch", ...},
    "batch": [<the shape of one answer>, ...]}``."""
    if timestamps is not None and (not isinstance(timestamps, list) or len(timestamps) != len(histories)):
        got = len(timestamps) if isinstance(timestamps, list) else type(timestamps).__name__
        raise ApiError(422, "validation", f"timestamps must hold one list per history: {got} for "
                       f"{len(histories)} histories", "timestamps")
    parsed = []
    for i, h in enumerate(histories):
        times = None if timestamps is None else check_times(timestamps[i], len(h), f"timestamps[{i}]")
        parsed.append(known_ids(snap, h, f"histories[{i}]", unknown, times))
    extra = _exclusions(snap, exclude)
    fetches = [_fetch_k(snap, k, hist, extra) for hist, _, _ in parsed]
    rec = snap.loaded.recommender
    longest = max((len(_distinct(p[0])) for p in parsed), default=0)
    fetch = k + len(extra)
    try:
        if fetch <= len(rec.items) - longest:
            ts = None if timestamps is None else [p[1] for p in parsed]
            answers = rec.recommend_batch([p[0] for p in parsed], fetch, timestamps=ts, **params)
        else:  # an exclusion list too long for one shared k: each history on its own
            answers = [rec.recommend(p[0], f, timestamps=None if p[1] is None else [p[1]], **params)
                       for p, f in zip(parsed, fetches)]
    except RecvecError as e:
        raise api_error(e, "histories") from None
    out = []
    for h, (_, _, skipped), recs in zip(histories, parsed, answers):
        recs = _without(recs, extra, k)
        if skipped:
            recs = dataclasses.replace(recs, skipped=tuple(skipped))
        out.append(result_payload(snap.loaded, _query("user", k, params, items=h), recs))
    query = _query("batch", k, params, histories=len(histories), **({"exclude": exclude} if exclude else {}))
    return {"query": query, "batch": out}


def similar(snap, item_id: Any, *, k: int, params: dict) -> dict:
    """The k items most similar to ``item_id`` (404 ``unknown_id`` on ``item_id`` when the artifact
    does not hold it)."""
    value = as_id(item_id, snap.int_ids)
    if value is None or value not in snap.loaded.recommender.items:
        raise unknown_ids([item_id if value is None else value], "item_id", status=404)
    try:
        recs = snap.loaded.recommender.similar(value, k, **params)
    except RecvecError as e:
        raise api_error(e, "item_id") from None
    query = _query("similar", k, params, item=value, title=snap.loaded.title(value))
    return result_payload(snap.loaded, query, recs)


def search_text(snap, text: str, *, k: int, params: dict) -> dict:
    """The k items nearest to a free-text query, encoded by the artifact's own encoder (text indexes
    only: 400 ``unsupported`` on ``text`` otherwise)."""
    if snap.embedder is None:
        raise ApiError(400, "unsupported", f"text queries need a text index; this one holds "
                       f"{snap.loaded.artifact.model_kind} vectors", "text")
    if not text.strip():
        raise ApiError(422, "validation", "the query text is empty", "text")
    with snap.embed_lock:  # tokenizers are not safe to share between threads
        q = snap.embedder.encode_queries([text])
    try:
        recs = snap.loaded.recommender.search_vectors(q, k, **params)[0]
    except RecvecError as e:
        raise api_error(e, "text") from None
    return result_payload(snap.loaded, _query("text", k, params, text=text), recs)
