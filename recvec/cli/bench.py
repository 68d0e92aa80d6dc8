"""`recvec bench accuracy|latency|parse|evaltime|serve|...`: the benchmark harness's commands."""

from __future__ import annotations

import json

import click

from recvec.cli.common import (
    SEED,
    FiniteFloat,
    RecvecGroup,
    bench_command_line,
    count,
    dataset_flags,
    emit_table,
    engine_options,
    show_progress,
    threads_option,
)
from recvec.indexes.backends import NAMES as BACKEND_NAMES


def bench_common(f):
    """Click decorator adding the options every ``recvec bench`` command shares: --indexes, --ef-search,
    --nprobe (comma lists, parsed by the command), --seed, --out, --force, --json, --quick, --quiet and
    --report-only, --threads."""
    f = threads_option(f)
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
                          "hnsw-noreorder: the same HNSW graph in FAISS's insertion order, hnsw-plain: FAISS's "
                          "inner-product graph without the cosine links (insertion order), and hnsw-bands: "
                          "norm-banded L2 graphs.")(f)
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


@click.group("bench", cls=RecvecGroup)
def bench_group():
    """Benchmarks: accuracy (Recall/NDCG per model x index) and latency (exact vs approximate
    search, against implicit and raw FAISS). Results are stored under --out and reused (resume)."""


def served_options(f):
    """--backends, --uri NAME=URI, --local-servers: the backends a benchmark measures side by side."""
    f = click.option("--local-servers", is_flag=True,
                     help="Start a local Milvus 2.3 server / PostgreSQL + pgvector (PyPI packages milvus, pgserver) "
                          "under --out/servers for each served backend without --uri, and stop them at the end.")(f)
    f = click.option("--uri", "uris", multiple=True, metavar="NAME=URI",
                     help="Where a served backend is: milvus=http://HOST:19530 (server or cluster), milvus=FILE.db "
                          "(Lite), pgvector=postgresql://USER@HOST/DB. Repeatable. Credentials as for recvec build.")(f)
    return click.option("--backends", default="faiss", show_default=True,
                        help="Comma list of backends measured side by side: faiss (always: the exact reference), "
                             "milvus, pgvector. A served one needs --uri NAME=URI or --local-servers (milvus alone "
                             "falls back to Milvus Lite under --out).")(f)


@bench_group.command("accuracy")
@click.option("--data", default=None, help="MovieLens directory/.zip/s3://, an interactions table (.csv, .tsv, "
                                           ".parquet, .jsonl) or a .toml spec (default: the embedded synthetic "
                                           "dataset).")
@dataset_flags
@click.option("--synthetic", type=count(42, 1_000_000), default=None, help="Use a synthetic MovieLens-style dataset with N items.")
@click.option("--models", default="popular,als,text", show_default=True,
              help="Comma list: popular, als, als-time, hybrid, sequence, text (every available encoder x pooling), "
                   "text:ENCODER, text:ENCODER:POOLING.")
@click.option("--encoders", default=None, help="Encoders 'text' expands to (default: every available one).")
@click.option("-k", "ks_text", default="10,20", show_default=True, help="Cut-offs K for Recall@K, NDCG@K, overlap@K.")
@click.option("--implicit/--no-implicit", default=True, show_default=True,
              help="Also run implicit's recommend and FAISS wrapper on the ALS model.")
