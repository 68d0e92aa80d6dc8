"""`recvec tune` (selection on the validation split) and `recvec presets`."""

from __future__ import annotations

import json
import sys
import time

import click

from recvec.checks import MAX_ITERATIONS
from recvec.cli.common import SEED, FiniteFloat, count, data_options, emit_table, show_progress


@click.command("tune")
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
@click.option("--peers/--no-peers", default=True, show_default=True,
              help="Also tune the item-item peers: EASE (lambda) and the transition model (window, query weights).")
@click.option("--target", type=click.Choice(["all", "later"]), default="all", show_default=True,
              help="Select for every validation user, or for 'later' interest: users whose held-out item came "
                   "more than a day after their last train item (not the same sitting).")
@click.option("--budget-minutes", type=FiniteFloat(min=0, max=1e6), default=0, show_default=True,
              help="Wall-clock budget of the selection (0: none): stages that would start after it are skipped "
                   "and said; the choice is the best of what ran.")
@click.option("--confirm", type=count(0, 1000), default=6, show_default=True,
              help="Candidates (the best distinct ones; also the best of each family and the packaged presets) "
                   "refitted on a second validation fold (each user's third-to-last positive) and chosen by the "
                   "mean of the two folds; 0: the first fold alone decides.")
@click.option("--presets/--no-presets", "with_presets", default=True, show_default=True,
              help="Weigh the packaged ALS / EASE / transition presets as candidates beside the search.")
@click.option("--out", default=None,
              help="Where to save every trial, the chosen configuration and its test figures (JSON; usable "
                   "as --preset FILE). Default: results/tune/DATASET.json. A file there that is not a recvec "
                   "tune result is never overwritten.")
@click.option("--json", "as_json", is_flag=True, help="Print the saved JSON instead of a summary.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def tune_cmd(data, threshold, endpoint_url, budget, seed, hybrid, encoder, pooling, sequence, sequence_epochs, k, peers,
             target, budget_minutes, confirm, with_presets, out, as_json, quiet):
    """Select hyperparameters on a validation split, then report test once.

    Validation: each user's second-to-last positive is held out from train; the test split (each
    user's last positive) is never read while selecting. The chosen configuration is refitted on
    the full train split and evaluated on test exactly once."""
    from dataclasses import replace
    from pathlib import Path

    from recvec.engine.data import load_dataset
    from recvec.engine.models.sequence import SequenceConfig
    from recvec.engine.split import leave_last_out
    from recvec.engine.tune import TuneSettings, tune
    from recvec.indexes.presets import candidate_configs

    seq = SequenceConfig() if sequence_epochs is None else replace(SequenceConfig(), epochs=sequence_epochs)
    settings = TuneSettings(budget=budget, seed=seed, k=k, hybrid=hybrid, encoder=encoder, pooling=pooling,
                            sequence=sequence, sequence_config=seq, peers=peers, target=target,
                            minutes=budget_minutes, confirm=confirm,
                            also=candidate_configs() if with_presets else ())
    progress = show_progress(quiet)
    ds = load_dataset(data, endpoint_url=endpoint_url, progress=progress)
    out = _tune_out(out, ds.source)  # checked before the long run
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
        elif event == "confirmed":
            click.echo(f"[{t:6.0f}s] second fold: {info['model']} val R@{k} {info['val_recall']:.4f} / "
                       f"{info['val2_recall']:.4f}, mean {info['mean_recall']:.4f}", err=True)
        elif event == "skipped":
            click.echo(f"[{t:6.0f}s] skipped {info['stage']}: {info['why']}", err=True)
        elif event == "selected":
            how = f"mean of 2 folds {info['selection_recall']:.4f}" if info["folds"] == 2 else \
                f"val R@{k} {info['val_recall']:.4f}"
            click.echo(f"[{t:6.0f}s] selected on validation: {info['model']} ({how}); "
                       "refitting on the full train split for the one test evaluation", err=True)

    result = tune(split, ds.catalog, settings, report=report, progress=progress)
    payload = {**result.to_dict(), "data": ds.source, "data_fingerprint": ds.fingerprint,
               "command": "recvec " + " ".join(sys.argv[1:])}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    test = payload.get("test", {})
    second = "" if result.chosen.second is None else \
        f", second fold {result.chosen.second[0]:.4f} / {result.chosen.second[1]:.4f}"
    click.echo(f"chosen: {result.chosen.config.name}  (validation Recall@{k} {result.chosen.recall:.4f}, "
               f"NDCG@{k} {result.chosen.ndcg:.4f}{second}; {len(result.trials)} trials in {result.seconds:.0f} s)")
    click.echo(f"test (once): Recall@{k} {test.get('recall', float('nan')):.4f}  NDCG@{k} "
               f"{test.get('ndcg', float('nan')):.4f}  Recall@20 {test.get('recall@20', float('nan')):.4f}  "
               f"users {test.get('users', 0):,}")
    click.echo(f"saved {out} (use it with --preset {out})")


@click.command("presets")
@click.option("--json", "as_json", is_flag=True, help="Print the presets as JSON.")
def presets_cmd(as_json):
    """List the packaged model presets with their measured figures."""
    from recvec.indexes.presets import list_presets

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


def _tune_out(out: str | None, source: str) -> str:
    """Where ``recvec tune`` saves: ``out``, else results/tune/<dataset name>.json; an existing file
    there must be an earlier tune result (a JSON object with "chosen" and "trials"), never anything
    else of the user's."""
    import re
    from pathlib import Path

    from recvec.errors import RecvecError

    if out is None:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(source).rstrip("/")).name or "synthetic").strip("_")
        out = str(Path("results") / "tune" / f"{name or 'dataset'}.json")
    p = Path(out)
    if p.is_dir():
        raise RecvecError(f"{out} is a directory; give out a file name (e.g. {p / 'tune.json'})", params=("out",))
    if p.exists():
        try:
            earlier = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            earlier = None
        if not (isinstance(earlier, dict) and {"chosen", "trials"} <= set(earlier)):
            raise RecvecError(f"refusing to overwrite {out}: it is not a recvec tune result; give out another "
                              "file", params=("out",))
    return out
