"""`recvec eval`: fit models on the leave-last-positive-out split and report Recall@K / NDCG@K."""

from __future__ import annotations

import json
import time

import click

from recvec.cli.common import (
    MODEL_CHOICES,
    count,
    data_options,
    emit_table,
    engine_options,
    model_config,
    model_options,
    preset_config,
    preset_option,
    show_progress,
)


@click.command("eval")
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
@engine_options
def eval_cmd(data, threshold, endpoint_url, models, encoder, pooling, factors, regularization, iterations, alpha,
             seed, preset, served_index, k, as_json, quiet, engine):
    """Fit models on the leave-last-positive-out split and report Recall@K / NDCG@K."""
    from recvec.engine.engines import open_engine

    with open_engine(engine) as eng:
        _eval(eng, data, threshold, endpoint_url, models, encoder, pooling, factors, regularization, iterations,
              alpha, seed, preset, served_index, k, as_json, quiet)


def _eval(eng, data, threshold, endpoint_url, models, encoder, pooling, factors, regularization, iterations, alpha,
          seed, preset, served_index, k, as_json, quiet):
    progress = show_progress(quiet)
    if eng.name != "local":  # what the engine cannot fit is said before any work
        for cfg in ([preset_config(preset, seed)[0]] if preset else
                    [model_config(kind, encoder, pooling, factors, regularization, iterations, alpha, seed)
                     for kind in models]):
            eng.check(cfg)
    prep = eng.split(data, threshold=threshold, endpoint_url=endpoint_url, progress=progress)
    ds = prep.dataset
    on = {} if eng.name == "local" else {"engine": eng.describe()}
    serve_spec = None
    if served_index:
        from recvec.indexes.spec import IndexSpec

        serve_spec = IndexSpec.parse(served_index)
    rows = []
    configs = ([preset_config(preset, seed)[0]] if preset else
               [model_config(kind, encoder, pooling, factors, regularization, iterations, alpha, seed) for kind in models])
    for cfg in configs:
        t0 = time.perf_counter()
        model = eng.fit(prep, cfg, progress=progress)
        fit_s = time.perf_counter() - t0
        ev = eng.evaluate(prep, model, k=k, progress=progress)
        rows.append({**ev.to_dict(extra_k=(20,) if k != 20 else ()), "fit_s": fit_s, "data": ds.source,
                     "format": ds.format, **on,
                     **({"preset": preset} if preset else {})})
        if serve_spec is not None:
            from recvec.engine.evaluate import evaluate_served
            from recvec.indexes.build import recommender_for

            sv = evaluate_served(recommender_for(model, serve_spec, seed=seed), eng.local_split(prep), k=k,
                                 depth=max(k, 20),
                                 model=f"{cfg.name} @ {serve_spec}")
            rows[-1]["served"] = {**sv.to_dict(extra_k=(20,) if k != 20 else ()), "index": str(serve_spec),
                                  "relative_recall_loss": (1 - sv.recall / ev.recall) if ev.recall else 0.0}
    if as_json:
        click.echo(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return
    where = "" if not on else f"; engine spark ({on['engine']['master']})"
    click.echo(f"data: {ds.source} ({ds.format}); train {prep.train_rows:,} rows, test {prep.test_rows:,} rows{where}")
    rows = [x for r in rows for x in ([r, {**r["served"], "fit_s": None}] if "served" in r else [r])]
    emit_table(rows, [("model", "model", ""), ("recall", f"Recall@{k}", ".4f"), ("ndcg", f"NDCG@{k}", ".4f"),
                      *([("recall@20", "Recall@20", ".4f")] if k != 20 else []),
                      ("users", "users", ","), ("fit_s", "fit s", ".2f"), ("seconds", "eval s", ".3f")])