@click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True, help="Ratings >= threshold are positives.")
@served_options
@bench_common
@engine_options
def bench_accuracy_cmd(data, synthetic, models, encoders, ks_text, implicit, threshold, backends, uris, local_servers,
                       indexes, ef_list, nprobe_list, seed, out, force, as_json, quick, quiet, report_only, engine):
    """Recall@K / NDCG@K for every model x index kind, overlap with exact search, implicit as reference."""
    from dataclasses import replace

    from recvec.benchmarks.accuracy import QUICK, AccuracyConfig, bench_accuracy
    from recvec.benchmarks.flags import parse_ints, parse_names
    from recvec.benchmarks.sweep import INDEX_KINDS

    if data and synthetic is not None:
        raise click.UsageError("give --data or --synthetic, not both")
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = lambda name: ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE  # noqa: E731
    cfg = AccuracyConfig(ks=parse_ints(ks_text, "-k"), models=parse_names(models, "--models"),
                         indexes=parse_names(indexes, "--indexes", INDEX_KINDS),
                         implicit=implicit, seed=seed, threshold=threshold,
                         backends=parse_names(backends, "--backends", BACKEND_NAMES), uris=_backend_uris(uris),
                         local_servers=local_servers)
    if quick:
        cfg = replace(cfg, **{k: v for k, v in QUICK.items()
                              if not given({"ef_search": "ef_list", "nprobe": "nprobe_list"}.get(k, k))})
    if ef_list:
        cfg = replace(cfg, ef_search=parse_ints(ef_list, "--ef-search"))
    if nprobe_list:
        cfg = replace(cfg, nprobe=parse_ints(nprobe_list, "--nprobe"))
    result = bench_accuracy(cfg, out, data=data, synthetic=synthetic,
                            encoders=parse_names(encoders, "--encoders") if encoders else None, force=force,
                            progress=show_progress(quiet), report_only=report_only, command=bench_command_line(),
                            engine=engine)
    k0 = min(cfg.ks)
    _bench_emit(result, as_json, [("dataset", "data", ""), ("model", "model", ""), ("index", "index", ""),
                                  ("setting", "query", "")]
                + [(f"{m}@{k}", f"{m.capitalize() if m == 'recall' else 'NDCG'}@{k}", ".4f")
                   for k in cfg.ks for m in ("recall", "ndcg")]
                + [(f"overlap@{k0}", f"overlap@{k0}", ".4f"), ("qps", "users/s", ".0f")])


@bench_group.command("latency")
@click.option("--data", default=None, help="MovieLens directory: its ALS item factors and users' train histories.")
@click.option("--vectors", default=None, metavar="FILE",
              help="Your item vectors (as `recvec build --vectors`): users are the mean of a random item's "
                   "nearest neighbours.")
@click.option("--vector-columns", "vector_columns", default=None, metavar="id=COL[,vector=COL]",
              help="--vectors table columns (as `recvec build --vector-columns`).")
@click.option("--normalise", is_flag=True, help="--vectors: L2-normalise them first.")
@click.option("--synthetic", "synthetic_text", default=None,
              help="Synthetic structured catalogue sizes, e.g. 100000,1000000 (each in every --dims).")
@click.option("--dims", default="64,384", show_default=True, help="Dimensions of the synthetic catalogues.")
@click.option("--norm-sigma", "norm_sigma", type=FiniteFloat(min=0, max=4), default=None,
              help="Spread (std) of the synthetic catalogues' log item norms [default: 1.2, that of ML-1M's ALS "
                   "factors]; a wider spread is harder for inner-product graphs. A catalogue with another "
                   "spread is named synthetic-NxD-sigmaS.")
@click.option("-k", "k", type=count(), default=10, show_default=True, help="Results per query (recall@k).")
@click.option("--queries", type=count(1, 10_000_000), default=1000, show_default=True, help="Users per catalogue (batch, recall).")
@click.option("--single", type=count(1, 10_000_000), default=300, show_default=True, help="Of them, timed one query per call.")
@click.option("--repeats", type=count(1, 1000), default=2, show_default=True, help="Batch timings (best kept).")
@served_options
@click.option("--clients", type=count(1, 256), default=8, show_default=True,
              help="Concurrent clients (threads; a connection each on a served backend) for the concurrent latency "
                   "and QPS.")
@click.option("--served-queries", "--milvus-queries", "milvus_queries", type=count(1, 10_000_000), default=200,
              show_default=True, help="Users searched on each served backend (batch, recall; the first --single "
                                      "of them one per call).")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="raw IndexFlatIP, implicit recommend / recalculate_user / FAISS wrapper, matmul peak.")
@click.option("--artifact/--no-artifact", default=True, show_default=True,
              help="MovieLens: artifact size and load time (flat, hnsw).")
