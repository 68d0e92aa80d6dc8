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
from recvec.engine.models.fit import ConstantEncoder, ItemModel
from recvec.engine.recommender import Recommender
from recvec.engine.users import ALSFoldIn, MeanEncoder
from recvec.engine.vocab import Vocabulary
from recvec.engine.weighting import RecencyWeighting, weighting_or_none
from recvec.errors import ArtifactError, RecvecError, shown
from recvec.indexes.artifact import (Artifact, create_backend_index, finish_backend_index, load_artifact,
                                     save_artifact)
from recvec.indexes.search import ItemIndex
from recvec.indexes.spec import IndexSpec, build_index, describe_index


def user_encoder_params(model: ItemModel) -> dict:
    """How a query builds the user vector, as stored in the manifest."""
    if model.encoder_params:
        return model.encoder_params
    cfg = model.config
    if cfg.kind == "als":
        return {"kind": "als_fold_in", "regularization": cfg.als.regularization, "alpha": cfg.als.alpha}
    if cfg.kind == "text":
        return {"kind": "mean"}
    return {"kind": "constant"}


def catalog_for(items: Vocabulary, catalog: Catalog) -> dict:
    """Titles and genres aligned with the index rows (blank for ids the catalogue lacks)."""
    pos = {int(m): i for i, m in enumerate(catalog.ids)}
    idx = [pos.get(int(m)) for m in items.ids]
    return {"titles": [catalog.titles[i] if i is not None else "" for i in idx],
            "genres": [catalog.genres[i] if i is not None else "" for i in idx]}


def build_artifact(dataset: Dataset, model: ItemModel, spec: IndexSpec, dest: str, *,
                   endpoint_url: str | None = None, seed: int = 0, extra_manifest: dict | None = None,
                   backend: dict | None = None) -> dict:
    """Build the index over the model's item vectors and save the artifact; returns the manifest head.

    ``backend`` (from ``artifact.backend_options``, optionally with "progress": True) serves the index
    from Milvus instead of FAISS: the collection is created here, and the artifact points at it."""
    t0 = time.perf_counter()
    served = create_backend_index(model.item_vectors, spec, backend, dest)  # None: FAISS
    index = build_index(model.item_vectors, spec, seed=seed) if served is None else served
    build_s = time.perf_counter() - t0
    cfg = model.config
    manifest = {
        "model": {"kind": cfg.kind, "params": cfg.params()},
        "encoder": cfg.encoder if cfg.kind in ("text", "hybrid") else None,
        "pooling": cfg.pooling if cfg.kind in ("text", "hybrid") else None,
        "normalized": bool(model.normalized),
        "user_encoder": user_encoder_params(model),
        "index": {"spec": str(spec), **(describe_index(index) if served is None else served.describe())},
        "build_time_s": build_s,
        "data_fingerprint": dataset.fingerprint,
        "data_source": dataset.source if "://" not in dataset.source else dataset.source.split("?")[0],
        "data_format": dataset.format,
        **(extra_manifest or {}),
    }
    arrays = {"item_vectors": model.item_vectors, "popularity": model.popularity, **model.arrays}
    with finish_backend_index(served):
        save_artifact(dest, index=index, item_ids=model.items.ids, arrays=arrays,
                      catalog=catalog_for(model.items, dataset.catalog), manifest=manifest, endpoint_url=endpoint_url)
    return manifest


@dataclass(frozen=True)
class LoadedIndex:
    artifact: Artifact
    recommender: Recommender

    def title(self, item_id: int) -> str:
        row = self.recommender.items.rows([item_id], missing="mask")[0]
        titles = self.artifact.catalog.get("titles") or []
        return titles[row] if 0 <= row < len(titles) else ""


def _weighting(ue: dict) -> RecencyWeighting | None:
    try:
        return weighting_or_none(RecencyWeighting.from_dict(ue.get("weighting")))
    except RecvecError as e:
        raise ArtifactError(f"manifest.json user_encoder: {e}") from None


