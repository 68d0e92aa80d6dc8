"""The report stage: the metrics (:mod:`recvec.benchmarks.metrics`, computed from stored results)
-> Markdown + CSV tables and PNG plots, for the latency and the accuracy benchmarks.

Plots use matplotlib's Agg backend, imported only when a plot is drawn. The recall/QPS plot
follows ann-benchmarks: recall on x, queries per second on a log y axis, and per index kind the
Pareto frontier of its settings (no other setting of that kind is both more accurate and faster).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from pathlib import Path

from recvec.benchmarks.metrics import operating_point, operating_rows, row_name

Column = tuple[str, str, str]  # key, header, format ("" = str)


def fmt(v, f: str) -> str:
    """A table cell: ``v`` in format ``f`` -- "" (str), "ms" (adaptive decimals), "x" (a ratio),
    "yn" (yes/no) or a format spec (".4f"); None and NaN give ""."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if f == "":
        return str(v)
    if f == "ms":  # adaptive precision for milliseconds
        return f"{v:.3f}" if v < 1 else (f"{v:.2f}" if v < 100 else f"{v:.0f}")
    if f == "x":
        return f"{v:.2f}x" if v < 10 else f"{v:.0f}x"
    if f == "yn":
        return "yes" if v else "no"
    return format(v, f)


def markdown_table(rows: Sequence[dict], columns: Sequence[Column]) -> str:
    """A Markdown table of ``rows`` with ``columns`` (key, header, :func:`fmt` format); text columns
    left-aligned, numbers right-aligned, ``|`` in cells escaped."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    align = "|" + "|".join(":---" if (i == 0 or f == "") else "---:" for i, (_, _, f) in enumerate(columns)) + "|"
    body = ["| " + " | ".join(fmt(r.get(k), f).replace("|", "\\|") for k, _, f in columns) + " |" for r in rows]
    return "\n".join([head, align, *body])


def write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` as CSV with ``columns`` (default: every key, ``catalogue`` first; other keys
    dropped, None as ""); creates the parent directory; returns ``path``. OSError propagates."""
    cols = list(columns) if columns else sorted({k for r in rows for k in r}, key=lambda k: (k != "catalogue", k))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return path


