"""`recvec eval`: fit models on the leave-last-positive-out split and report Recall@K / NDCG@K."""

from __future__ import annotations

import dataclasses
import json
import time

import click

from recvec.cli.common import (
    AUTO,
    MODEL_CHOICES,
    auto_preset,
    count,
    data_options,
    emit_table,
    engine_options,
    model_config,
    model_options,
    preset_config,
    preset_note,
    preset_model,
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
@click.option("--by-gap", is_flag=True,
              help="Also print Recall/NDCG by the time from each user's last train positive to the held-out one "
                   "(same second, < 1 hour, < 1 day, > 1 day); --json always has them under by_gap.")
@click.option("--shuffle-ties", is_flag=True,
              help="Shuffle the order of each user's ratings that share a timestamp (seeded by --seed) before "
                   "the split, so no figure rests on the file's order within a second.")
@click.option("--versus", multiple=True, metavar="MODEL|PRESET",
              help="Also evaluate this model kind (with the model flags' defaults) or preset on the same split, "
                   "and report the paired-bootstrap 95% interval of the first row minus it (users resampled, "
                   "2,000 draws, seeded by --seed); repeat for several.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object; a list for several models).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@engine_options
def eval_cmd(data, threshold, endpoint_url, models, encoder, pooling, factors, regularization, iterations, alpha,
             seed, preset, budget_minutes, served_index, k, by_gap, shuffle_ties, versus, as_json, quiet, engine):
    """Fit models on the leave-last-positive-out split and report Recall@K / NDCG@K."""
    from recvec.engine.engines import open_engine

    if shuffle_ties and engine.name != "local":
        raise click.UsageError("--shuffle-ties runs on --engine local")
    if preset == AUTO and engine.name != "local":
        raise click.UsageError("--preset auto runs on --engine local")
    if shuffle_ties:
        from recvec.engine.data import load_dataset
        from recvec.engine.gaps import shuffle_ties as shuffled

        ds = load_dataset(data, endpoint_url=endpoint_url, progress=show_progress(quiet))
        data = dataclasses.replace(ds, ratings=shuffled(ds.ratings, seed))  # the same rows: the same fingerprint
    with open_engine(engine) as eng:
        _eval(eng, data, threshold, endpoint_url, models, encoder, pooling, factors, regularization, iterations,
              alpha, seed, preset, budget_minutes, served_index, k, by_gap, shuffle_ties, versus, as_json, quiet)


def _versus_config(name: str, encoder, pooling, factors, regularization, iterations, alpha, seed):
    """--versus NAME: a model kind (the model flags' values) or a packaged preset / preset file."""
    if name in MODEL_CHOICES:
        return model_config(name, encoder, pooling, factors, regularization, iterations, alpha, seed)
    return preset_model(name, seed)[0]


def _eval(eng, data, threshold, endpoint_url, models, encoder, pooling, factors, regularization, iterations, alpha,
          seed, preset, budget_minutes, served_index, k, by_gap, shuffle_ties, versus, as_json, quiet):
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
    if preset == AUTO:
        configs = [auto_preset(prep, eng, seed, budget_minutes, progress)[0]]
    elif preset:
        cfg, chosen = preset_config(preset, seed)
        preset_note(chosen, ds)
        configs = [cfg]
    else:
        configs = [model_config(kind, encoder, pooling, factors, regularization, iterations, alpha, seed)
                   for kind in models]
    configs += [_versus_config(v, encoder, pooling, factors, regularization, iterations, alpha, seed) for v in versus]
    evals = []
    for cfg in configs:
        t0 = time.perf_counter()
        model = eng.fit(prep, cfg, progress=progress)
        fit_s = time.perf_counter() - t0
        ev = eng.evaluate(prep, model, k=k, progress=progress)
        evals.append(ev)
        rows.append({**ev.to_dict(extra_k=(20,) if k != 20 else ()), "fit_s": fit_s, "data": ds.source,
                     "format": ds.format, **on,
                     **({"preset": preset} if preset else {}),
                     **({"ties": f"shuffled within (user, timestamp), seed {seed}"} if shuffle_ties else {})})
        if eng.name == "local":
            from recvec.engine.gaps import by_gap as gap_rows

            rows[-1]["by_gap"] = [g.to_dict() for g in gap_rows(ev.ranks, eng.local_split(prep), k=k)]
        if serve_spec is not None:
            from recvec.engine.evaluate import evaluate_served
            from recvec.indexes.build import recommender_for

            sv = evaluate_served(recommender_for(model, serve_spec, seed=seed), eng.local_split(prep), k=k,
                                 depth=max(k, 20),
                                 model=f"{cfg.name} @ {serve_spec}")
            rows[-1]["served"] = {**sv.to_dict(extra_k=(20,) if k != 20 else ()), "index": str(serve_spec),
                                  "relative_recall_loss": (1 - sv.recall / ev.recall) if ev.recall else 0.0}
    if versus:
        from recvec.engine.metrics import paired_bootstrap

        for row, ev in zip(rows[1:], evals[1:]):
            if len(ev.ranks) != len(evals[0].ranks):
                raise click.UsageError(f"--versus: {row['model']} was evaluated on {len(ev.ranks):,} users and "
                                       f"{rows[0]['model']} on {len(evals[0].ranks):,}: no paired comparison")
            row["first_minus_this"] = paired_bootstrap(evals[0].ranks, ev.ranks, k, seed=seed)
    if as_json:
        click.echo(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return
    gaps = [{"model": r["model"], **g} for r in rows for g in r.get("by_gap", [])] if by_gap else []
    where = "" if not on else f"; engine spark ({on['engine']['master']})"
    click.echo(f"data: {ds.source} ({ds.format}); train {prep.train_rows:,} rows, test {prep.test_rows:,} rows{where}")
    rows = [x for r in rows for x in ([r, {**r["served"], "fit_s": None}] if "served" in r else [r])]
    emit_table(rows, [("model", "model", ""), ("recall", f"Recall@{k}", ".4f"), ("ndcg", f"NDCG@{k}", ".4f"),
                      *([("recall@20", "Recall@20", ".4f")] if k != 20 else []),
                      ("users", "users", ","), ("fit_s", "fit s", ".2f"), ("seconds", "eval s", ".3f")])
    if versus:
        click.echo(f"\n{rows[0]['model']} minus each (paired bootstrap, 95% interval, {len(evals[0].ranks):,} users):")
        diffs = [{"model": r["model"], **r["first_minus_this"]} for r in rows if "first_minus_this" in r]
        for d in diffs:
            d["recall"] = f"{d['recall_diff']:+.4f} [{d['recall_ci'][0]:+.4f}, {d['recall_ci'][1]:+.4f}]"
            d["ndcg"] = f"{d['ndcg_diff']:+.4f} [{d['ndcg_ci'][0]:+.4f}, {d['ndcg_ci'][1]:+.4f}]"
        emit_table(diffs, [("model", "versus", ""), ("recall", f"delta Recall@{k}", ""), ("ndcg", f"delta NDCG@{k}", "")])
    if gaps:
        click.echo(f"\nby the time from the last train positive to the held-out one (Recall@{k} / NDCG@{k}):")
        emit_table(gaps, [("model", "model", ""), ("bucket", "gap", ""), ("users", "users", ","),
                          ("share", "share", ".1%"), ("recall", f"Recall@{k}", ".4f"), ("ndcg", f"NDCG@{k}", ".4f")])