@click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True, help="Ratings >= threshold are positives.")
@bench_common
def bench_latency_cmd(data, vectors, vector_columns, normalise, synthetic_text, dims, norm_sigma, k, queries, single, repeats, backends, milvus_queries, uris, local_servers, clients, baselines,
                      artifact, threshold, indexes, ef_list, nprobe_list, seed, out, force, as_json, quick,
                      quiet, report_only):
    """Single-query p50/p95/p99, batch QPS, build time, size and memory for exact and approximate indexes,
    with raw FAISS and implicit measured in the same run."""
    from dataclasses import replace

    from click.core import ParameterSource

    from recvec.benchmarks.datasets import sources_for
    from recvec.benchmarks.flags import parse_ints, parse_names
    from recvec.benchmarks.latency import QUICK, LatencyConfig, bench_latency
    from recvec.benchmarks.sweep import INDEX_CHOICES

    ctx = click.get_current_context()
    given = lambda name: ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE  # noqa: E731
    synthetic = parse_ints(synthetic_text, "--synthetic")
    dim_list = parse_ints(dims, "--dims")
    if quick:
        if not data and not synthetic and not vectors:
            synthetic = (20000,)
        if not given("dims"):
            dim_list = (64,)
    if not report_only and not data and not synthetic and not vectors:
        raise click.UsageError("give --data PATH, --vectors FILE and/or --synthetic N (or --quick)")
    cfg = LatencyConfig(k=k, indexes=parse_names(indexes, "--indexes", INDEX_CHOICES),
                        queries=queries, single=single, repeats=repeats,
                        backends=parse_names(backends, "--backends", BACKEND_NAMES), baselines=baselines,
                        artifact=artifact, milvus_queries=milvus_queries, seed=seed, clients=clients,
                        uris=_backend_uris(uris), local_servers=local_servers)
    if quick:
        flags = {"ef_search": "ef_list", "nprobe": "nprobe_list"}
        cfg = replace(cfg, **{kk: v for kk, v in QUICK.items() if not given(flags.get(kk, kk))})
    if ef_list:
        cfg = replace(cfg, ef_search=parse_ints(ef_list, "--ef-search"))
    if nprobe_list:
        cfg = replace(cfg, nprobe=parse_ints(nprobe_list, "--nprobe"))
    import faiss

    from recvec.threads import threads

    faiss.omp_set_num_threads(threads())  # FAISS's batched searches: the thread policy's count
    sources = [] if report_only else sources_for(data, synthetic, dim_list, seed=seed, threshold=threshold,
                                                 vectors=vectors, vector_columns=vector_columns, normalise=normalise,
                                                 **({} if norm_sigma is None else {"norm_sigma": norm_sigma}))
    result = bench_latency(sources, cfg, out, force=force, progress=show_progress(quiet), report_only=report_only,
                           command=bench_command_line())
    _bench_emit(result, as_json, [("catalogue", "catalogue", ""), ("backend", "backend", ""), ("index", "index", ""),
                                  ("setting", "query", ""), ("why", "why", ""), (f"recall@{k}", f"recall@{k}", ".4f"),
                                  ("coverage", "coverage", ".4f"), ("reachable_share", "reachable", ".4f"),
                                  ("single_p50_ms", "p50 ms", ".3f"), ("single_p99_ms", "p99 ms", ".3f"),
                                  ("full_p50_ms", "full p50", ".3f"), ("qps_batch", "batch QPS", ".0f"),
                                  ("conc_p50_ms", f"p50 {clients}c", ".3f"), ("conc_qps", f"QPS {clients}c", ".0f"),
                                  ("speedup_p50_vs_flat", "x flat", ".1f"), ("build_s", "build s", ".2f")])


@bench_group.command("busy")
@click.option("--data", default="synthetic", show_default=True, help="Dataset the units run on (MovieLens dir, zip, "
              "s3://, or 'synthetic').")
@click.option("--units", default=None, help="Units of work to time (default: all of als_fit, eval_exact, eval_flat, "
              "eval_hnsw, single, seq_train, encode).")
@click.option("--settings", "settings_text", default=None,
              help="Thread settings compared with recvec's default, which always runs (default: all of threads=1, "
                   "threads=all, library defaults).")
@click.option("--conditions", default="quiet,busy", show_default=True,
              help="quiet, and/or busy (a CPU-burning process on every core while each unit runs).")
