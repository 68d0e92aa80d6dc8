"""`recvec bench accuracy|latency|parse|evaltime`: the benchmark harness's commands."""

from __future__ import annotations

import json

import click

from recvec.cli.common import (
    SEED,
    FiniteFloat,
    RecvecGroup,
    count,
    emit_table,
    show_progress,
)
from recvec.indexes.backends import NAMES as BACKEND_NAMES


def _bench_command_line() -> str:
    """The command as typed (the flags given on the command line), for the report's "Reproduce"."""
    import shlex

    from click.core import ParameterSource

    ctx = click.get_current_context()
    parts = ["recvec", "bench", ctx.info_name]
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or ctx.get_parameter_source(p.name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[p.name]
        flag = max(p.opts, key=len)
        if p.is_flag:
            parts.append(flag if value or not p.secondary_opts else max(p.secondary_opts, key=len))
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def bench_common(f):
    """Click decorator adding the options every ``recvec bench`` command shares: --indexes, --ef-search,
    --nprobe (comma lists, parsed by the command), --seed, --out, --force, --json, --quick, --quiet and
    --report-only."""
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
                          "hnsw-noreorder: the same HNSW graph in FAISS's insertion order.")(f)
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


@bench_group.command("accuracy")
@click.option("--data", default=None, help="MovieLens directory/.zip/s3:// (default: the embedded synthetic dataset).")
@click.option("--synthetic", type=count(42, 1_000_000), default=None, help="Use a synthetic MovieLens-style dataset with N items.")
@click.option("--models", default="popular,als,text", show_default=True,
              help="Comma list: popular, als, als-time, hybrid, sequence, text (every available encoder x pooling), "
                   "text:ENCODER, text:ENCODER:POOLING.")
@click.option("--encoders", default=None, help="Encoders 'text' expands to (default: every available one).")
@click.option("-k", "ks_text", default="10,20", show_default=True, help="Cut-offs K for Recall@K, NDCG@K, overlap@K.")
@click.option("--implicit/--no-implicit", default=True, show_default=True,
              help="Also run implicit's recommend and FAISS wrapper on the ALS model.")
@click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True, help="Ratings >= threshold are positives.")
@bench_common
def bench_accuracy_cmd(data, synthetic, models, encoders, ks_text, implicit, threshold, indexes, ef_list, nprobe_list,
                       seed, out, force, as_json, quick, quiet, report_only):
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
                         implicit=implicit, seed=seed, threshold=threshold)
    if quick:
        cfg = replace(cfg, **{k: v for k, v in QUICK.items()
                              if not given({"ef_search": "ef_list", "nprobe": "nprobe_list"}.get(k, k))})
    if ef_list:
        cfg = replace(cfg, ef_search=parse_ints(ef_list, "--ef-search"))
    if nprobe_list:
        cfg = replace(cfg, nprobe=parse_ints(nprobe_list, "--nprobe"))
    result = bench_accuracy(cfg, out, data=data, synthetic=synthetic,
                            encoders=parse_names(encoders, "--encoders") if encoders else None, force=force,
                            progress=show_progress(quiet), report_only=report_only, command=_bench_command_line())
    k0 = min(cfg.ks)
    _bench_emit(result, as_json, [("dataset", "data", ""), ("model", "model", ""), ("index", "index", ""),
                                  ("setting", "query", "")]
                + [(f"{m}@{k}", f"{m.capitalize() if m == 'recall' else 'NDCG'}@{k}", ".4f")
                   for k in cfg.ks for m in ("recall", "ndcg")]
                + [(f"overlap@{k0}", f"overlap@{k0}", ".4f"), ("qps", "users/s", ".0f")])


@bench_group.command("latency")
@click.option("--data", default=None, help="MovieLens directory: its ALS item factors and users' train histories.")
@click.option("--synthetic", "synthetic_text", default=None,
              help="Synthetic structured catalogue sizes, e.g. 100000,1000000 (each in every --dims).")