def _array(art: Artifact, name: str) -> np.ndarray:
    a = art.arrays.get(name)
    if a is None:
        raise ArtifactError(f"artifact lacks the array {shown(name)} its user encoder ({art.manifest['user_encoder']['kind']}) "
                            "needs; rebuild it")
    return a


def user_encoder_from(ue: dict, vectors: np.ndarray, art: Artifact, *, hybrid_weight: float | None = None):
    """Rebuild the query-time user encoder described by a manifest's ``user_encoder``."""
    if not isinstance(ue, dict):
        raise ArtifactError("manifest.json: user_encoder must be an object")
    kind = ue.get("kind")
    try:
        if kind == "als_fold_in":
            return ALSFoldIn(vectors, float(ue["regularization"]), float(ue.get("alpha", 1.0)), _weighting(ue))
        if kind == "mean":
            return MeanEncoder(vectors, _weighting(ue))
        if kind == "constant":
            return ConstantEncoder()
        if kind == "hybrid":
            from recvec.engine.models.hybrid import HybridEncoder

            parts = [_hybrid_part(p, art) for p in ue["parts"]]
            if len(parts) != 2:
                raise ArtifactError(f"manifest.json: a hybrid user_encoder needs 2 parts, got {len(parts)}")
            return HybridEncoder(parts[0], parts[1], float(ue["build_weight"]), hybrid_weight)
        if kind == "sequence":
            return _sequence_model(ue, art, len(art.item_ids)).encoder()
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"manifest.json: user_encoder {shown(kind)} is malformed ({type(e).__name__}: {e})") from None
    raise ArtifactError(f"manifest.json: unknown user_encoder kind {shown(kind)}")


def _hybrid_part(p: dict, art: Artifact):
    """One hybrid part (name, encoder over the index rows, its item vectors) from the manifest."""
    from recvec.engine.models.hybrid import Part, RemappedEncoder

    name = p.get("name")
    if name == "sequence":
        rows = _array(art, p["rows"]) if p.get("rows") else None
        n_model = len(art.item_ids) if rows is None else int(rows.max(initial=-1)) + 1
        model = _sequence_model(p, art, n_model)
        enc, vecs = model.encoder(), model.item_vectors()
        if rows is not None:
            if rows.shape != (len(art.item_ids),):
                raise ArtifactError(f"sequence_rows has shape {rows.shape}, expected ({len(art.item_ids)},)")
            full = np.zeros((len(rows), vecs.shape[1]), np.float32)
            full[rows >= 0] = vecs[rows[rows >= 0]]
            enc, vecs = RemappedEncoder(enc, rows), full
        return Part("sequence", enc, vecs)
    vectors = _array(art, p["array"])
    return Part(name, user_encoder_from(p, vectors, art), vectors)


def _sequence_model(ue: dict, art: Artifact, num_items: int):
    from safetensors import SafetensorError
    from safetensors.numpy import load

    from recvec.engine.models.sequence import SequenceConfig, SequenceModel

    raw = _array(art, str(ue.get("weights", "sequence_weights")))
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ArtifactError(f"sequence weights must be a 1-d uint8 array of safetensors bytes, got {raw.dtype} {raw.shape}")
    try:
        state = load(raw.tobytes())
    except (SafetensorError, ValueError) as e:
        raise ArtifactError(f"sequence weights are not valid safetensors: {e}") from None
    try:
        config = SequenceConfig.from_dict(ue["config"])
    except RecvecError as e:
        raise ArtifactError(f"manifest.json user_encoder config: {e}") from None
    model = SequenceModel.from_arrays(config, state)
    if model.num_items != num_items:
        raise ArtifactError(f"sequence weights cover {model.num_items} items but the index expects {num_items}")
    return model


