"""The Spark engine: the split, the ALS fit, the item-text encoding and the evaluation on Apache
Spark (``local[N]`` on this machine, or a cluster: ``spark://HOST:7077``, ``yarn``, ``k8s://...``),
the same ItemModel out, so ``build_artifact`` writes the same artifact.

- **Split** (:mod:`.spark_data`): window functions over the interactions Spark read, the rows
  identical to ``leave_last_out``'s.
- **ALS**: ``pyspark.ml.recommendation.ALS(implicitPrefs=True)`` with ``rank`` = factors,
  ``maxIter`` = iterations, ``regParam`` = regularization, ``seed``, and ``alpha`` = recvec's alpha
  − 1. The confidences then agree: implicit weighs an observed (user, item) by ``alpha·value`` (the
  unobserved ones by 1), Spark by ``1 + alpha·value``, so recvec passes alpha − 1 (Spark needs
  alpha >= 0, hence recvec's alpha >= 1 here). The regularisation does not: Spark multiplies
  ``regParam`` by each user's (item's) number of positives when solving for that user (item)
  ("ALS-WR", weighted-λ), implicit uses λ as it is. The same number is therefore a much stronger
  penalty on Spark for active users and popular items: recvec passes it unchanged (the lab's 0.01
  stays small on Spark too, see the README for what it does to Recall), and a tuned implicit λ
  translates to roughly λ / (mean positives per user) on Spark. Only the item factors are
  collected to the driver (the artifact's vectors; the query-time fold-in needs nothing else);
  user factors stay in Spark for the evaluation.
- **Evaluation**: the item vectors (and the user encoder's params) broadcast; each partition of
  evaluable test users, with its train history as an array, scored by recvec's own batched
  evaluator (:func:`.spark_tasks.score_partition`: dense scores, history masked, tie-broken
  ranks); ranks collected and Recall/NDCG reduced on the driver.
- **Encoding**: item texts as a DataFrame, ``mapInPandas`` with the packaged encoder loaded once
  per Python worker (:func:`.spark_tasks.encode_partition`); vectors written to the same
  embedding cache file a local encoding writes.

Model kinds on Spark: ``popular``, ``als`` (with any query-time weighting) and ``text``; the others
(``als-time``, ``hybrid``, ``sequence``) run on ``--engine local``. Spark's own console progress
is off; each stage prints one recvec progress line.
"""

from __future__ import annotations

import time
import uuid
from functools import partial

import numpy as np

from recvec.engine.engines import EngineOptions, Prepared
from recvec.engine.engines.spark_session import SparkOptions, quiet_pyspark, start_session
from recvec.errors import DataError, RecvecError
from recvec.progress import progress as progress_lines

#: Model kinds the Spark engine fits.
SPARK_KINDS = ("popular", "als", "text")


def als_params(config) -> dict:
    """The ``pyspark.ml.recommendation.ALS`` parameters for an ALSConfig (module docstring).
    RecvecError naming ``alpha`` for alpha < 1 (Spark's confidence cannot go below 1)."""
    if config.alpha < 1.0:
        raise RecvecError(f"alpha {config.alpha:g} < 1 cannot run on Spark: Spark's confidence is 1 + alpha x value "
                          "(at least 1), implicit's alpha x value; use alpha >= 1 or --engine local",
                          params=("alpha",))
    return {"rank": config.factors, "maxIter": config.iterations, "regParam": config.regularization,
            "alpha": config.alpha - 1.0, "seed": config.seed, "implicitPrefs": True, "nonnegative": False}


class _Stage:
    """One progress line for a Spark stage (its jobs' own bars are off)."""

    def __init__(self, desc: str, enabled: bool):
        self.bar = progress_lines(1, f"spark: {desc}", "stage", enabled=enabled)

    def __enter__(self):
        return self.bar

    def __exit__(self, *exc):
        from recvec.progress import PlainProgress

        if exc[0] is None:
            if isinstance(self.bar, PlainProgress):
                self.bar.n = 1  # its one line comes at close
            else:
                self.bar.update(1)
        self.bar.close()


class _LazyScorer:
    """An ItemModel's eval_scorer for a model fitted on Spark: built on first call (from the split
    collected on the driver), so ``evaluate_model`` also works locally."""

    def __init__(self, build):
        self._build, self._scorer = build, None

    def __call__(self, rows):
        if self._scorer is None:
            self._scorer = self._build()
        return self._scorer(rows)


