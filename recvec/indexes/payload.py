"""The JSON shape of an answer, shared by ``recvec query --json`` and ``recvec serve``:
``{"query": {...}, "results": [{"id", "score", "title"}, ...]}``.

Ids come out as the artifact holds them (numpy int64 -> a Python int; a string id stays a string),
scores as Python floats, titles from the artifact's catalogue ("" where it has none)."""

from __future__ import annotations

import json
from typing import Any

#: The answer header naming the artifact version that computed an answer (``recvec serve``).
VERSION_HEADER = "x-recvec-artifact"


def plain_id(value: Any) -> Any:
    """An id as JSON writes it: a numpy scalar becomes the Python int/str it holds; others unchanged."""
    return value.item() if hasattr(value, "item") else value


def titles_of(loaded, ids) -> list[str]:
    """The catalogue titles of external ``ids`` of ``loaded`` (a ``LoadedIndex``), one lookup for all;
    "" for an id the index does not hold or when the artifact has no titles."""
    titles = loaded.artifact.catalog.get("titles") or []
    if not len(ids) or not titles:
        return [""] * len(ids)
    rows = loaded.recommender.items.rows(ids, missing="mask")
    return [titles[r] if 0 <= r < len(titles) else "" for r in rows.tolist()]


def result_payload(loaded, query: dict, recs) -> dict:
    """``{"query": query, "results": [{"id", "score", "title"}, ...]}`` for ``recs`` (a
    ``Recommendations``) answered by ``loaded``; ``query`` gains ``fallback`` (why the ranking is not
    personal), ``note`` (why fewer than k came back) and ``skipped_unknown`` (history ids skipped as
    unknown) when they apply."""
    titles = titles_of(loaded, recs.ids)
    results = [{"id": plain_id(i), "score": float(s), "title": t}
               for i, s, t in zip(recs.ids.tolist(), recs.scores.tolist(), titles)]
    if recs.fallback:
        query = {**query, "fallback": recs.fallback}
    if recs.note:
        query = {**query, "note": recs.note}
    if recs.skipped:
        query = {**query, "skipped_unknown": [plain_id(i) for i in recs.skipped]}
    return {"query": query, "results": results}


def to_json(payload: dict) -> bytes:
    """``payload`` as compact UTF-8 JSON: orjson (about 15x faster than the json module on an answer),
    the json module for what orjson refuses (an echoed integer beyond 64 bits)."""
    import orjson

    try:
        return orjson.dumps(payload)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(payload, separators=(",", ":")).encode("utf-8")