@click.option("--dims", default="64,384", show_default=True, help="Dimensions of the synthetic catalogues.")
@click.option("-k", "k", type=count(), default=10, show_default=True, help="Results per query (recall@k).")
@click.option("--queries", type=count(1, 10_000_000), default=1000, show_default=True, help="Users per catalogue (batch, recall).")
@click.option("--single", type=count(1, 10_000_000), default=300, show_default=True, help="Of them, timed one query per call.")
@click.option("--repeats", type=count(1, 1000), default=2, show_default=True, help="Batch timings (best kept).")
@click.option("--backends", default="faiss", show_default=True, help="faiss, or faiss,milvus (Milvus Lite under --out).")
@click.option("--milvus-queries", type=count(1, 10_000_000), default=200, show_default=True, help="Users searched on Milvus.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="raw IndexFlatIP, implicit recommend / recalculate_user / FAISS wrapper, matmul peak.")
@click.option("--artifact/--no-artifact", default=True, show_default=True,
              help="MovieLens: artifact size and load time (flat, hnsw).")
@click.option("--threads", type=count(1, 1024), default=None, help="FAISS OpenMP threads (default: all available).")
@click.option("--threshold", type=FiniteFloat(), default=4.0, show_default=True, help="Ratings >= threshold are positives.")
@bench_common
def bench_latency_cmd(data, synthetic_text, dims, k, queries, single, repeats, backends, milvus_queries, baselines,
                      artifact, threads, threshold, indexes, ef_list, nprobe_list, seed, out, force, as_json, quick,
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
        if not data and not synthetic:
            synthetic = (20000,)
        if not given("dims"):
            dim_list = (64,)
    if not report_only and not data and not synthetic:
        raise click.UsageError("give --data PATH and/or --synthetic N (or --quick)")
    cfg = LatencyConfig(k=k, indexes=parse_names(indexes, "--indexes", INDEX_CHOICES),
                        queries=queries, single=single, repeats=repeats,
                        backends=parse_names(backends, "--backends", BACKEND_NAMES), baselines=baselines,
                        artifact=artifact, milvus_queries=milvus_queries, seed=seed)
    if quick:
        flags = {"ef_search": "ef_list", "nprobe": "nprobe_list"}
        cfg = replace(cfg, **{kk: v for kk, v in QUICK.items() if not given(flags.get(kk, kk))})
    if ef_list:
        cfg = replace(cfg, ef_search=parse_ints(ef_list, "--ef-search"))
    if nprobe_list:
        cfg = replace(cfg, nprobe=parse_ints(nprobe_list, "--nprobe"))
    if threads is not None:
        import faiss

        faiss.omp_set_num_threads(threads)
    sources = [] if report_only else sources_for(data, synthetic, dim_list, seed=seed, threshold=threshold)
    result = bench_latency(sources, cfg, out, force=force, progress=show_progress(quiet), report_only=report_only,
                           command=_bench_command_line())
    _bench_emit(result, as_json, [("catalogue", "catalogue", ""), ("backend", "backend", ""), ("index", "index", ""),
                                  ("setting", "query", ""), ("why", "why", ""), (f"recall@{k}", f"recall@{k}", ".4f"),
                                  ("single_p50_ms", "p50 ms", ".3f"), ("single_p99_ms", "p99 ms", ".3f"),
                                  ("full_p50_ms", "full p50", ".3f"), ("qps_batch", "batch QPS", ".0f"),
                                  ("speedup_p50_vs_flat", "x flat", ".1f"), ("build_s", "build s", ".2f")])


@bench_group.command("parse")
@click.option("--data", required=True, help="Directory holding an ML-1M-format ratings.dat.")
@click.option("--repeats", type=count(1, 1000), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_parse_cmd(data, repeats, as_json):
    """Our ratings.dat parser vs the lab's pandas python-engine read (same process)."""
    from recvec.benchmarks.parse import benchmark_parse

    r = benchmark_parse(data, repeats=repeats)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"{r['rows']:,} rows: recvec {r['recvec_s']:.3f} s, pandas python engine {r['baseline_s']:.3f} s "
               f"({r['speedup']:.1f}x), {r['cpus_available']} CPUs")


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
