"""`recvec build`: fit a model and write an index artifact (local or S3)."""

from __future__ import annotations

import json
import time

import click

from recvec.cli.common import (
    AUTO,
    MODEL_CHOICES,
    FiniteFloat,
    auto_preset,
    data_options,
    dataset_arg,
    engine_options,
    index_option,
    model_config,
    model_options,
    preset_config,
    preset_note,
    preset_option,
    show_progress,
)
from recvec.indexes.backends import NAMES as BACKEND_NAMES


@click.command("build")
@data_options
@click.option("--model", type=click.Choice(MODEL_CHOICES), default="als", show_default=True)
@model_options
@preset_option
@index_option
@click.option("--backend", type=click.Choice(BACKEND_NAMES), default="faiss", show_default=True,
              help="Where the index is served from: FAISS in process (index.faiss in the artifact), a Milvus "
                   "collection (Milvus Lite file, Milvus server or cluster) or a PostgreSQL + pgvector table; "
                   "for the last two the artifact points at it.")
@click.option("--uri", "milvus_uri", default=None,
              help="--backend milvus: FILE.db (Milvus Lite, in process; one process at a time) or "
                   "http://HOST:19530 (a Milvus server or cluster; token from $RECVEC_MILVUS_TOKEN or "
                   "user:password@ in the URI). --backend pgvector: a PostgreSQL DSN, e.g. "
                   "postgresql://USER@HOST:5432/DB?sslmode=require (password from the URI, $PGPASSWORD or "
                   "~/.pgpass). Stored in the artifact without the password.")
@click.option("--collection", default=None,
              help="--backend milvus / pgvector: collection or table name (letters, digits, _). Each build loads "
                   "a new one, NAME_r<10 hex>, and drops the one the artifact at --out pointed at once the new "
                   "artifact is published (only if recvec created it).")
@click.option("--vectors", default=None, metavar="FILE",
              help="Index item vectors you bring instead of fitting a model: .npy (n x d; its rows are the "
                   "--items rows, else ids 0..n-1), .npz (ids, vectors), or a Parquet/CSV/TSV/JSON Lines table with "
                   "an id column and one list column or one numeric column per dimension (local or s3://). "
                   "Users are the mean of their history's vectors at query time. --items/--item-columns give "
                   "titles.")
@click.option("--vector-columns", "vector_columns_text", default=None, metavar="id=COL[,vector=COL]",
              help="--vectors table columns (default: id column item_id/movieId/itemId/id; the one list column, "
                   "else every other column as one dimension).")
@click.option("--normalise", is_flag=True, help="--vectors: L2-normalise them (cosine similarity).")
@click.option("--half-life", type=FiniteFloat(min=0), default=0.0, show_default=True, metavar="ITEMS",
              help="--vectors: recency-weighted mean: an item ITEMS positions before the newest weighs half "
                   "(0: plain mean).")
@click.option("--similar-index", "similar_spec", default=None, metavar="SPEC",
              help="Also store a cosine index of this kind (e.g. hnsw32) over the normalised item vectors, for "
                   "`query similar` at catalogue scale. Without it, similar scans every item exactly (ALS "
                   "vectors; normalised ones such as text are answered by the main index either way).")
