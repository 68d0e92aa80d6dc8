"""Index specs: what FAISS index to build (``IndexSpec``) and how to query it (``QueryParams``).

Every index is inner product (``faiss.METRIC_INNER_PRODUCT``): normalised vectors for text models,
raw factors for ALS. A spec string is one of the shorthands

    flat              exact IndexFlatIP
    hnsw | hnswM      HNSW graph over exact vectors (M links per node, default 32), each node's
                      free level-0 slots filled with its nearest cosine neighbours (every node
                      reachable: ``link_cosine_neighbours``), its nodes stored in breadth-first
                      order of the graph (``reorder_for_locality``); ``hnsw-noreorder`` /
                      ``hnswM-noreorder`` keeps FAISS's insertion order; ``hnsw-plain`` /
                      ``hnswM-plain`` is FAISS's inner-product graph alone (no cosine links,
                      insertion order), kept for comparison
    hnsw-bands[R]     norm-ranging HNSW: items split into norm bands whose largest norm is at most
    hnswM-bandsR      R times their smallest (default 3), each an L2 graph over vectors augmented
                      to its band's largest norm (``faiss_banded.BandedIndex``)
    ivf  | ivfN       IVF-Flat with N lists (default ~4*sqrt(n), clipped to what n allows)
    ivfsq | ivfsqN    IVF with 8-bit scalar quantisation
    ivfpq | ivfpqN    IVF with product quantisation (pq_m sub-quantisers, default ~d/4)

or any FAISS ``index_factory`` string ("IVF64,Flat", "HNSW16,Flat", "IVF64,SQ8", "PQ16", ...),
built with the inner-product metric; a factory string whose index is not inner product is refused.
Vectors are added in order, so FAISS ids are the row numbers 0..n-1 (a reordered HNSW graph is an
``IndexIDMap`` whose ids are those rows).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from recvec.checks import C_INT_MAX
from recvec.errors import RecvecError, shorten, shown

KINDS = ("flat", "hnsw", "hnsw-bands", "ivf", "ivfsq", "ivfpq", "factory")
SQ_TYPES = ("SQ4", "SQ6", "SQ8", "SQfp16", "SQbf16")

#: efSearch written into a freshly built HNSW index (FAISS's own default, 16, is too low for recall@10).
DEFAULT_EF_SEARCH = 64
#: Points k-means wants per centroid before FAISS warns; auto nlist stays under n / this.
_POINTS_PER_CENTROID = 39

_SHORTHAND = re.compile(r"^(flat|hnsw|ivfsq|ivfpq|ivf)(\d*)(-noreorder|-plain)?$")
_BANDS = re.compile(r"^hnsw(\d*)-bands(\d*)$")
#: Largest / smallest norm within a band of a ``hnsw-bands`` index when the spec names no number.
DEFAULT_BAND_RATIO = 3
_FACTORY_CHARS = re.compile(r"^[A-Za-z0-9_,.+\-]+$")

SPEC_HELP = ("flat, hnsw[M][-noreorder|-plain], hnsw[M]-bands[R], ivf[nlist], ivfsq[nlist], ivfpq[nlist] or a FAISS index_factory string "
             "such as 'IVF64,Flat', 'HNSW16,Flat' or 'PQ16'")


def _positive_int(value: Any, name: str, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise RecvecError(f"{name} must be an integer >= {minimum}, got {shown(value)}")


@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS index to build. ``nlist``/``pq_m`` None means chosen from the data size/dim."""

    kind: str = "flat"
    M: int = 32
    ef_construction: int = 200
    nlist: int | None = None
    sq: str = "SQ8"
    pq_m: int | None = None
    factory: str | None = None
    reorder: bool = True  # hnsw: store nodes in breadth-first graph order (see reorder_for_locality)
    cosine_links: bool = True  # hnsw: cosine neighbours in the free level-0 slots (link_cosine_neighbours)
    band_ratio: int = DEFAULT_BAND_RATIO  # hnsw-bands: largest / smallest norm within a band

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RecvecError(f"unknown index kind {shown(self.kind)}: use one of {', '.join(KINDS)}")
        _positive_int(self.M, "index M (HNSW links per node)", minimum=2)
        _positive_int(self.ef_construction, "index ef_construction")
        if self.nlist is not None:
            _positive_int(self.nlist, "index nlist")
        if self.pq_m is not None:
            _positive_int(self.pq_m, "index pq_m")
        if self.sq not in SQ_TYPES:
            raise RecvecError(f"unknown scalar quantiser {shown(self.sq)}: use one of {', '.join(SQ_TYPES)}")
        if (self.kind == "factory") != bool(self.factory):
            raise RecvecError("a factory string is needed exactly when kind is 'factory'")
        _positive_int(self.band_ratio, "index band_ratio (largest / smallest norm in a band of hnsw-bands)", minimum=2)
        for name in ("reorder", "cosine_links"):
            if not isinstance(getattr(self, name), bool):
                raise RecvecError(f"index {name} must be true or false, got {shown(getattr(self, name))}")

    @classmethod
    def parse(cls, text: str) -> IndexSpec:
        """A spec from ``--index`` text: a shorthand (see module doc) or a FAISS factory string."""
        if not isinstance(text, str) or not text.strip():
            raise RecvecError(f"empty index spec: use {SPEC_HELP}")
        raw = text.strip()
        b = _BANDS.match(raw.lower())
        if b:
            if b.group(2) and int(b.group(2)) < 2:
                raise RecvecError(f"index spec {shown(raw)}: the band norm ratio must be >= 2")
            return cls(kind="hnsw-bands", **({"M": int(b.group(1))} if b.group(1) else {}),
                       **({"band_ratio": int(b.group(2))} if b.group(2) else {}))
        m = _SHORTHAND.match(raw.lower())
        if m:
            kind, num, suffix = m.group(1), m.group(2), m.group(3)
            if suffix and kind != "hnsw":
                raise RecvecError(f"index spec {shown(raw)}: only hnsw takes {shown(suffix)}; use {SPEC_HELP}")
            if suffix:
                return cls(kind=kind, reorder=False, cosine_links=suffix == "-noreorder",
                           **({"M": int(num)} if num else {}))
            if not num:
                return cls(kind=kind)
            if kind == "flat":
                raise RecvecError(f"index spec {shown(raw)}: 'flat' takes no number; use {SPEC_HELP}")
            n = int(num)
            if n < 1:
                raise RecvecError(f"index spec {shown(raw)}: the number must be >= 1")
            return cls(kind=kind, M=n) if kind == "hnsw" else cls(kind=kind, nlist=n)
        # FAISS factory strings name their parts in upper case ("IVF64,Flat", "PQ16", "HNSW32").
        if _FACTORY_CHARS.match(raw) and raw[0].isupper():
            return cls(kind="factory", factory=raw)
        raise RecvecError(f"unknown index spec {shown(raw)}: use {SPEC_HELP}")

    def __str__(self) -> str:
        if self.kind == "factory":
            return str(self.factory)
        if self.kind == "flat":
            return "flat"
        if self.kind == "hnsw":
            if not self.cosine_links:  # parse makes these only with -plain; the "-reordered" form (no
                # shorthand parses it) names a graph from a manifest written before cosine links
                return f"hnsw{self.M}-plain" + ("-reordered" if self.reorder else "")
            return f"hnsw{self.M}" + ("" if self.reorder else "-noreorder")
        if self.kind == "hnsw-bands":
            return f"hnsw{self.M}-bands{self.band_ratio}"
        return f"{self.kind}{self.nlist or ''}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the spec string and every build parameter (for the artifact manifest)."""
        return {"spec": str(self), "kind": self.kind, "M": self.M, "ef_construction": self.ef_construction,
                "nlist": self.nlist, "sq": self.sq, "pq_m": self.pq_m, "factory": self.factory,
                "reorder": self.reorder, "cosine_links": self.cosine_links, "band_ratio": self.band_ratio}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexSpec:
        """Rebuild from :meth:`to_dict` output (``spec`` ignored, missing keys take their defaults,
        except ``cosine_links``: a manifest without it was built before them, so False);
        RecvecError for invalid values."""
        keys = ("kind", "M", "ef_construction", "nlist", "sq", "pq_m", "factory", "reorder", "band_ratio")
        return cls(**{k: d[k] for k in keys if k in d}, cosine_links=d.get("cosine_links", False))

    # -- resolved build parameters -------------------------------------------------------------
    def resolve_nlist(self, n: int) -> int:
        """Lists for n training vectors: the asked nlist clipped to n, or ~4*sqrt(n) within [1, n/39]."""
        if self.nlist is not None:
            return max(1, min(self.nlist, n))
        auto = int(round(4 * math.sqrt(n)))
        return max(1, min(auto, n // _POINTS_PER_CENTROID))

    def resolve_pq_m(self, d: int) -> int:
        """PQ sub-quantisers: the asked pq_m (must divide d), else the largest divisor of d <= d/4
        (4 dimensions per 8-bit code: 16x smaller than float32)."""
        if self.pq_m is not None:
            if d % self.pq_m:
                raise RecvecError(f"index pq_m={self.pq_m} must divide the vector dimension {d}")
            return self.pq_m
        return max(m for m in range(1, max(1, d // 4) + 1) if d % m == 0)

    def factory_string(self, n: int, d: int) -> str:
        """The FAISS index_factory string this spec builds for n vectors of dimension d."""
        if self.kind == "factory":
            return str(self.factory)
        if self.kind == "flat":
            return "Flat"
        if self.kind in ("hnsw", "hnsw-bands"):  # hnsw-bands: each band's graph (L2, built by BandedIndex)
            return f"HNSW{self.M},Flat"
        nlist = self.resolve_nlist(n)
        if self.kind == "ivf":
            return f"IVF{nlist},Flat"
        if self.kind == "ivfsq":
            return f"IVF{nlist},{self.sq}"
        nbits = min(8, int(math.floor(math.log2(max(n, 2)))))  # PQ needs >= 2**nbits training points
        return f"IVF{nlist},PQ{self.resolve_pq_m(d)}x{nbits}"


def default_nprobe(nlist: int) -> int:
    """nprobe written into a freshly built IVF index: about nlist/8 (at least 1).

    Recall@10 at this default: 0.95 on clustered test data; on raw ML-1M ALS factors (unnormalised
    inner product, 90 lists) only 0.81 unfiltered / 0.69 with train items excluded -- such vectors
    need nprobe ~ nlist/3 (0.97 / 0.92 at 32 of 90); pass --nprobe, or prefer hnsw/flat for ALS."""
    return max(1, min(nlist, int(math.ceil(nlist / 8))))


@dataclass(frozen=True)
class QueryParams:
    """Query-time knobs, settable per call without rebuilding: HNSW efSearch, IVF nprobe."""

    ef_search: int | None = None
    nprobe: int | None = None

    def __post_init__(self) -> None:
        for name in ("ef_search", "nprobe"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or not 1 <= value <= C_INT_MAX):
                raise RecvecError(f"{name} must be an integer from 1 to {C_INT_MAX}, got {shorten(repr(value))}",
                                  params=(name,))

    def check(self, k: int, *, is_hnsw: bool, nlist: int | None) -> None:
        """Refuse parameters that do not apply to this index or are out of range for k."""
        if self.ef_search is not None:
            if not is_hnsw:
                raise RecvecError("ef_search applies to HNSW indexes only; this index has no HNSW graph",
                                  params=("ef_search",))
            if self.ef_search < k:
                raise RecvecError(f"ef_search={self.ef_search} must be >= k ({k})", params=("ef_search",))
        if self.nprobe is not None:
            if nlist is None:
                raise RecvecError("nprobe applies to IVF indexes only; this index has no inverted lists",
                                  params=("nprobe",))
            if self.nprobe > nlist:
                raise RecvecError(f"nprobe={self.nprobe} must be <= the index's nlist ({nlist})", params=("nprobe",))