@click.option("--repeats", type=count(1, 100), default=2, show_default=True, help="Runs of each cell (median kept).")
@click.option("--burners", type=count(1, 1024), default=None, help="Burning processes when busy (default: one per core).")
@click.option("--out", default="results/busy", show_default=True, help="Results directory (raw/, busy.md, busy.json).")
@click.option("--force", is_flag=True, help="Rerun units whose stored results exist (default: resume).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quick", is_flag=True, help="Three units, one repeat, small sizes: a smoke run.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--report-only", is_flag=True, help="Run nothing: tables from the results stored under --out.")
def bench_busy_cmd(data, units, settings_text, conditions, repeats, burners, out, force, as_json, quick, quiet,
                   report_only):
    """Time the same units with recvec's default thread policy and the alternatives (one thread, all
    cores, the libraries' own defaults), on a quiet machine and beside a CPU burner on every core;
    the default must stay within 1.5x of the best setting in each condition."""
    from recvec.benchmarks.busy import SETTINGS, UNITS, BusyConfig, bench_busy
    from recvec.benchmarks.flags import parse_names

    chosen = parse_names(settings_text, "--settings", tuple(SETTINGS)) if settings_text else tuple(SETTINGS)
    cfg = BusyConfig(units=parse_names(units, "--units", UNITS) if units else UNITS,
                     settings=tuple(dict.fromkeys(("default", *chosen))),
                     conditions=parse_names(conditions, "--conditions", ("quiet", "busy")), repeats=repeats,
                     burners=burners)
    if quick:
        from dataclasses import replace

        ctx = click.get_current_context()
        from click.core import ParameterSource

        if ctx.get_parameter_source("units") != ParameterSource.COMMANDLINE:
            cfg = replace(cfg, units=("als_fit", "eval_hnsw", "single"))
        cfg = replace(cfg, repeats=1, single_users=60, seq_users=200, encode_texts=100)
    result = bench_busy(cfg, out, data=data, force=force, progress=show_progress(quiet), report_only=report_only,
                        command=bench_command_line())
    _bench_emit(result, as_json, [("unit", "unit", ""), ("condition", "condition", "")]
                + [(f"{s} s", f"{s} s", ".2f") for s in cfg.settings]
                + [("best", "best", ""), ("default / best", "default/best", ".2f")])