@click.option("--out", required=True, help="Artifact directory or s3://bucket/prefix.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@engine_options
def build_cmd(data, threshold, endpoint_url, model, encoder, pooling, factors, regularization, iterations, alpha,
              seed, preset, budget_minutes, index_spec, backend, milvus_uri, collection, vectors, vector_columns_text,
              normalise, half_life, similar_spec, out, as_json, quiet, table_flags, engine):
    """Fit a model on the train split and write an index artifact (local or S3): a FAISS index, or
    with --backend milvus / pgvector a Milvus collection / PostgreSQL table the artifact points at."""
    from dataclasses import replace

    from recvec.engine.engines import open_engine
    from recvec.indexes import backends
    from recvec.indexes.backends.base import BackendOptions
    from recvec.indexes.build import build_artifact
    from recvec.indexes.spec import IndexSpec

    if vectors is not None:
        if engine.name != "local":
            raise click.UsageError("--vectors indexes the vectors you bring: there is nothing for --engine to run")
        return _build_vectors(vectors, vector_columns_text, normalise, half_life, table_flags, index_spec, backend,
                              milvus_uri, collection, out, endpoint_url, seed, as_json, quiet, similar_spec)
    if vector_columns_text is not None or normalise or half_life:
        raise click.UsageError("--vector-columns, --normalise and --half-life apply to --vectors FILE")
    data = dataset_arg(data, *table_flags, endpoint_url)
    if preset == AUTO:
        if engine.name != "local":
            raise click.UsageError("--preset auto runs on --engine local")
        cfg = chosen = None  # chosen on this data's validation split, after the split
    elif preset:
        from click.core import ParameterSource

        cfg, chosen = preset_config(preset, seed)
        if click.get_current_context().get_parameter_source("index_spec") != ParameterSource.COMMANDLINE:
            index_spec = chosen.index
    else:
        cfg = model_config(model, encoder, pooling, factors, regularization, iterations, alpha, seed)
    spec = IndexSpec.parse(index_spec)
    similar = _similar_spec(similar_spec)
    options = BackendOptions(name=backend, uri=milvus_uri, collection=collection)
    options = backends.get(backend).check(spec, options, out)  # before the fit
    progress = show_progress(quiet)
    with open_engine(engine) as eng:
        if cfg is not None:
            eng.check(cfg)
        prep = eng.split(data, threshold=threshold, endpoint_url=endpoint_url, progress=progress)
        ds = prep.dataset
        if preset == AUTO:
            cfg, chosen = auto_preset(prep, eng, seed, budget_minutes, progress)
        elif preset:
            preset_note(chosen, ds)
        t0 = time.perf_counter()
        fitted = eng.fit(prep, cfg, progress=progress)
        fit_s = time.perf_counter() - t0
        on = {} if eng.name == "local" else {"engine": eng.describe()}
    manifest = build_artifact(ds, fitted, spec, out, endpoint_url=endpoint_url, seed=seed,
                              extra_manifest={"split": {"threshold": threshold}, "fit_time_s": fit_s, **on,
                                              **({"preset": preset} if preset else {})},
                              backend=replace(options, progress=progress), similar=similar)
    index = manifest["index"]
    served = None if options.uri is None else {"kind": options.name, "uri": index.get("uri"),
                                               "collection": index.get("collection")}
    summary = {"out": out, "model": cfg.name, "index": manifest["index"], "items": len(fitted.items),
               "dim": int(fitted.item_vectors.shape[1]), "fit_s": fit_s, "build_s": manifest["build_time_s"], **on,
               **_similar_summary(manifest)}
    if served is not None:
        summary["backend"] = served
        if manifest.get("retired"):
            summary["retired"] = manifest["retired"]
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        where = "" if served is None else f" in {backend} collection {served['collection']} at {served['uri']}"
        click.echo(f"wrote {out}: {cfg.name} vectors, {summary['items']:,} items x {summary['dim']} dims, "
                   f"index {manifest['index']['spec']}{where}{_reachable(manifest['index'])} (fit {fit_s:.1f} s, "
                   f"index build {summary['build_s']:.2f} s)")
        if manifest.get("retired"):
            click.echo(manifest["retired"])
    _echo_similar(manifest, similar, as_json)


def _similar_spec(text):
    """The --similar-index SPEC parsed (None when not given); a UsageError naming the flag."""
    from recvec.errors import RecvecError
    from recvec.indexes.spec import IndexSpec

    if text is None:
        return None
    try:
        return IndexSpec.parse(text)
    except RecvecError as e:
        raise click.BadParameter(str(e), param_hint="--similar-index") from None


def _similar_summary(manifest: dict) -> dict:
    """``{"similar": its manifest entry}`` when the artifact holds a similar index, else {}."""
    return {"similar": manifest["similar"]} if "similar" in manifest else {}


def _echo_similar(manifest: dict, asked, as_json: bool) -> None:
    """The similar index's line (text output), or the note that normalised vectors need none (stderr)."""
    entry = manifest.get("similar")
    if entry is not None and not as_json:
        click.echo(f"similar index {entry['spec']} over the normalised vectors{_reachable(entry)} "
                   f"(build {entry['build_time_s']:.2f} s)")
    elif entry is None and asked is not None:
        click.echo("note: the vectors are normalised: the main index answers similar by cosine, no similar "
                   "index built", err=True)


def _reachable(index: dict) -> str:
    """", 99.8% of items reachable" for a graph index's manifest entry (its ``reachable_share``), else ""."""
    share = index.get("reachable_share")
    return "" if share is None else f", {100 * share:.2f}% of items reachable in its graph"


def _build_vectors(vectors, vector_columns_text, normalise, half_life, table_flags, index_spec, backend, milvus_uri,
                   collection, out, endpoint_url, seed, as_json, quiet, similar_spec):
    """`recvec build --vectors FILE`: index brought item vectors (no fit), titles from --items."""
    from dataclasses import replace

    from click.core import ParameterSource

    from recvec.engine.data import TABLE_FORMATS
    from recvec.engine.data.spec import (
        ItemColumns,
        parse_item_columns,
        parse_vector_columns,
    )
    from recvec.engine.data.tabular import read_item_table
    from recvec.engine.data.vectors import load_item_vectors, vectors_dataset
    from recvec.engine.models.vectors import vectors_model
    from recvec.engine.weighting import RecencyWeighting
    from recvec.indexes import backends
    from recvec.indexes.backends.base import BackendOptions
    from recvec.indexes.build import build_artifact
    from recvec.indexes.spec import IndexSpec

    ctx = click.get_current_context()
    clash = [f"--{n.replace('_', '-')}" for n in ("data", "preset", "model", "columns_text", "threshold")
             if n in ctx.params and ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
    if table_flags[0] is not None:
        clash.append("--columns")
    if clash:
        raise click.UsageError(f"--vectors indexes the vectors you bring: drop {', '.join(sorted(set(clash)))}")
    spec = IndexSpec.parse(index_spec)
    similar = _similar_spec(similar_spec)
    options = BackendOptions(name=backend, uri=milvus_uri, collection=collection)
    options = backends.get(backend).check(spec, options, out)
    _, items, item_columns = table_flags
    catalog = None
    if items is not None:
        cols = parse_item_columns(item_columns) if item_columns is not None else ItemColumns()
        catalog = read_item_table(items, cols, TABLE_FORMATS, endpoint_url=endpoint_url)[0]
    elif item_columns is not None:
        raise click.UsageError("--item-columns describes --items FILE")
    vcols = parse_vector_columns(vector_columns_text) if vector_columns_text is not None else {}
    t0 = time.perf_counter()
    vecs = load_item_vectors(vectors, TABLE_FORMATS, id_column=vcols.get("id"), vector_column=vcols.get("vector"),
                             ids=None if catalog is None else catalog.ids, endpoint_url=endpoint_url)
    ds = vectors_dataset(vecs, catalog)
    for note in ds.notes:
        click.echo(f"note: {note}", err=True)
    model = vectors_model(vecs.ids, vecs.vectors, source=vectors, normalise=normalise,
                          weighting=RecencyWeighting(half_life=half_life))
    read_s = time.perf_counter() - t0
    manifest = build_artifact(ds, model, spec, out, endpoint_url=endpoint_url, seed=seed,
                              extra_manifest={"vectors_read_s": read_s},
                              backend=replace(options, progress=show_progress(quiet)), similar=similar)
    summary = {"out": out, "model": model.config.name, "index": manifest["index"], "items": len(model.items),
               "dim": int(model.item_vectors.shape[1]), "string_ids": model.items.string_ids,
               "read_s": read_s, "build_s": manifest["build_time_s"], **_similar_summary(manifest)}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"wrote {out}: your vectors{' (normalised)' if normalise else ''}, {summary['items']:,} items x "
                   f"{summary['dim']} dims, index {manifest['index']['spec']}{_reachable(manifest['index'])} (read "
                   f"{read_s:.1f} s, index build "
                   f"{summary['build_s']:.2f} s)")
    _echo_similar(manifest, similar, as_json)
