"""`recvec bench similar`: item-to-item similarity at catalogue scale, beside the exact scan and raw FAISS."""

from __future__ import annotations

import json

import click

from recvec.cli.common import (
    SEED,
    bench_command_line,
    count,
    emit_table,
)


@click.command("similar")
@click.option("--synthetic", "sizes", default="1000000", show_default=True, metavar="N[,N...]",
              help="Synthetic ALS-like catalogue sizes (un-normalised vectors, lognormal norms).")
@click.option("--dims", default="64", show_default=True, metavar="D[,D...]", help="Vector dimensions.")
@click.option("--items", type=count(1, 1_000_000), default=300, show_default=True,
              help="Sampled items asking for their neighbours (single calls, timed one by one).")
@click.option("-k", "k", type=count(), default=10, show_default=True, help="Neighbours per item.")
@click.option("--similar-index", "spec", default="hnsw32", show_default=True, metavar="SPEC",
              help="The similar index kind `recvec build --similar-index` stores.")
@click.option("--ef-search", "ef_search", default="16,32,64,128", show_default=True, metavar="EF[,EF...]",
              help="efSearch values (graph kinds).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Catalogue and sample seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def bench_similar_cmd(sizes, dims, items, k, spec, ef_search, seed, as_json, quiet):
    """`query similar` (cosine) at catalogue scale: the exact scan, the similar index at each efSearch and
    raw FAISS on the same index, side by side: recall@k against the exact scan, p50/p99, speed-up, build."""
    from recvec.benchmarks.flags import parse_ints
    from recvec.benchmarks.runner import RunContext
    from recvec.benchmarks.similar import SimilarBenchConfig, bench_similar

    cfg = SimilarBenchConfig(sizes=parse_ints(sizes, "--synthetic"), dims=parse_ints(dims, "--dims"), items=items,
                             k=k, spec=spec, ef_search=parse_ints(ef_search, "--ef-search"), seed=seed)
    r = bench_similar(cfg, progress=None if quiet or as_json else (lambda m: click.echo(m, err=True)),
                      context=RunContext(bench_command_line()))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    emit_table(r["rows"], [("catalogue", "catalogue", ""), ("method", "method", ""), ("ef_search", "ef", ""),
                           (f"recall@{k}", f"recall@{k}", ".3f"), ("p50_ms", "p50 ms", ".3f"),
                           ("p99_ms", "p99 ms", ".3f"), ("x_exact", "x exact scan", ".1f"),
                           ("build_s", "build s", ".1f"), ("reachable_share", "reachable", ".4f")])
    m = r["machine"]
    click.echo(f"load average {m['load_average']}; FAISS {m['threads'].get('faiss_omp')} OpenMP threads; "
               f"OPENBLAS_NUM_THREADS={m['threads'].get('OPENBLAS_NUM_THREADS', 'unset')}")
