"""From a fitted ItemModel to a saved artifact, and from an artifact back to a Recommender.

Everything a query needs to build the user vector travels in the artifact: the item vectors
(ALS item factors, text embeddings, hybrid or sequence vectors), popularity for the fallback, the
user-encoder parameters in the manifest's ``user_encoder`` (ALS regularization/alpha and recency
weighting, the content mean's weighting, a hybrid's build weight, a sequence model's config) and
the arrays it needs besides the index vectors (a hybrid's raw ALS factors and content vectors; a
sequence model's weights as safetensors bytes in a uint8 array -- nothing is pickled)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from recvec.engine.data import Catalog, Dataset
from recvec.engine.models.fit import ItemModel
from recvec.engine.models.text import get_embedder
from recvec.engine.recommender import Recommender
from recvec.engine.users import encoder_from_params
from recvec.engine.vocab import Vocabulary
from recvec.errors import ArtifactError, RecvecError
from recvec.indexes import backends
from recvec.indexes.artifact import (
    Artifact,
    load_artifact,
    read_backend_entry,
    save_artifact,
)
from recvec.indexes.backends.base import BackendOptions
from recvec.indexes.similar import ARRAY as SIMILAR_ARRAY
from recvec.indexes.similar import build_similar, open_similar
from recvec.indexes.spec import IndexSpec


def catalog_for(items: Vocabulary, catalog: Catalog) -> dict:
    """Titles and genres aligned with the index rows (blank for ids the catalogue lacks)."""
    pos = {m: i for i, m in enumerate(catalog.ids.tolist())}
    idx = [pos.get(m) for m in items.ids.tolist()]
    return {"titles": [catalog.titles[i] if i is not None else "" for i in idx],
            "genres": [catalog.genres[i] if i is not None else "" for i in idx]}


def build_artifact(dataset: Dataset, model: ItemModel, spec: IndexSpec, dest: str, *,
                   endpoint_url: str | None = None, seed: int = 0, extra_manifest: dict | None = None,
                   backend: BackendOptions | None = None, similar: IndexSpec | None = None) -> dict:
    """Build the index over the model's item vectors on ``backend`` (default: FAISS in process) and
    save the artifact at ``dest``; returns the manifest head. ``similar``: also a cosine index of that
    kind over the normalised vectors for ``Recommender.similar`` (``recvec.indexes.similar``; none
    when the vectors are normalised already: the main index answers by cosine then). A backend
    serving the index elsewhere (a Milvus collection, a PostgreSQL table) is created here, new on
    every build, and dropped again if the artifact cannot be saved; once the artifact is published,
    the one the previous artifact at ``dest`` pointed at is retired (``Backend.retire``; the head's
    ``retired`` says what was done)."""
    options = backend or BackendOptions()
    be = backends.get(options.name)
    options = be.check(spec, options, dest)
    previous = read_backend_entry(dest, endpoint_url=endpoint_url)  # a served index the old artifact points at
    t0 = time.perf_counter()
    index = be.build(model.item_vectors, spec, options, seed=seed)
    build_s = time.perf_counter() - t0
    try:
        extra_arrays, similar_entry = {}, {}
        if similar is not None and not model.normalized:
            raw, entry = build_similar(model.item_vectors, similar, seed=seed)
            extra_arrays, similar_entry = {SIMILAR_ARRAY: raw}, {"similar": entry}
        cfg = model.config
        manifest = {
            "model": {"kind": cfg.kind, "params": cfg.params()},
            "encoder": cfg.encoder if cfg.kind in ("text", "hybrid") else None,
            "pooling": cfg.pooling if cfg.kind in ("text", "hybrid") else None,
            "normalized": bool(model.normalized),
            "user_encoder": model.user_encoder.params(),
            "index": {"spec": str(spec), **index.describe()},
            "build_time_s": build_s,
            "data_fingerprint": dataset.fingerprint,
            "data_source": dataset.source if "://" not in dataset.source else dataset.source.split("?")[0],
            "data_format": dataset.format,
            **similar_entry,
            **(extra_manifest or {}),
        }
        arrays = {"item_vectors": model.item_vectors, "popularity": model.popularity, **model.arrays, **extra_arrays}
        save_artifact(dest, index=index, item_ids=model.items.ids, arrays=arrays,
                      catalog=catalog_for(model.items, dataset.catalog), manifest=manifest, endpoint_url=endpoint_url)
        entry = be.manifest_entry(index)
    except BaseException:
        try:
            be.discard(index)  # nothing points at what the failed save built
        except RecvecError:
            pass  # the save error is the one to report
        raise
    finally:
        index.close()
    if previous is not None:
        # the new artifact is published: only now may the collection / table the old one pointed at go
        retired = backends.get(previous["kind"]).retire(previous, entry)
        if retired:
            manifest["retired"] = retired
    return manifest


@dataclass(frozen=True)
class LoadedIndex:
    """An opened artifact and the Recommender over it (what ``recvec query`` answers from)."""

    artifact: Artifact
    recommender: Recommender

    def title(self, item_id) -> str:
        """The catalogue title of external ``item_id``; "" when the id is unknown or there are no titles."""
        row = self.recommender.items.rows([item_id], missing="mask")[0]
        titles = self.artifact.catalog.get("titles") or []
        return titles[row] if 0 <= row < len(titles) else ""


def _id_kind(art: Artifact) -> str:
    """What the artifact's ids are called in messages: "movie" for MovieLens data, else "item"."""
    fmt = art.manifest.get("data_format")
    other = art.item_ids.dtype.kind == "U" or (isinstance(fmt, str) and not fmt.startswith("ml-"))
    return "item" if other else "movie"


