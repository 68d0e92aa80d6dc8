"""`recvec bench sequence`: the recorded validation runs that choose the sequence encoder's settings."""

from __future__ import annotations

import json

import click

from recvec.cli.common import (
    FiniteFloat,
    bench_command_line,
    count,
    emit_table,
    show_progress,
    threads_option,
)


@click.command("sequence")
@click.option("--data", default="synthetic", show_default=True, help="The dataset whose validation split decides.")
@click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True, help="Ratings >= threshold are positives.")
@click.option("--set", "set_texts", multiple=True, metavar="FIELD=VALUE",
              help="The base config: a SequenceConfig field set for every run (repeatable; e.g. --set tied=false).")
@click.option("--vary", "vary_texts", multiple=True, metavar="FIELD=V1,V2",
              help="Values tried one factor at a time around the base (repeatable; e.g. --vary layers=1,3).")
@click.option("-k", "k", type=count(), default=10, show_default=True, help="Cut-off K of the validation metrics.")
@click.option("--budget-minutes", type=FiniteFloat(min=0), default=None,
              help="Start no new run after this many minutes (finished runs are kept).")
@click.option("--out", required=True, help="Directory of sequence_search.json (finished runs are reused).")
@click.option("--force", is_flag=True, help="Run everything again instead of reusing finished runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@threads_option
def bench_sequence_cmd(data, threshold, set_texts, vary_texts, k, budget_minutes, out, force, as_json, quiet):
    """The validation runs that choose the sequence encoder's settings: the base config, then each
    --vary value alone, every epoch scored on the validation split (the test split is never read);
    the best run and epoch is the choice."""
    from dataclasses import replace

    from recvec.benchmarks.runner import RunContext
    from recvec.benchmarks.seqsearch import SequenceSearch, parse_vary, run_search
    from recvec.engine.data import load_dataset
    from recvec.engine.models.sequence import SequenceConfig
    from recvec.engine.split import leave_last_out

    base = SequenceConfig()
    fixed = parse_vary(set_texts, base, "--set")
    if any(len(v) != 1 for _, v in fixed):
        raise click.BadParameter("one value each (FIELD=VALUE)", param_hint="--set")
    base = replace(base, **{name: v[0] for name, v in fixed})
    search = SequenceSearch(base=base, vary=parse_vary(vary_texts, base), k=k, minutes=budget_minutes)
    progress = show_progress(quiet) and not as_json
    ds = load_dataset(data, progress=progress)
    r = run_search(leave_last_out(ds.ratings, threshold), search, out, data=str(data), fingerprint=ds.fingerprint,
                   force=force, progress=progress, say=(lambda m: click.echo(m, err=True)) if progress else None,
                   context=RunContext(bench_command_line()))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    rows = [{"changed": x["changed"], "epochs": x["epochs_run"], "best": x["best"]["epoch"],
             "recall": x["best"]["val_recall"], "ndcg": x["best"]["val_ndcg"], "epoch_s": x["epoch_s"],
             "fit_s": x["fit_s"]} for x in r["runs"]]
    emit_table(rows, [("changed", "run (vs base)", ""), ("epochs", "epochs run", "d"), ("best", "best epoch", "d"),
                      ("recall", f"val Recall@{k}", ".4f"), ("ndcg", f"val NDCG@{k}", ".4f"),
                      ("epoch_s", "s / epoch", ".1f"), ("fit_s", "fit s", ".0f")])
    c = r["chosen"]
    click.echo(f"chosen on validation ({r['users']:,} users): {c['changed']}, {c['epoch']} epochs: "
               f"Recall@{k} {c['val_recall']:.4f}, NDCG@{k} {c['val_ndcg']:.4f}; report {out}/sequence_search.json")