def _backend_uris(given: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``--uri NAME=URI`` values as (name, uri) pairs; UsageError for a malformed one or an unknown name."""
    out = []
    for text in given:
        name, sep, uri = text.partition("=")
        if not sep or not uri.strip() or name.strip().lower() not in BACKEND_NAMES:
            raise click.UsageError(f"--uri takes NAME=URI with NAME one of {', '.join(BACKEND_NAMES)}, got "
                                   f"{text.split('=', 1)[0][:40]!r}=...")
        out.append((name.strip().lower(), uri.strip()))
    return tuple(out)


@bench_group.command("parse")
@click.option("--data", required=True, help="Directory holding an ML-1M-format ratings.dat.")
@click.option("--repeats", type=count(1, 1000), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_parse_cmd(data, repeats, as_json):
    """Our ratings.dat parser vs pyarrow's CSV reader alone and the lab's pandas python-engine read
    (same process, one thread each)."""
    from recvec.benchmarks.parse import benchmark_parse

    r = benchmark_parse(data, repeats=repeats)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"{r['rows']:,} rows: recvec {r['recvec_s']:.3f} s, pyarrow alone {r['pyarrow_s']:.3f} s "
               f"(recvec {r['vs_pyarrow']:.2f}x of it), pandas python engine {r['baseline_s']:.3f} s "
               f"({r['speedup']:.1f}x slower than recvec); one thread each, {r['cpus_available']} CPUs")


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


@bench_group.command("serve")
@click.option("--data", default=None, help="MovieLens directory/.zip/s3:// (default: the embedded synthetic dataset).")
@click.option("--clients", "clients_text", default="1,8,32", show_default=True, help="Concurrent clients, a comma list.")
@click.option("--requests", type=count(1, 10_000_000), default=1000, show_default=True, help="Requests per client.")
@click.option("--users", type=count(1, 10_000_000), default=1000, show_default=True,
              help="Distinct users whose train histories are sent.")
@click.option("-k", "k", type=count(1, 1000), default=10, show_default=True, help="Results per request.")
@click.option("--reloads", type=count(0, 1000), default=10, show_default=True,
              help="Reloads (alternating two artifacts) during the reload run.")
@click.option("--reload-clients", type=count(1, 4096), default=32, show_default=True, help="Clients of the reload run.")
@click.option("--workers", type=count(1, 64), default=1, show_default=True, help="Server worker processes.")
@click.option("--server-threads", type=count(0, 1024), default=0, show_default=True,
              help="Server search threads per worker (0: its default, the cores available).")
@click.option("--inline/--no-inline", default=True, show_default=True,
              help="The server's --inline/--no-inline (a lone request answered on the event loop's thread).")
@click.option("--index", "index_spec", default="flat", show_default=True, help="Index spec of the ALS artifacts.")
@click.option("--factors", type=count(2, 4096), default=64, show_default=True,
              help="ALS factors of the served artifact (the reload partner has half).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed (users sampled, ALS).")
@click.option("--client", type=click.Choice(["socket", "http.client"]), default="socket", show_default=True,
              help="HTTP client of the timed runs: a lean keep-alive client on a socket (as load generators are), "
                   "or Python's http.client (~0.25 ms a request of its own); the paired run times both.")
@click.option("--out", default="results/serve", show_default=True,
              help="Results directory: raw/ (stored results), artifacts/, serve.md, serve.csv, serve_qps_p99.png.")
@click.option("--force", is_flag=True, help="Rerun (and rebuild the artifacts) even if results are stored.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quick", is_flag=True, help="Small sizes: 1 and 4 clients, 100 requests each, 3 reloads.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--report-only", is_flag=True, help="Run nothing: rebuild the report from the stored results.")
@threads_option
def bench_serve_cmd(data, clients_text, requests, users, k, reloads, reload_clients, workers, server_threads,
                    inline, index_spec, factors, seed, client, out, force, as_json, quick, quiet, report_only):
    """`recvec serve` on 127.0.0.1 under 1/8/32 concurrent clients (QPS, p50/p99 end to end) against the
    in-process Recommender call measured in the same run, then during reloads that alternate two
    artifacts (every answer checked)."""
    from dataclasses import replace

    from click.core import ParameterSource

    from recvec.benchmarks.flags import parse_ints
    from recvec.benchmarks.serve import QUICK, ServeBenchConfig, bench_serve

    ctx = click.get_current_context()
    given = lambda name: ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE  # noqa: E731
    cfg = ServeBenchConfig(clients=parse_ints(clients_text, "--clients"), requests=requests, users=users, k=k,
                           reloads=reloads, reload_clients=reload_clients, workers=workers,
                           server_threads=server_threads, inline=inline, index=index_spec, factors=factors,
                           seed=seed, client=client)
    if quick:
        flags = {"clients": "clients_text"}
        cfg = replace(cfg, **{kk: v for kk, v in QUICK.items() if not given(flags.get(kk, kk))})
    result = bench_serve(cfg, out, data=data, force=force, progress=show_progress(quiet), report_only=report_only,
                         command=bench_command_line())
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    emit_table(result["summary"], [("mode", "what", ""), ("clients", "clients", "d"), ("qps", "QPS", ".0f"),
                                   ("p50_ms", "p50 ms", ".3f"), ("p99_ms", "p99 ms", ".3f"),
                                   ("server_mean_ms", "server ms", ".3f"), ("errors", "errors", "d"),
                                   ("mismatched", "wrong", "d")])
    if result["overhead_ms"] is not None:
        click.echo(f"HTTP overhead at 1 client (served p50 - in-process p50): {result['overhead_ms']:.3f} ms; "
                   f"alternating call by call: {result['paired_overhead_ms']:.3f} ms"
                   + (f" (http.client as the client: {hc:.3f} ms)"
                      if (hc := result.get("paired_httpclient_overhead_ms")) is not None else ""))
    for t in result["targets"]:
        click.echo(f"[{'met' if t['met'] else 'NOT met'}] {t['target']}: {t['measured']}")
    md = [f for f in result["files"] if f.endswith(".md")]
    click.echo(f"wrote {len(result['files'])} files; report: {md[0] if md else '-'}")


@bench_group.command("cold")
@click.option("--data", default="synthetic", show_default=True, help="A dataset with item text (MovieLens, a table "
                                                                    "with --items, a .toml spec).")
@click.option("--share", type=FiniteFloat(min=0.001, max=0.5), default=0.1, show_default=True,
              help="Share of the train items made cold (every train row of theirs removed).")
@click.option("--encoder", default="minilm", show_default=True, help="Text encoder of the item texts.")
@click.option("--pooling", type=click.Choice(["cls", "mean", "st"]), default=None, help="Text pooling.")
@click.option("-k", "k", type=count(), default=10, show_default=True, help="Cut-off K.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Which items go cold; the ALS seed.")
@click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True, help="Ratings >= threshold are positives.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def bench_cold_cmd(data, share, encoder, pooling, k, seed, threshold, as_json, quiet):
    """Recall@K of held-out items nobody rated in train: text mapped into the ALS space (ridge), text
    alone, ALS alone and popularity, ranked among all items and among the cold ones."""
    from recvec.benchmarks.cold import bench_cold

    r = bench_cold(data, share=share, encoder=encoder, pooling=pooling, k=k, seed=seed, threshold=threshold,
                   progress=show_progress(quiet))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"{r['data']}: {r['cold_items']:,} cold items of {r['cold_items'] + r['warm_items']:,}; "
               f"{r['users']:,} test users whose held-out item is cold; ridge lambda {r['ridge_lambda']:g}")
    emit_table(r["rows"], [("method", "method", ""), ("among", "ranked among", ""),
                           ("recall", f"Recall@{k}", ".4f"), ("ndcg", f"NDCG@{k}", ".4f")])


@bench_group.command("read")
@click.option("--rows", type=count(1, 2_000_000_000), default=25_000_095, show_default=True,
              help="Rows of the synthetic interactions table (ML-25M's size by default).")
@click.option("--formats", default="csv,parquet", show_default=True, help="Comma list: csv, parquet.")
@click.option("--repeats", type=count(1, 1000), default=3, show_default=True,
              help="Reads per side (alternating, each in a fresh process; best kept).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the generated table.")
@click.option("--tmp", default=None, help="Where the temporary directory goes (default: the system's).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def bench_read_cmd(rows, formats, repeats, seed, tmp, as_json, quiet):
    """recvec's load of a large interactions table (integer ids, then string ids) against pyarrow's
    reader alone in the same run, with peak memory; the generated files are removed afterwards."""
    from recvec.benchmarks.flags import parse_names
    from recvec.benchmarks.tableread import benchmark_read

    fmts = parse_names(formats, "--formats", ("csv", "parquet"))
    r = benchmark_read(rows=rows, repeats=repeats, seed=seed, tmp=tmp, formats=tuple(fmts),
                       progress=None if quiet or as_json else (lambda m: click.echo(m, err=True)))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    emit_table(r["rows"], [("format", "format", ""), ("ids", "ids", ""), ("rows", "rows", ","),
                           ("pyarrow_s", "pyarrow s", ".2f"), ("pyarrow_system_s", "pyarrow s (system pool)", ".2f"),
                           ("recvec_s", "recvec s", ".2f"), ("ratio", "ratio", ".2f"),
                           ("ratio_vs_system", "ratio (system pool)", ".2f"),
                           ("pyarrow_peak_mb", "pyarrow peak MB", ",.0f"), ("recvec_peak_mb", "recvec peak MB", ",.0f"),
                           ("fingerprint_s", "fingerprint s", ".2f"), ("string_cost_vs_integer", "vs int ids", ".2f")])
    click.echo(f"load average {r['load_average_before']} -> {r['load_average_after']}; {r['cpus_available']} CPUs; "
               f"pyarrow {r['pyarrow']} with {r['rows'][0]['pyarrow_cpu_count']} CPU threads")


@bench_group.command("layouts")
@click.option("--data", required=True, help="A MovieLens dataset (directory, .zip, s3://).")
@click.option("--models", default="popular,als", show_default=True, help="Comma list of model kinds.")
@click.option("-k", "k", type=count(), default=10, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True, help="ALS seed (the same for every layout).")
@click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True, help="Ratings >= threshold are positives.")
@click.option("--tmp", default=None, help="Where the temporary directory goes (default: the system's).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def bench_layouts_cmd(data, models, k, seed, threshold, tmp, as_json, quiet):
    """One MovieLens dataset in its own format and rewritten as Parquet and CSV with other column names
    and string ids: the split's rows, user and item order and each model's Recall@K / NDCG@K compared."""
    from recvec.benchmarks.flags import parse_names
    from recvec.benchmarks.layouts import benchmark_layouts

    r = benchmark_layouts(data, models=tuple(parse_names(models, "--models")), k=k, seed=seed, threshold=threshold,
                          tmp=tmp, progress=None if quiet or as_json else (lambda m: click.echo(m, err=True)))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    emit_table(r["rows"], [("layout", "layout", ""), ("format", "format", ""), ("model", "model", ""),
                           ("train_rows", "train", ","), ("test_rows", "test", ","),
                           ("rows_identical", "split rows =", ""), ("user_order_identical", "user order =", ""),
                           ("item_order_identical", "item order =", ""), (f"recall@{k}", f"Recall@{k}", ".4f"),
                           (f"ndcg@{k}", f"NDCG@{k}", ".4f"), ("metrics_identical", "metrics =", ""),
                           ("load_s", "load s", ".2f")])
    click.echo(f"load average {r['load_average_before']} -> {r['load_average_after']}; {r['cpus_available']} CPUs")


@bench_group.command("spark")
@click.option("--sizes", default="1000000,10000000,50000000", show_default=True,
              help="Rows of the synthetic interaction sets of the scale curve (0: none).")
@click.option("--sides", default="implicit,spark", show_default=True, help="Comma list: implicit, spark.")
@click.option("--factors", type=count(1, 4096), default=64, show_default=True, help="ALS factors.")
@click.option("--iterations", type=count(1, 1000), default=10, show_default=True, help="ALS iterations (scale curve).")
@click.option("--encode", "encode_n", type=count(0, 10_000_000), default=100_000, show_default=True,
              help="Generated item texts encoded with MiniLM locally and on Spark (0: skip).")
@click.option("--data", default=None, help="A MovieLens dataset: split identity and Spark vs implicit Recall@10.")
@click.option("--spark-master", default="local[2]", show_default=True, help="The Spark side's master.")
@click.option("--spark-conf", multiple=True, metavar="KEY=VALUE",
              help="Spark settings (repeatable; default spark.driver.memory=12g).")
@click.option("--max-seconds", type=FiniteFloat(min=1), default=1800, show_default=True,
              help="A side still running after this long is stopped and recorded as not finished.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the generated data and the fits.")
@click.option("--out", default="results/spark", show_default=True, help="Results directory (raw/, spark.md, spark.json).")
@click.option("--force", is_flag=True, help="Rerun units whose stored results exist (default: resume).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--report-only", is_flag=True, help="Run nothing: the report from the results stored under --out.")
def bench_spark_cmd(sizes, sides, factors, iterations, encode_n, data, spark_master, spark_conf, max_seconds, seed,
                    out, force, as_json, quiet, report_only):
    """ALS fit time and peak memory of implicit (local) and Spark side by side on synthetic interaction
    sets of growing size (each side in a fresh process), item-text encoding locally vs on Spark, and,
    with --data, the Spark split and Spark ALS Recall@10 against implicit's on MovieLens."""
    from recvec.benchmarks.flags import parse_ints, parse_names
    from recvec.benchmarks.spark_bench import SparkBenchConfig, bench_spark
    from recvec.engine.engines.spark_session import parse_conf

    conf = parse_conf(spark_conf) or SparkBenchConfig.conf
    cfg = SparkBenchConfig(sizes=tuple(s for s in parse_ints(sizes, "--sizes") if s) if sizes.strip() != "0" else (),
                           sides=parse_names(sides, "--sides", ("implicit", "spark")), factors=factors,
                           iterations=iterations, seed=seed, encode=encode_n, master=spark_master, conf=conf,
                           max_seconds=max_seconds)
    say = None if quiet or as_json else (lambda m: click.echo(m, err=True))
    r = bench_spark(cfg, out, data=data, force=force, say=say, report_only=report_only,
                    command=bench_command_line())
    if as_json:
        click.echo(json.dumps(r, indent=2, default=str))
        return
    from recvec.benchmarks.spark_bench import SCALE_COLUMNS

    emit_table(r["scale"], [(k, h, {"yn": "", "x": ".2f"}.get(f, f)) for k, h, f in SCALE_COLUMNS])
    if r["encode"]:
        e = r["encode"]
        click.echo(f"encode {e['texts']:,} texts: local {e['local_s']:.1f} s, Spark {e['spark_s']:.1f} s "
                   f"({e['spark_vs_local']:.2f}x), largest difference {e['max_abs_diff']}")
    for a in r["accuracy"]:
        click.echo(f"{a['data']}: split identical {a['split_identical']} ({a['train_rows']:,} / {a['test_rows']:,}); "
                   f"Recall@10 implicit {a['implicit_recall']:.4f}, Spark {a['spark_recall']:.4f} "
                   f"({a['recall_diff']:+.4f})")
    click.echo(f"largest finished: {r['largest_finished']}; report: {r['files'][0]}")


def _register() -> None:
    """The commands that live in modules of their own (cli/bench_*.py)."""
    from recvec.cli.bench_sequence import bench_sequence_cmd
    from recvec.cli.bench_similar import bench_similar_cmd

    bench_group.add_command(bench_sequence_cmd)
    bench_group.add_command(bench_similar_cmd)


_register()