def recommender_from_artifact(art: Artifact, *, hybrid_weight: float | None = None) -> Recommender:
    """A Recommender over the artifact; ``hybrid_weight`` overrides a hybrid index's ALS share per query."""
    items = Vocabulary(art.item_ids, kind="movie")
    vectors = art.item_vectors
    if vectors is None:
        raise ArtifactError("artifact has no item_vectors: user vectors cannot be built at query time")
    ue = art.manifest.get("user_encoder", {})
    if hybrid_weight is not None and ue.get("kind") != "hybrid":
        raise RecvecError(f"a hybrid weight applies to hybrid indexes only; this one holds {art.model_kind} vectors")
    encoder = user_encoder_from(ue, vectors, art, hybrid_weight=hybrid_weight)
    pop = art.arrays.get("popularity")
    if pop is None:
        pop = np.zeros(len(items), np.float32)
    return Recommender(art.index, items, encoder, pop, item_vectors=vectors,
                       normalized=bool(art.manifest.get("normalized", False)))


def open_index(src: str, *, endpoint_url: str | None = None, hybrid_weight: float | None = None) -> LoadedIndex:
    art = load_artifact(src, endpoint_url=endpoint_url)
    return LoadedIndex(art, recommender_from_artifact(art, hybrid_weight=hybrid_weight))


def text_query_vectors(art: Artifact, texts: list[str]) -> np.ndarray:
    """Encode free-text queries with the artifact's own encoder (text indexes only)."""
    if art.model_kind != "text":
        raise RecvecError(f"text queries need a text index; this one holds {art.model_kind} vectors "
                          "(build one with --model text)")
    from recvec.engine.models.text import get_embedder

    emb = get_embedder(art.manifest["encoder"], art.manifest["pooling"])
    if emb.dim != art.dim:
        raise ArtifactError(f"encoder {art.manifest['encoder']} gives {emb.dim}-d vectors but the index holds "
                            f"{art.dim}-d vectors")
    return emb.encode_queries(texts)


def recommender_for(model: ItemModel, spec: IndexSpec, *, seed: int = 0) -> Recommender:
    """An in-memory Recommender over a fitted model: the same index, encoder and fallback an artifact
    built with ``spec`` would give (without writing it)."""
    index = ItemIndex(build_index(model.item_vectors, spec, seed=seed))
    return Recommender(index, model.items, model.user_encoder, model.popularity, item_vectors=model.item_vectors,
                       normalized=model.normalized)


def evaluate_served(recommender: Recommender, split, *, k: int = 10, depth: int | None = None, model: str = "served",
                    batch_size: int = 1024, params: dict | None = None, **query_params):
    """Evaluate through the serving path: each evaluable user's train history (external ids, time
    order, with timestamps) goes through ``recommender.recommend_batch`` -- the query-time user
    encoder and an exclusion-aware FAISS search -- and the held-out item is looked for in the top
    ``depth`` (default k; ask for more to read Recall@20 from the same ranks)."""
    from recvec.engine.evaluate import Evaluation
    from recvec.engine.metrics import ndcg_at_k, recall_at_k

    t0 = time.perf_counter()
    users, _ = split.evaluable()
    targets = split.items.id_of(split.evaluable()[1])
    histories, times = split.histories(), split.history_times()
    ranks = np.full(len(users), -1, dtype=np.int64)
    for start in range(0, len(users), batch_size):
        u = users[start : start + batch_size]
        recs = recommender.recommend_batch([split.items.id_of(histories[r]) for r in u], max(k, depth or k),
                                           timestamps=[times[r] for r in u], **query_params)
        for j, rec in enumerate(recs):
            hit = np.flatnonzero(rec.ids == targets[start + j])
            if hit.size:
                ranks[start + j] = int(hit[0])
    return Evaluation(model=model, k=k, recall=recall_at_k(ranks, k), ndcg=ndcg_at_k(ranks, k), users=len(users),
                      train_rows=len(split.train), test_rows=len(split.test), seconds=time.perf_counter() - t0,
                      ranks=ranks, params=params or {})
