"""What a benchmark sweeps: the index kinds ``--indexes`` takes, and the query-time settings
(HNSW efSearch, IVF nprobe) measured on each index built once, with their keyword arguments for
``search`` and their labels in tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

#: The index kinds benchmarked by default (flat, the exact reference, first).
INDEX_KINDS = ("flat", "hnsw", "ivf", "ivfsq", "ivfpq")
#: Also accepted by ``bench latency --indexes``: the HNSW graph in FAISS's insertion order, to measure
#: what the breadth-first node order of ``hnsw`` (reorder_for_locality) buys on the same catalogue;
#: FAISS's inner-product graph alone (``hnsw-plain``: no cosine links, insertion order), to measure
#: what ``link_cosine_neighbours`` buys; and the norm-banded graphs (``hnsw-bands``).
INDEX_CHOICES = ("flat", "hnsw", "hnsw-noreorder", "hnsw-plain", "hnsw-bands", "ivf", "ivfsq", "ivfpq")
#: HNSW efSearch values swept by default by ``bench latency`` (values below k are dropped).
EF_SEARCH = (16, 32, 64, 128, 256, 512)

_KIND = re.compile(r"^(flat|hnsw-noreorder|hnsw-plain|hnsw\d*-bands|hnsw|ivfsq|ivfpq|ivf)")


def query_settings(describe: dict, k: int, *, ef_search: Iterable[int] = EF_SEARCH,
                   nprobe: Iterable[int] | None = None) -> list[dict]:
    """The query-time settings to sweep on a built index, the index's own default marked.

    ``describe`` is the index's ``describe()`` dict. HNSW (``ef_search`` in it): each efSearch >= k
    (plus the default, raised to k); IVF (``nlist``): each nprobe in 1..nlist (default: powers of two
    up to nlist, and nlist), plus the default nprobe; anything else: one setting. Each setting is a
    dict of ``ef_search`` or ``nprobe`` and ``default`` (bool), e.g. ``{"ef_search": 64,
    "default": True}``; in ascending order."""
    out: list[dict] = []
    if "ef_search" in describe:
        default = int(describe["ef_search"])
        values = sorted({int(e) for e in ef_search if int(e) >= k} | {max(default, k)})
        out = [{"ef_search": e, "default": e == max(default, k)} for e in values]
    elif "nlist" in describe:
        nlist, default = int(describe["nlist"]), int(describe["nprobe"])
        if nprobe is None:
            cand = {1 << i for i in range(0, int(np.log2(max(nlist, 1))) + 1)} | {nlist}
        else:
            cand = {int(p) for p in nprobe}
        values = sorted({p for p in cand if 1 <= p <= nlist} | {default})
        out = [{"nprobe": p, "default": p == default} for p in values]
    else:
        out = [{"default": True}]
    return out


def search_kwargs(setting: dict) -> dict:
    """The keyword arguments of ``search`` for a setting: its ``ef_search`` / ``nprobe``, if any."""
    return {k: v for k, v in setting.items() if k in ("ef_search", "nprobe")}


def setting_label(setting: dict) -> str:
    """A setting as shown in tables: ``ef=64``, ``nprobe=8``, or ``-`` (nothing to set)."""
    if "ef_search" in setting:
        return f"ef={setting['ef_search']}"
    if "nprobe" in setting:
        return f"nprobe={setting['nprobe']}"
    return "-"


def index_kind(spec: str) -> str:
    """The kind an index spec names: ``hnsw32`` -> ``hnsw``, ``hnsw32-bands3`` -> ``hnsw-bands``,
    ``ivfsq256`` -> ``ivfsq``; else the spec itself."""
    m = _KIND.match(spec)
    if not m:
        return spec
    return "hnsw-bands" if m.group(1).endswith("-bands") else m.group(1)


def kind_order(spec: str) -> int:
    """Sort key of a spec: its kind's place in INDEX_CHOICES (unknown kinds last)."""
    k = index_kind(spec)
    return INDEX_CHOICES.index(k) if k in INDEX_CHOICES else len(INDEX_CHOICES)