def pareto_frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both recall (x) and QPS (y); sorted by recall."""
    best: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if not best or y > best[-1][1]:
            best.append((x, y))
    return sorted(best)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(path: Path, series: dict[str, list[tuple[float, float]]], *, title: str, xlabel: str,
                ylabel: str, markers: dict[str, tuple[float, float]] | None = None) -> Path:
    """Recall vs QPS: each series' Pareto frontier as a line (all its points faint), baselines as markers."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for i, (label, pts) in enumerate(sorted(series.items())):
        pts = [(x, y) for x, y in pts if x is not None and y]
        if not pts:
            continue
        color = f"C{i % 10}"
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, color=color, alpha=0.35)
        front = pareto_frontier(pts)
        ax.plot([p[0] for p in front], [p[1] for p in front], "-o", ms=4, color=color, label=label)
    for j, (label, (x, y)) in enumerate(sorted((markers or {}).items())):
        if x is None or not y:
            continue
        ax.scatter([x], [y], marker="*^sDPX"[j % 6], s=110, color="black", zorder=5)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_percentiles(path: Path, groups: list[str], bars: dict[str, list[dict | None]], *, title: str) -> Path:
    """Grouped bars of p50 per catalogue (x) and index (bar), with p95 and p99 marked above each."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) + 3), 5))
    names = list(bars)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        for g, r in enumerate(bars[name]):
            if not r or not r.get("p50_ms"):
                continue
            x = g - 0.4 + width * (i + 0.5)
            ax.bar(x, r["p50_ms"], width * 0.9, color=f"C{i % 10}", label=name if g == next(
                j for j, rr in enumerate(bars[name]) if rr and rr.get("p50_ms")) else None)
            ax.plot([x, x], [r["p50_ms"], r["p99_ms"]], color="black", lw=0.8)
            ax.scatter([x], [r["p95_ms"]], marker="_", color="black", s=40)
            ax.scatter([x], [r["p99_ms"]], marker="v", color="black", s=14)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("single-query latency, ms (bar p50, tick p95, triangle p99)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def machine_markdown(machine: dict | None, load_averages: Sequence[Sequence[float]] = ()) -> str:
    """A Markdown list of a machine record (``runner.machine_info``): CPU, threads, the range of the
    1-minute ``load_averages`` over the measurements, versions, platform."""
    if not machine:
        return "_machine: not recorded_"
    th = machine.get("threads", {})
    pools = ", ".join(f"{p['api']} {p['threads']} ({p['lib']})" for p in th.get("pools", []))
    vers = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items())
    mem = machine.get("memory_bytes")
    loads = sorted({tuple(x) for x in load_averages if x})
    load_txt = (f"{min(l[0] for l in loads):.2f}-{max(l[0] for l in loads):.2f} (1-min, over the measurements)"
                if loads else str(machine.get("load_average")))
    return "\n".join([
        f"- CPU: {machine.get('cpu')}, {machine.get('cores')} cores ({machine.get('cpus_available')} available)"
        + (f", {mem / 2 ** 30:.0f} GiB RAM" if mem else ""),
        f"- threads: FAISS OpenMP {th.get('faiss_omp', '?')}; pools: {pools or '?'}"
        + (f"; OPENBLAS_NUM_THREADS={th['OPENBLAS_NUM_THREADS']}" if th.get("OPENBLAS_NUM_THREADS") else ""),
        f"- load average: {load_txt}",
        f"- versions: {vers}",
        f"- platform: {machine.get('platform')}",
    ])


# ------------------------------------------------------------------------------- latency report


LATENCY_COLUMNS: list[Column] = [
    ("backend", "backend", ""), ("index", "index", ""), ("setting", "query", ""), ("recall@K", "recall@K", ".4f"),
    ("coverage", "coverage", ".4f"), ("reachable_share", "reachable", ".4f"),
    ("single_p50_ms", "p50 ms", "ms"), ("single_p95_ms", "p95 ms", "ms"), ("single_p99_ms", "p99 ms", "ms"),
    ("full_p50_ms", "full p50 ms", "ms"), ("full_p99_ms", "full p99 ms", "ms"), ("qps_batch", "batch QPS", ".0f"),
    ("speedup_p50_vs_flat", "p50 vs flat", "x"), ("build_s", "build s", ".2f"), ("index_mb", "index MiB", ".1f"),
    ("rss_mb", "RSS +MiB", ".0f"),
]


#: The side-by-side table of backends (1 client and concurrent clients; a served backend's load).
SERVED_COLUMNS: list[Column] = [
    ("backend", "backend", ""), ("index", "index", ""), ("setting", "query", ""), ("why", "why", ""),
    ("recall@K", "recall@K", ".4f"), ("single_p50_ms", "p50 ms 1 client", "ms"), ("single_p99_ms", "p99 ms 1 client", "ms"),
    ("conc_p50_ms", "p50 ms cN", "ms"), ("conc_p99_ms", "p99 ms cN", "ms"), ("conc_qps", "QPS cN", ".0f"),
    ("qps_batch", "batch QPS", ".0f"), ("build_s", "build s", ".2f"), ("load_s", "load s", ".2f"),
    ("rows_per_s", "rows/s", ".0f"),
]


def _with_k(rows: list[dict], k: int) -> list[dict]:
    return [{**r, "recall@K": r.get(f"recall@{k}")} for r in rows]


def latency_report(metrics: dict, out: Path, *, command: str | None = None) -> list[Path]:
    """Write the latency report under ``out`` from ``metrics`` (``latency_metrics``): latency.md,
    latency_{sweep,summary,baselines,targets}.csv, a recall/QPS plot per catalogue and the
    percentile plot. Returns the paths written. OSError propagates."""
    out = Path(out)
    written: list[Path] = []
    cats = metrics["catalogues"]
    lines = ["# recvec latency benchmark", ""]
    if command:
        lines += ["Report written by:", "", "```", command, "```", "",
                  "(each catalogue below names the commands that measured it)", ""]
    first = next((c for c in cats if c.get("machine")), None)
    all_loads = [la for c in cats for la in c.get("load_averages", [])]
    lines += ["## Machine", "", machine_markdown(first["machine"] if first else None, all_loads), ""]
    lines += ["Latencies are one query per call (p50/p95/p99 over the sampled users): *p50/p95/p99* is the bare",
              "exclusion-aware index search for a ready query vector; *full* is the path a service runs (history ids",
              "-> user vector -> search with the history excluded -> external ids). *recall@K* is the overlap with",
              "the exact flat index's filtered top-K (the users' histories excluded). *batch QPS*: all users in one",
              "call. *RSS +MiB*: resident memory added by building the index.", ""]
    if metrics.get("targets"):
        lines += ["## Targets", "", markdown_table(metrics["targets"], [("catalogue", "catalogue", ""), ("target", "target", ""),
                                                                       ("measured", "measured", ""), ("met", "met", "yn")]), ""]
        written.append(write_csv(out / "latency_targets.csv", metrics["targets"], ["catalogue", "target", "measured", "met"]))
    summary, sweep, base_rows = [], [], []
    groups, pct_bars = [], {}
    for ci, c in enumerate(cats):
        k = c["k"]
        info = c["base"]["catalogue"]
        title = f"{c['name']}: {c['n']:,} items x {c['d']}" if c["n"] else c["name"]
        lines += [f"## {title}", ""]
        src = (f"MovieLens `{info['data']}` ALS ({info['factors']} factors) item factors; users' train histories, "
               "fold-in user vectors" if info["kind"] == "movielens" else
               f"your item vectors `{info['data']}`{' (normalised)' if info.get('normalise') else ''}; users: a "
               "random item and its nearest neighbours, the mean of their vectors" if info["kind"] == "vectors" else
               f"synthetic structured catalogue (seed {info['seed']}, {info.get('n_clusters') or 'sqrt(n)'} clusters, "
               f"norm sigma {info['norm_sigma']})")
        lines += [f"{src}; {c['base']['queries']} users (batch, recall), "
                  f"{c['rows'][0]['nsingle'] if c['rows'] else 0} timed one per call; K = {k}.", ""]
        if c.get("commands"):
            lines += ["Measured by:", "", "```", *c["commands"], "```", ""]
        ops = operating_rows(c["rows"], k)
        lines += ["### Index kinds (default setting and fastest settings reaching recall 0.95 / 0.99)", "",
                  markdown_table(_with_k(ops, k), LATENCY_COLUMNS[:3] + [("why", "why", "")] + LATENCY_COLUMNS[3:])
                  .replace("recall@K", f"recall@{k}"), ""]
        if len({r["backend"] for r in c["rows"]}) > 1:
            clients = next((r["clients"] for r in ops if r.get("clients")), 8)
            side = [r for r in ops if r["why"] in ("default", "fastest >= 0.99")]
            lines += [f"### Backends side by side (1 client; {clients} concurrent clients, a connection each)", "",
                      "Served backends answer a subset of the users (the first --served-queries); recall@K is against "
                      "FAISS's exact flat top-K of the same users. *load s* / *rows/s*: loading the vectors "
                      "(insert or COPY) before the index is built; *build s*: load + index build + ready to serve.", "",
                      markdown_table(_with_k(side, k), SERVED_COLUMNS).replace("recall@K", f"recall@{k}")
                      .replace("cN", f"{clients} clients"), ""]
        summary += [{**r, "recall": r.get(f"recall@{k}")} for r in ops]
        sweep += [{**r, "recall": r.get(f"recall@{k}")} for r in c["rows"]]
        bl = c["baselines"]
        flat = next((r for r in c["rows"] if r["backend"] == "faiss" and r["kind"] == "flat"), None)
        brow = []
        hnsw_rows = [x for x in c["rows"] if x["backend"] == "faiss" and x["kind"] == "hnsw"]
        for name in ("raw-flat", "blas-exact", "implicit-exact", "implicit-recalc", "implicit-faiss"):
            b = bl.get(name)
            if not b:
                continue
            r = {**b, "recall@K": b.get(f"recall@{k}"), "catalogue": c["name"]}
            ours, lat = None, "single"
            if name in ("raw-flat", "blas-exact", "implicit-exact"):
                ours = flat
            elif name == "implicit-recalc":
                ours, lat = flat, "full"
            elif name == "implicit-faiss" and b.get("single_p50_ms"):
                ours = operating_point(hnsw_rows, k, max(0.99, b.get(f"recall@{k}") or 0)) or \
                    operating_point(hnsw_rows, k, b.get(f"recall@{k}") or 0)
            if ours is not None and b.get("single_p50_ms"):
                r["ours"] = row_name(ours) + (" (full path)" if lat == "full" else "")
                r["ours_recall"] = ours.get(f"recall@{k}")
                r["p50_ratio"] = b["single_p50_ms"] / ours[f"{lat}_p50_ms"] if ours.get(f"{lat}_p50_ms") else None
                r["p99_ratio"] = b["single_p99_ms"] / ours[f"{lat}_p99_ms"] if ours.get(f"{lat}_p99_ms") else None
                if b.get("qps_batch") and ours.get("qps_batch"):
                    r["qps_ratio"] = ours["qps_batch"] / b["qps_batch"]
            brow.append(r)
        if brow:
            lines += ["### Baselines (same vectors, same users, same run)", "",
                      "Ratios compare recvec's row named in *recvec* with the baseline; above 1 means recvec is faster "
                      "(p50/p99: baseline latency / recvec latency; QPS: recvec / baseline).", "",
                      markdown_table(brow, [("name", "baseline", ""), ("recall@K", f"recall@{k}", ".4f"),
                                            ("single_p50_ms", "p50 ms", "ms"), ("single_p99_ms", "p99 ms", "ms"),
                                            ("qps_batch", "batch QPS", ".0f"), ("build_s", "build s", ".2f"),
                                            ("threads", "threads", ""), ("ours", "recvec", ""),
                                            ("ours_recall", f"recvec recall@{k}", ".4f"),
                                            ("p50_ratio", "p50 ratio", "x"), ("p99_ratio", "p99 ratio", "x"),
                                            ("qps_ratio", "QPS ratio", "x"), ("what", "what", "")]), ""]
            base_rows += brow
        mm = bl.get("matmul")
        if mm:
            split = (f" ({mm['split_threads']} matmuls at once on {mm['split_threads']} threads, as the exact path "
                     f"splits its batches; one call: {mm['gflops_one_call']:.1f})") if mm.get("gflops_split") else ""
            lines += [f"Machine matmul peak (float32 {mm['n']}^3, numpy BLAS): {mm['gflops']:.1f} GFLOP/s{split}"
                      + (f"; exact flat search with exclusion: {mm['exact_gflops']:.1f} GFLOP/s "
                         f"({100 * mm['exact_gflops'] / mm['gflops']:.0f}% of peak)" if mm.get("exact_gflops") else "")
                      + (f"; raw IndexFlatIP: {mm['raw_flat_gflops']:.1f} GFLOP/s" if mm.get("raw_flat_gflops") else "")
                      + (f"; numpy BLAS exact: {mm['blas_exact_gflops']:.1f} GFLOP/s" if mm.get("blas_exact_gflops") else "")
                      + ".", ""]
        if c["artifacts"]:
            lines += ["### Artifact", "", markdown_table(
                [{**a, "mib": a["bytes"] / 2 ** 20, "raw_mib": a["raw_bytes"] / 2 ** 20} for a in c["artifacts"]],
                [("index", "index", ""), ("mib", "artifact MiB", ".2f"), ("raw_mib", "raw vectors MiB", ".2f"),
                 ("size_ratio", "ratio", ".2f"), ("load_p50_ms", "load p50 ms (BLAS 1 thread)", ".1f"),
                 ("load_min_ms", "load min ms", ".1f"),
                 ("load_default_threads_p50_ms", "load p50 ms (BLAS default threads)", ".1f")]), ""]
        # plots
        series: dict[str, list[tuple[float, float]]] = {}
        for r in c["rows"]:
            series.setdefault(f"{r['backend']} {r['kind']}", []).append((r.get(f"recall@{k}"), r.get("qps_single")))
        markers = {}
        for name in ("implicit-faiss", "implicit-exact", "raw-flat"):
            b = bl.get(name)
            if b and b.get("single_p50_ms") and b.get(f"recall@{k}") is not None and name != "raw-flat":
                markers[name] = (b[f"recall@{k}"], 1e3 / b["single_p50_ms"])
        png = out / f"latency_pareto_{_file_slug(c['name'])}.png"
        plot_pareto(png, series, markers=markers, title=f"{title}: filtered recall@{k} vs single-query QPS",
                    xlabel=f"recall@{k} vs exact (history excluded)",
                    ylabel="queries per second, one per call (1 / p50 latency)")
        written.append(png)
        lines += [f"![recall vs QPS]({png.name})", ""]
        groups.append(f"{c['n']:,}x{c['d']}" if c["n"] else c["name"])
        kinds = {}
        for r in c["rows"]:
            kinds.setdefault(f"{r['backend']} {r['kind']}", []).append(r)
        for name, rs in kinds.items():
            op = operating_point(rs, k, 0.95) or max(rs, key=lambda r: r.get(f"recall@{k}") or 0)
            pct_bars.setdefault(name, [None] * len(cats))[ci] = {
                "p50_ms": op.get("single_p50_ms"), "p95_ms": op.get("single_p95_ms"), "p99_ms": op.get("single_p99_ms")}
    if cats:
        png = plot_percentiles(out / "latency_percentiles.png", groups, pct_bars,
                               title="single-query latency per catalogue\n(each index at its fastest setting with "
                                     "recall >= 0.95, else its most accurate)")
        written.append(png)
        lines += ["## Latency percentiles per catalogue size", "", f"![latency percentiles]({png.name})", ""]
    lines += ["## Full sweep", "", "Every setting measured: `latency_sweep.csv`; baselines: `latency_baselines.csv`.", ""]
    sweep_cols = ["catalogue", "backend", "index", "setting", "default", "recall", "coverage", "reachable_share",
                  "single_p50_ms", "single_p95_ms",
                  "single_p99_ms", "single_mean_ms", "full_p50_ms", "full_p95_ms", "full_p99_ms", "qps_batch",
                  "qps_single", "speedup_p50_vs_flat", "build_s", "index_mb", "rss_mb", "nq", "nsingle",
                  "full_path_agreement", "faiss_threads", "load_average", "clients", "conc_p50_ms", "conc_p99_ms",
                  "conc_qps", "load_s", "rows_per_s", "index_s", "fallbacks"]
    written.append(write_csv(out / "latency_sweep.csv", sweep, sweep_cols))
    written.append(write_csv(out / "latency_summary.csv", summary, ["why"] + sweep_cols))
    written.append(write_csv(out / "latency_baselines.csv", base_rows,
                             ["catalogue", "name", "recall@K", "single_p50_ms", "single_p95_ms", "single_p99_ms",
                              "qps_batch", "build_s", "threads", "ours", "ours_recall", "p50_ratio", "p99_ratio",
                              "qps_ratio", "what", "load_average"]))
    md = out / "latency.md"
    md.write_text("\n".join(lines) + "\n")
    written.append(md)
    return written


def _file_slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# ------------------------------------------------------------------------------- accuracy report


def accuracy_columns(ks: Sequence[int]) -> list[Column]:
    """The accuracy summary table's columns for cut-offs ``ks``."""
    cols: list[Column] = [("model", "model", ""), ("index", "index", ""), ("setting", "query", "")]
    for k in ks:
        cols += [(f"recall@{k}", f"Recall@{k}", ".4f"), (f"ndcg@{k}", f"NDCG@{k}", ".4f")]
    cols += [(f"overlap@{k}", f"overlap@{k} vs exact", ".4f") for k in ks]
    cols += [("qps", "users/s", ".0f")]
    return cols


