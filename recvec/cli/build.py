"""`recvec build`: fit a model and write an index artifact (local or S3)."""

from __future__ import annotations

import json
import time

import click

from recvec.cli.common import (
    MODEL_CHOICES,
    data_options,
    index_option,
    model_config,
    model_options,
    preset_config,
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
    from dataclasses import replace

    from recvec.engine.data import load_dataset
    from recvec.engine.models.fit import fit_model
    from recvec.engine.split import leave_last_out
    from recvec.indexes import backends
    from recvec.indexes.backends.base import BackendOptions
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
    options = BackendOptions(name=backend, uri=milvus_uri, collection=collection)
    options = backends.get(backend).check(spec, options, out)  # before the fit
    progress = show_progress(quiet)
    ds = load_dataset(data, endpoint_url=endpoint_url, progress=progress)
    split = leave_last_out(ds.ratings, threshold)
    t0 = time.perf_counter()
    fitted = fit_model(split, ds.catalog, cfg, progress=progress)
    fit_s = time.perf_counter() - t0
    manifest = build_artifact(ds, fitted, spec, out, endpoint_url=endpoint_url, seed=seed,
                              extra_manifest={"split": {"threshold": threshold}, "fit_time_s": fit_s,
                                              **({"preset": preset} if preset else {})},
                              backend=replace(options, progress=progress))
    served = None if options.uri is None else {"kind": options.name, "uri": options.uri,
                                               "collection": options.collection}
    summary = {"out": out, "model": cfg.name, "index": manifest["index"], "items": len(fitted.items),
               "dim": int(fitted.item_vectors.shape[1]), "fit_s": fit_s, "build_s": manifest["build_time_s"]}
    if served is not None:
        summary["backend"] = served
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        where = "" if served is None else f" in {backend} collection {served['collection']} at {served['uri']}"
        click.echo(f"wrote {out}: {cfg.name} vectors, {summary['items']:,} items x {summary['dim']} dims, "
                   f"index {manifest['index']['spec']}{where} (fit {fit_s:.1f} s, index build {summary['build_s']:.2f} s)")
