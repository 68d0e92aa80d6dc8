"""Synthetic structured catalogues for the latency benchmark: item vectors, users' histories and the
query vectors a service would build from them.

Isotropic random vectors are the worst case for every ANN method and look nothing like item
factors, so these are built to resemble them:

- **clustered**: items belong to ``n_clusters`` clusters (about sqrt(n) by default) of lognormal
  sizes; an item is its cluster centre plus within-cluster noise;
- **low intrinsic dimension**: centres and noise live in an ``intrinsic_dim``-dimensional latent
  space with a power-law spectrum, embedded in d dimensions by a random orthonormal map, plus a
  little isotropic noise in all d dimensions (the defaults are calibrated on real spectra: see
  :class:`CatalogSpec`);
- **norm spread like ALS factors**: each item's direction gets a lognormal norm
  (``norm_sigma``), and, as in ALS, popular items (the ones histories draw most) have the larger
  norms.

Users: each picks 1-3 clusters and draws a history of lognormal length (its median and clipping
those of ML-1M's train histories) from them, items drawn in proportion to their norm. The query
vector is what the engine builds at query time: the ALS fold-in over the history
(``user_encoder="fold-in"``, the default for d <= 128) or the mean of the history's vectors
(``"mean"``, text-encoder style, the default above 128). Histories are excluded from the results.

Generation is seeded and chunked (``chunk`` items at a time), so a large catalogue needs little
more memory than the output array.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from recvec.checks import check_int, physical_memory_bytes
from recvec.engine.users import ALSFoldIn, MeanEncoder
from recvec.errors import RecvecError, shown
from recvec.progress import progress as progress_lines

USER_ENCODERS = ("fold-in", "mean")


#: The spread (std) of log item norms of the default catalogue: ML-1M's 64-factor ALS item factors'.
DEFAULT_NORM_SIGMA = 1.2


@dataclass(frozen=True)
class CatalogSpec:
    """A seeded synthetic catalogue of ``n`` items of dimension ``d`` (see module doc).

    The defaults match real spectra (PCA dimensions holding 50% / 90% of the variance of the unit
    directions): d=64 gives 15 / 42 (ML-1M's ALS factors: 15 / 48), d=384 gives 28 / 115
    (all-MiniLM-L6-v2 on ML-1M titles: 30 / 159); ``norm_sigma`` 1.2 is the spread of log-norms of
    ML-1M's 64-factor ALS item factors; histories have a median length of ~57, clipped to
    [16, 500] (ML-1M's train histories). RecvecError for invalid sizes or an unknown encoder."""

    n: int
    d: int = 64
    seed: int = 0
    n_clusters: int | None = None  # None: round(sqrt(n)), at least 8
    intrinsic_dim: int | None = None  # None: 7d/8 up to d=128 (56 for d=64), else d/2 (192 for 384)
    spectrum_decay: float = 0.2  # latent axis j has std (j+1)**-decay
    within_cluster: float = 0.6  # within-cluster std relative to the centres' spread
    ambient_noise: float = 0.05  # isotropic noise in all d dimensions (relative)
    norm_sigma: float = DEFAULT_NORM_SIGMA  # std of log item norms (ML-1M ALS item factors: 1.22)
    user_encoder: str | None = None  # None: "fold-in" for d <= 128, else "mean"
    regularization: float = 0.01  # the fold-in's (the lab's ALS regularization)
    chunk: int = 131072

    def __post_init__(self) -> None:
        for name in ("n", "d", "chunk"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise RecvecError(f"synthetic catalogue {name} must be a positive integer, got {shown(v)}")
        if self.n < 100:
            raise RecvecError(f"a synthetic catalogue needs at least 100 items, got {self.n}")
        check_int("synthetic catalogue d", self.d, 1, 65_536)
        need, have = 4 * self.n * self.d, physical_memory_bytes()
        if have and need > have // 2:
            raise RecvecError(f"a synthetic catalogue of {self.n:,} x {self.d} float32 vectors takes "
                              f"{need / 2**30:.1f} GiB, more than half of this machine's {have / 2**30:.1f} GiB "
                              "of memory (its indexes need as much again); choose fewer items or dimensions")
        if self.user_encoder is not None and self.user_encoder not in USER_ENCODERS:
            raise RecvecError(f"unknown user encoder {shown(self.user_encoder)}: use {', '.join(USER_ENCODERS)}")
        if isinstance(self.norm_sigma, bool) or not isinstance(self.norm_sigma, (int, float)) \
                or not 0 <= self.norm_sigma <= 4:
            raise RecvecError(f"synthetic catalogue norm_sigma must be a number in 0..4, got {shown(self.norm_sigma)}")
        if self.intrinsic_dim is not None and not 1 <= self.intrinsic_dim <= self.d:
            raise RecvecError(f"intrinsic_dim must be in 1..d={self.d}, got {self.intrinsic_dim}")

    @property
    def clusters(self) -> int:
        """Number of clusters: ``n_clusters``, else round(sqrt(n)) but at least 8."""
        return self.n_clusters or max(8, int(round(np.sqrt(self.n))))

    @property
    def rank(self) -> int:
        """Latent (intrinsic) dimension: ``intrinsic_dim``, else round(7d/8) (at least 1) for
        d <= 128 and d // 2 above."""
        if self.intrinsic_dim:
            return self.intrinsic_dim
        return max(1, int(round(0.875 * self.d))) if self.d <= 128 else self.d // 2

    @property
    def encoder(self) -> str:
        """The query-time user encoder: ``user_encoder``, else "fold-in" for d <= 128 and "mean" above."""
        return self.user_encoder or ("fold-in" if self.d <= 128 else "mean")

    @property
    def name(self) -> str:
        """The catalogue's name in results and reports: ``synthetic-{n}x{d}``, with ``-sigma{s}`` when
        ``norm_sigma`` is not the default's (a catalogue with a wider or narrower norm spread)."""
        sigma = "" if self.norm_sigma == DEFAULT_NORM_SIGMA else f"-sigma{self.norm_sigma:g}"
        return f"synthetic-{self.n}x{self.d}{sigma}"

    def to_dict(self) -> dict:
        """JSON-ready: every field plus the resolved ``clusters``, ``rank`` and ``encoder``."""
        return {**asdict(self), "clusters": self.clusters, "rank": self.rank, "encoder": self.encoder}


@dataclass(frozen=True)
class Catalogue:
    """Item vectors plus users: their histories (item rows, to exclude) and query vectors."""

    name: str
    vectors: np.ndarray  # (n, d) float32
    histories: list[np.ndarray]  # per user, item rows
    queries: np.ndarray  # (n_users, d) float32, built from the histories
    params: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of items (rows of ``vectors``)."""
        return int(self.vectors.shape[0])

    @property
    def d(self) -> int:
        """Vector dimension (columns of ``vectors``)."""
        return int(self.vectors.shape[1])


def _rng(spec: CatalogSpec, *tag: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, spec.n, spec.d, *tag])


def _structure(spec: CatalogSpec):
    """Cluster centres (latent), cluster of every item, the latent->ambient map and axis scales."""
    rng = _rng(spec, 0)
    r, c = spec.rank, spec.clusters
    scales = (np.arange(1, r + 1, dtype=np.float64) ** -spec.spectrum_decay).astype(np.float32)
    centres = rng.standard_normal((c, r)).astype(np.float32) * scales
    sizes = rng.lognormal(0.0, 0.8, c)
    assign = rng.choice(c, size=spec.n, p=sizes / sizes.sum()).astype(np.int32)
    basis, _ = np.linalg.qr(rng.standard_normal((spec.d, r)))  # orthonormal columns
    return centres, assign, basis.T.astype(np.float32), scales


def item_vectors(spec: CatalogSpec, *, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, d) float32, cluster of each item) -- generated ``spec.chunk`` rows at a time."""
    centres, assign, basis, scales = _structure(spec)
    out = np.empty((spec.n, spec.d), dtype=np.float32)
    ambient = spec.ambient_noise * float(np.sqrt((scales ** 2).sum() / spec.d))
    starts = range(0, spec.n, spec.chunk)
    bar = progress_lines(spec.n, f"generate {spec.name}", "item", enabled=progress)
    for i, s in enumerate(starts):
        e = min(spec.n, s + spec.chunk)
        rng = _rng(spec, 1, i)
        lat = centres[assign[s:e]] + spec.within_cluster * rng.standard_normal((e - s, spec.rank)).astype(np.float32) * scales
        x = lat @ basis
        x += ambient * rng.standard_normal(x.shape).astype(np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        x *= rng.lognormal(0.0, spec.norm_sigma, (e - s, 1)).astype(np.float32) if spec.norm_sigma > 0 else 1.0
        out[s:e] = x
        bar.update(e - s)
    bar.close()
    return out, assign


def histories(spec: CatalogSpec, vectors: np.ndarray, assign: np.ndarray, n_users: int) -> list[np.ndarray]:
    """Users' histories (item rows): 1-3 clusters each, items drawn in proportion to their norm."""
    if n_users < 1:
        raise RecvecError(f"need at least one synthetic user, got {n_users}")
    rng = _rng(spec, 2, n_users)
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(spec.clusters + 1))
    norms = np.linalg.norm(vectors, axis=1).astype(np.float64)
    cluster_mass = np.add.reduceat(norms[order], bounds[:-1]) * (np.diff(bounds) > 0)
    cluster_p = cluster_mass / cluster_mass.sum()
    lengths = np.clip(np.round(rng.lognormal(np.log(57.0), 1.0, n_users)), 16, 500).astype(int)
    out = []
    for u in range(n_users):
        picked = rng.choice(spec.clusters, size=int(rng.integers(1, 4)), replace=False, p=cluster_p)
        members = np.concatenate([order[bounds[c]:bounds[c + 1]] for c in picked])
        want = min(int(lengths[u]), len(members), spec.n - 1)
        w = norms[members]
        rows = rng.choice(members, size=want, replace=False, p=w / w.sum())
        out.append(np.sort(rows).astype(np.int64))
    return out


def query_vectors(spec: CatalogSpec, vectors: np.ndarray, hist: list[np.ndarray]) -> np.ndarray:
    """The query-time user vectors (len(hist), d) float32 of the histories (fold-in or mean, per
    ``spec.encoder``)."""
    enc = ALSFoldIn(vectors, spec.regularization) if spec.encoder == "fold-in" else MeanEncoder(vectors)
    return user_encoder_queries(enc, hist)


def user_encoder_queries(encoder, hist: list[np.ndarray], batch: int = 256) -> np.ndarray:
    """``encoder.encode`` of the histories, ``batch`` at a time: (len(hist), d) float32, C-contiguous."""
    parts = [encoder.encode(hist[s:s + batch]) for s in range(0, len(hist), batch)]
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def user_encoder(spec: CatalogSpec, vectors: np.ndarray):
    """The UserEncoder a service over this catalogue would use (for the full-path latency)."""
    return ALSFoldIn(vectors, spec.regularization) if spec.encoder == "fold-in" else MeanEncoder(vectors)


def make_catalogue(spec: CatalogSpec, n_users: int, *, progress: bool = False) -> Catalogue:
    """Vectors, ``n_users`` histories and their query vectors."""
    vectors, assign = item_vectors(spec, progress=progress)
    hist = histories(spec, vectors, assign, n_users)
    queries = user_encoder_queries(user_encoder(spec, vectors), hist)
    return Catalogue(spec.name, vectors, hist, queries, {"synthetic": spec.to_dict(), "users": n_users})


def structure_summary(vectors: np.ndarray, *, sample: int = 20000, seed: int = 0) -> dict:
    """Numbers that say how item-factor-like a catalogue is: PCA dimensions holding 50/90% of the
    variance (directions, i.e. normalised rows) and the spread of log norms."""
    rng = np.random.default_rng(seed)
    x = vectors if len(vectors) <= sample else vectors[np.sort(rng.choice(len(vectors), sample, replace=False))]
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    u = x / np.maximum(norms, 1e-12)[:, None]
    s = np.linalg.svd(u - u.mean(0), compute_uv=False) ** 2
    c = np.cumsum(s) / s.sum()
    return {"pca50": int(np.searchsorted(c, 0.5)) + 1, "pca90": int(np.searchsorted(c, 0.9)) + 1,
            "log_norm_sd": float(np.log(np.maximum(norms, 1e-12)).std())}