def accuracy_report(metrics: dict, out: Path, *, command: str | None = None) -> list[Path]:
    """Write the accuracy report under ``out`` from ``metrics`` (``accuracy_metrics``): accuracy.md,
    accuracy.csv, accuracy_sweep.csv and an overlap/QPS plot per dataset x model. Returns the paths
    written. OSError propagates."""
    out = Path(out)
    ks = metrics["ks"]
    written: list[Path] = []
    lines = ["# recvec accuracy benchmark", ""]
    if command:
        lines += ["Report written by:", "", "```", command, "```", ""]
    summary, sweep = [], []
    for b in metrics["datasets"]:
        lines += [f"## {b['dataset']}", "", machine_markdown(b.get("machine"), b.get("load_averages", [])), ""]
        if b.get("commands"):
            lines += ["Measured by:", "", "```", *b["commands"], "```", ""]
        lines += ["Leave-last-positive-out split (ratings >= "
                  f"{b['data']['threshold']:g} are positives); every evaluable user, train items excluded. "
                  "*exact (dense scores)* is the model's own evaluation; index rows search the users' query vectors "
                  "with their train items excluded, at the index's default query setting; *overlap@K vs exact* is "
                  "the share of the exact flat index's filtered top-K the index returns (same model, same users). "
                  "implicit rows: implicit's own `recommend` for the same fitted ALS model (exact), and its "
                  "`FaissAlternatingLeastSquares` wrapper with default settings.", ""]
        rows = b["summary"]
        lines += [markdown_table(rows, accuracy_columns(ks)), ""]
        imp = [r for r in rows if r["index"] == "implicit-faiss" and r.get("overlap_vs_implicit_exact@10") is not None]
        for r in imp:
            lines += [f"implicit's FAISS wrapper keeps {r['overlap_vs_implicit_exact@10']:.3f} of implicit's own exact "
                      f"filtered top-{min(ks)} for {r['model']}.", ""]
        first = rows[0] if rows else {}
        if first:
            lines += [f"{first.get('users', 0):,} users; query vectors: " + "; ".join(
                sorted({f"{r['model']}: {r['query_vectors']}" for r in rows if r.get('query_vectors')})) + ".", ""]
        summary += rows
        sweep += b["sweep"]
        by_model: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for r in b["sweep"]:
            if r["index"] == "flat":
                continue
            by_model.setdefault(r["model"], {}).setdefault(r["index"], []).append((r.get(f"overlap@{min(ks)}"), r.get("qps")))
        for model, series in by_model.items():
            markers = {}
            flat = next((r for r in b["sweep"] if r["model"] == model and r["index"] == "flat"), None)
            if flat and flat.get("qps"):
                markers["flat (exact)"] = (1.0, flat["qps"])
            for r in rows:
                if r["model"] == model and r["index"].startswith("implicit") and r.get(f"overlap@{min(ks)}") is not None:
                    markers[r["index"]] = (r[f"overlap@{min(ks)}"], r.get("qps"))
            png = out / f"accuracy_pareto_{_file_slug(b['dataset'])}_{_file_slug(model)}.png"
            plot_pareto(png, series, markers=markers, title=f"{b['dataset']} {model}: overlap@{min(ks)} with exact "
                        "filtered top-K vs batch users/s", xlabel=f"overlap@{min(ks)} with exact (train items excluded)",
                        ylabel="users per second (one batch call)")
            written.append(png)
            lines += [f"![{model}]({png.name})", ""]
    lines += ["Every swept setting (efSearch, nprobe): `accuracy_sweep.csv`.", ""]
    cols = ["dataset", "model", "index", "setting", "default"] + [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")] + \
           [f"overlap@{k}" for k in ks] + ["overlap_vs_implicit_exact@10", "qps", "search_s", "build_s", "fit_s",
                                           "users", "items", "dim", "query_vectors"]
    written.append(write_csv(out / "accuracy.csv", summary, cols))
    written.append(write_csv(out / "accuracy_sweep.csv", sweep, cols))
    md = out / "accuracy.md"
    md.write_text("\n".join(lines) + "\n")
    written.append(md)
    return written