class SparkEngine:
    """See :mod:`recvec.engine.engines` for the contract and this module's docstring for what runs
    where. The session is started on first use (or an active one joined) and stopped by
    :meth:`close` only if this engine started it."""

    name = "spark"

    def __init__(self, options: EngineOptions = EngineOptions("spark")):
        self.options = SparkOptions(options.master, tuple(options.conf))
        self._session = None
        self._started = False
        # id(item factors) -> (the factors, Spark's user-factor DataFrame): the lab's evaluation of a
        # model fitted here scores with its fitted user factors (ItemModel.item_vectors is that array)
        self._user_factors: dict[int, tuple[np.ndarray, object]] = {}

    # ------------------------------------------------------------------------------ session
    @property
    def session(self):
        """The SparkSession (started or joined on first use)."""
        if self._session is None:
            self._session, self._started = start_session(self.options)
        return self._session

    def describe(self) -> dict:
        """``{"name": "spark", "master", "spark_version", "parallelism"}`` (starts the session)."""
        sc = self.session.sparkContext
        return {"name": self.name, "master": sc.master, "spark_version": sc.version,
                "parallelism": sc.defaultParallelism}

    def close(self) -> None:
        """Stop the session if this engine started it."""
        if self._session is not None and self._started:
            self._session.stop()
        self._session = None

    # ------------------------------------------------------------------------------ split
    def split(self, data, *, threshold: float = 4.0, endpoint_url: str | None = None,
              progress: bool = False) -> Prepared:
        """Read ``data`` into Spark (tables by Spark itself) and split it there (:mod:`.spark_data`)."""
        from recvec.engine.data import Dataset
        from recvec.engine.engines.spark_data import from_local, read_into_spark, spark_split

        with quiet_pyspark():
            if self._session is None:
                with _Stage(f"session ({self.options.resolved_master})", progress):
                    _ = self.session
            with _Stage("read", progress):
                data = from_local(self.session, data) if isinstance(data, Dataset) else \
                    read_into_spark(self.session, data, endpoint_url=endpoint_url, progress=progress)
            with _Stage("split (window functions)", progress):
                sp = spark_split(data, threshold)
        return Prepared(self.name, data.dataset, sp.train_rows, sp.test_rows, sp.items, threshold, sp)

    def local_split(self, prepared: Prepared):
        """The Spark split collected on the driver (:func:`.spark_data.local_split`)."""
        from recvec.engine.engines.spark_data import local_split

        with quiet_pyspark():
            return local_split(prepared.handle)

    # ------------------------------------------------------------------------------ ALS
    def fit_factors(self, prepared: Prepared, config, progress: bool):
        """(item factors (n_items, f) float32 in train item rows, Spark user-factor DataFrame)."""
        from pyspark.ml.recommendation import ALS
        from pyspark.sql import functions as F

        self._require_train(prepared)
        if not config.train_decay.is_uniform or config.train_decay.scale != 1.0:
            raise RecvecError("ALS with decayed training confidences (als-time) runs on --engine local",
                              params=("engine",))
        sp = prepared.handle
        parallelism = self.session.sparkContext.defaultParallelism
        als = ALS(userCol="u", itemCol="i", ratingCol="value", numUserBlocks=parallelism,
                  numItemBlocks=parallelism, coldStartStrategy="nan", **als_params(config.als))
        train = sp.train.select("u", "i", F.lit(1.0).cast("float").alias("value"))
        with quiet_pyspark(), _Stage(f"ALS fit ({config.als.iterations} iterations)", progress):
            fitted = als.fit(train)
            items = fitted.itemFactors.toPandas()
        n, f = len(prepared.items), config.als.factors
        factors = np.zeros((n, f), np.float32)
        factors[items["id"].to_numpy(np.int64)] = np.stack(items["features"].to_numpy()).astype(np.float32)
        if not np.isfinite(factors).all():
            raise RecvecError(f"Spark's ALS fit gave non-finite factors with alpha={config.als.alpha:g}, "
                              f"regularization={config.als.regularization:g}: lower alpha", params=("alpha",))
        self._user_factors[id(factors)] = (factors, fitted.userFactors)
        return factors, fitted.userFactors

    def _fitted_users(self, model):
        """Spark's user factors of a lab-path ALS model fitted here, else None."""
        entry = self._user_factors.get(id(model.item_vectors))
        return entry[1] if entry is not None and entry[0] is model.item_vectors and model.config.lab_path else None

    def fit_als(self, prepared: Prepared, config, *, progress: bool = False):
        """Spark's ALS as an ALSModel, user factors collected to the driver (rows: the split's users)."""
        from recvec.engine.models.als import ALSModel

        items, users_df = self.fit_factors(prepared, config, progress)
        with quiet_pyspark():
            users = users_df.toPandas()
        uf = np.zeros((prepared.handle.n_users, config.als.factors), np.float32)
        uf[users["id"].to_numpy(np.int64)] = np.stack(users["features"].to_numpy()).astype(np.float32)
        return ALSModel(config.als, uf, items)

    # ------------------------------------------------------------------------------ models
    def check(self, config) -> None:
        """RecvecError (naming ``engine`` or ``alpha``) when Spark cannot fit ``config``: a kind other than
        popular, als, text; ALS with alpha < 1. Cheap: commands call it before the split."""
        if config.kind not in SPARK_KINDS:
            raise RecvecError(f"--engine spark fits {', '.join(SPARK_KINDS)} models; {config.kind} runs on "
                              "--engine local", params=("engine",))
        if config.kind == "als":
            als_params(config.als)

    def fit(self, prepared: Prepared, config, *, progress: bool = False, cache_dir=None):
        """An ItemModel of kind popular, als or text fitted on Spark (module docstring); RecvecError
        as :meth:`check` says."""
        from recvec.engine.models.fit import ItemModel, query_time_scorer
        from recvec.engine.users import ALSFoldIn, ConstantEncoder, MeanEncoder
        from recvec.engine.vocab import Vocabulary
        from recvec.engine.weighting import weighting_or_none

        self.check(config)
        self._require_train(prepared)
        pop = prepared.handle.popularity
        items = prepared.items
        local = lambda: self.local_split(prepared)
        if config.kind == "popular":
            vecs = pop[:, None].astype(np.float32)
            return ItemModel(config, items, vecs, False, ConstantEncoder(), pop,
                             lambda rows: np.broadcast_to(pop, (len(rows), len(pop))))
        if config.kind == "als":
            factors, users_df = self.fit_factors(prepared, config, progress)
            enc = ALSFoldIn(factors, config.als.regularization, config.als.alpha,
                            weighting_or_none(config.query_weighting))

            def build():
                if config.lab_path:
                    return _factor_scorer(users_df, factors, prepared.handle.n_users)
                s = local()
                return query_time_scorer(enc, factors, s.histories(), s.history_times())

            return ItemModel(config, items, factors, False, enc, pop, _LazyScorer(build))
        catalog = prepared.dataset.catalog
        if not any(any(parts) for parts in catalog.text_parts()):
            raise RecvecError("the catalogue has no item text for a text encoder: give an item table with text "
                              "(--items FILE --item-columns id=COL,title=COL,text=COL+COL)")
        from recvec.engine.models.cache import encode_cached
        from recvec.engine.models.text import get_embedder

        embedder = get_embedder(config.encoder, config.pooling)
        text = encode_cached(embedder, catalog.ids, catalog.texts(embedder.sep_token), cache_dir,
                             encode=partial(self.encode, config.encoder, config.pooling, progress=progress))
        cat_items = Vocabulary(catalog.ids, kind="item" if catalog.string_ids else "movie")
        full_pop = np.zeros(len(cat_items), np.float32)
        full_pop[cat_items.rows(items.ids)] = pop
        mean = MeanEncoder(text, weighting_or_none(config.content_weighting))

        def build_text():
            s = local()
            remap = cat_items.rows(s.items.ids)
            return query_time_scorer(mean, text, [remap[h] for h in s.histories()], s.history_times())

        return ItemModel(config, cat_items, text, True, mean, full_pop, _LazyScorer(build_text))

    @staticmethod
    def _require_train(prepared: Prepared) -> None:
        if not prepared.train_rows:
            raise DataError(f"the train split is empty: each of the {prepared.test_rows:,} users with a positive has "
                            "only one, and each user's last one is held out; training needs a user with at least two")

    # ------------------------------------------------------------------------------ encoding
    def encode(self, encoder: str, pooling: str | None, texts: list[str], *, progress: bool = False,
                batch_size: int = 64) -> np.ndarray:
        """(len(texts), d) float32: the texts encoded by Spark's Python workers, in input order."""
        import pandas as pd

        from recvec.engine.engines.spark_tasks import encode_partition

        session = self.session  # a partition per 2,000 texts at least: each worker loads the encoder once
        parts = max(1, min(session.sparkContext.defaultParallelism, -(-len(texts) // 2000)))
        frame = session.createDataFrame(pd.DataFrame({"row": np.arange(len(texts), dtype=np.int64),
                                                      "text": list(texts)}), "row long, text string")
        task = partial(encode_partition, encoder=encoder, pooling=pooling, batch_size=batch_size)
        with quiet_pyspark(), _Stage(f"encode {len(texts):,} texts ({encoder})", progress):
            out = frame.repartition(parts).mapInPandas(task, "row long, vector array<float>").toPandas()
        vecs = np.zeros((len(texts), 0), np.float32)
        if len(out):
            vecs = np.empty((len(texts), len(out["vector"].iloc[0])), np.float32)
            vecs[out["row"].to_numpy(np.int64)] = np.stack(out["vector"].to_numpy())
        return vecs

    def encode_texts(self, encoder: str, pooling: str | None, ids: np.ndarray, texts: list[str], *,
                     cache_dir=None, progress: bool = False) -> np.ndarray:
        """The texts encoded on Spark, read from / written to the same embedding cache as locally."""
        from recvec.engine.models.cache import encode_cached
        from recvec.engine.models.text import get_embedder

        return encode_cached(get_embedder(encoder, pooling), ids, texts, cache_dir,
                             encode=partial(self.encode, encoder, pooling, progress=progress))

    # ------------------------------------------------------------------------------ evaluation
    def evaluate(self, prepared: Prepared, model, *, k: int = 10, progress: bool = False):
        """Recall@k / NDCG@k of ``model`` on the split's test positives, scored on Spark (module
        docstring); the same Evaluation ``evaluate_model`` gives locally. RecvecError if k < 1."""
        from pyspark.sql import functions as F

        from recvec.engine.engines.spark_tasks import score_partition
        from recvec.engine.evaluate import Evaluation
        from recvec.engine.metrics import ndcg_at_k, recall_at_k

        if k <= 0:
            raise RecvecError(f"k must be positive, got {k}", params=("k",))
        t0 = time.perf_counter()
        sp = prepared.handle
        sc = self.session.sparkContext
        users_df = self._fitted_users(model)
        hist = (sp.train.groupBy("u").agg(F.sort_array(F.collect_list(F.struct("ts", "ord", "i"))).alias("h"))
                .select("u", F.col("h.i").alias("hist"), F.col("h.ts").alias("times")))
        rows = (sp.test.where(F.col("u").isNotNull() & F.col("i").isNotNull())
                .select("u", F.col("i").alias("target")).join(hist, "u"))
        if users_df is not None:
            rows = rows.join(users_df.select(F.col("id").alias("u"), F.col("features").alias("uf")), "u")
        remap = None if model.items == prepared.items else model.items.rows(prepared.items.ids)
        vectors_bc = sc.broadcast(np.ascontiguousarray(model.item_vectors, dtype=np.float32))
        encoder_bc = sc.broadcast({"params": None if users_df is not None else model.user_encoder.params(),
                                   "arrays": dict(model.arrays), "remap": remap})
        task = partial(score_partition, key=uuid.uuid4().hex, vectors_bc=vectors_bc, encoder_bc=encoder_bc)
        try:
            with quiet_pyspark(), _Stage(f"evaluate {model.config.name}", progress):
                out = rows.repartition(sc.defaultParallelism).mapInPandas(task, "u int, rank long").toPandas()
        finally:
            vectors_bc.unpersist()
            encoder_bc.unpersist()
        order = np.argsort(out["u"].to_numpy(np.int64), kind="stable")
        ranks = out["rank"].to_numpy(np.int64)[order]
        return Evaluation(model=model.config.name, k=k, recall=recall_at_k(ranks, k), ndcg=ndcg_at_k(ranks, k),
                          users=len(ranks), train_rows=prepared.train_rows, test_rows=prepared.test_rows,
                          seconds=time.perf_counter() - t0, ranks=ranks, params=model.config.params())


def _factor_scorer(users_df, item_factors: np.ndarray, n_users: int):
    """A local scorer over Spark's user factors collected to the driver (rows: the split's users)."""
    from recvec.engine.evaluate import scorer_from_vectors

    pdf = users_df.toPandas()
    uf = np.zeros((n_users, item_factors.shape[1]), np.float32)
    uf[pdf["id"].to_numpy(np.int64)] = np.stack(pdf["features"].to_numpy()).astype(np.float32)
    return scorer_from_vectors(uf, item_factors)