def recommender_from_artifact(art: Artifact, *, hybrid_weight: float | None = None) -> Recommender:
    """A Recommender over the artifact; ``hybrid_weight`` overrides a hybrid index's ALS share per query."""
    items = Vocabulary(art.item_ids, kind=_id_kind(art))
    vectors = art.item_vectors
    if vectors is None:
        raise ArtifactError("artifact has no item_vectors: user vectors cannot be built at query time")
    encoder = encoder_from_params(art.manifest.get("user_encoder", {}), art.arrays, vectors, n_items=len(items),
                                  hybrid_weight=hybrid_weight)
    pop = art.arrays.get("popularity")
    if pop is None:
        pop = np.zeros(len(items), np.float32)
    similar = None
    if "similar" in art.manifest or SIMILAR_ARRAY in art.arrays:
        similar = open_similar(art.manifest.get("similar"), art.arrays.get(SIMILAR_ARRAY), len(items), vectors.shape[1])
    return Recommender(art.index, items, encoder, pop, item_vectors=vectors,
                       normalized=bool(art.manifest.get("normalized", False)), similar_index=similar)


def open_index(src: str, *, endpoint_url: str | None = None, hybrid_weight: float | None = None) -> LoadedIndex:
    """Load the artifact at ``src`` (a directory or ``s3://bucket/prefix``) and build its Recommender;
    ``hybrid_weight`` overrides a hybrid index's first-part share per query. ArtifactError for a
    missing, corrupt or unsupported artifact; RecvecError for a hybrid weight on another kind of index."""
    art = load_artifact(src, endpoint_url=endpoint_url)
    return LoadedIndex(art, recommender_from_artifact(art, hybrid_weight=hybrid_weight))


def text_query_vectors(art: Artifact, texts: list[str]) -> np.ndarray:
    """Encode free-text queries with the artifact's own encoder (text indexes only)."""
    if art.model_kind != "text":
        raise RecvecError(f"text queries need a text index; this one holds {art.model_kind} vectors "
                          "(build one with --model text)")
    emb = get_embedder(art.manifest["encoder"], art.manifest["pooling"])
    if emb.dim != art.dim:
        raise ArtifactError(f"encoder {art.manifest['encoder']} gives {emb.dim}-d vectors but the index holds "
                            f"{art.dim}-d vectors")
    return emb.encode_queries(texts)


def recommender_for(model: ItemModel, spec: IndexSpec, *, seed: int = 0, similar: IndexSpec | None = None
                    ) -> Recommender:
    """An in-memory Recommender over a fitted model: the same index, encoder, fallback and similar
    index an artifact built with ``spec`` (and ``similar``) would give (without writing it)."""
    index = backends.get(backends.DEFAULT).build(model.item_vectors, spec, seed=seed)
    sim = None
    if similar is not None and not model.normalized:
        raw, entry = build_similar(model.item_vectors, similar, seed=seed)
        sim = open_similar(entry, raw, len(model.items), model.item_vectors.shape[1])
    return Recommender(index, model.items, model.user_encoder, model.popularity, item_vectors=model.item_vectors,
                       normalized=model.normalized, similar_index=sim)
