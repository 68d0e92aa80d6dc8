"""The serving benchmark's metrics and report (from the unit ``recvec.benchmarks.serve`` stores):
the table rows (in-process floor, served runs per client count, the reload run), the HTTP overhead
at 1 client, the targets, ``serve.md``, ``serve.csv`` and the QPS / p99 plot ``serve_qps_p99.png``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recvec.benchmarks.metrics import percentiles_ms
from recvec.benchmarks.report import _plt, machine_markdown, markdown_table, write_csv


def summarise(meta: dict, arrays: dict, cfg) -> dict:
    """Rows (in-process floor, in-process + JSON, one per client count, the reload run), the HTTP
    overhead at 1 client (served p50 minus in-process p50) and the targets."""
    rows = []
    for key, label in (("inproc_s", "in-process Recommender.recommend"), ("inproc_json_s", "in-process + answer JSON")):
        p = percentiles_ms(arrays[key])
        rows.append({"mode": label, "clients": 1, "requests": len(arrays[key]),
                     "qps": len(arrays[key]) / float(np.sum(arrays[key])), **p, "errors": 0, "mismatched": 0})
    for run in meta["runs"]:
        lat = arrays[f"served_c{run['clients']}_s"]
        rows.append({"mode": "served (HTTP)", "clients": run["clients"], "requests": len(lat),
                     "qps": len(lat) / run["wall_s"], **percentiles_ms(lat), "errors": run["errors"],
                     "mismatched": run["mismatched"], "server_mean_ms": run.get("server_mean_ms"),
                     "load": (run.get("load_average") or [None])[0]})
    rl = meta["reload"]
    if "reload_s" in arrays:
        lat = arrays["reload_s"]
        rows.append({"mode": f"served, {len(rl['reloads'])} reloads", "clients": rl["clients"], "requests": len(lat),
                     "qps": len(lat) / rl["wall_s"], **percentiles_ms(lat), "errors": rl["errors"],
                     "mismatched": rl["mismatched"], "answers_a": rl["matched"].get("a", 0),
                     "answers_b": rl["matched"].get("b", 0)})
    pair = pair_hc = None
    if "paired_served_s" in arrays:
        pi, ps = percentiles_ms(arrays["paired_inproc_s"]), percentiles_ms(arrays["paired_served_s"])
        pair = ps["p50_ms"] - pi["p50_ms"]
        n = len(arrays["paired_served_s"])
        lean = "socket client, " if "paired_served_httpclient_s" in arrays else ""
        rows[2:2] = [{"mode": "in-process, alternating with served", "clients": 1, "requests": n, **pi, "errors": 0,
                      "mismatched": 0},
                     {"mode": f"served ({lean}alternating with in-process)", "clients": 1, "requests": n, **ps,
                      "errors": meta.get("paired_errors", 0), "mismatched": None}]
        if lean:
            ph = percentiles_ms(arrays["paired_served_httpclient_s"])
            pair_hc = ph["p50_ms"] - pi["p50_ms"]
            rows.insert(4, {"mode": "served (http.client, alternating with in-process)", "clients": 1, "requests": n,
                            **ph, "errors": None, "mismatched": None})
    one = next((r for r in rows if r["mode"] == "served (HTTP)" and r["clients"] == 1), None)
    overhead = one["p50_ms"] - rows[0]["p50_ms"] if one else None
    served = [r for r in rows if r["mode"] == "served (HTTP)"]
    versions_ok = all(len(v) == 1 for v in rl.get("versions", {}).values())
    targets = [
        {"target": "0 errors and every answer equal to the in-process one, at every concurrency",
         "measured": ", ".join(f"{r['clients']} clients: {r['errors']} errors, {r['mismatched']} wrong" for r in served),
         "met": all(r["errors"] == 0 and r["mismatched"] == 0 for r in served)},
        {"target": "HTTP overhead per request at 1 client (served p50 - in-process p50) < 1 ms",
         "measured": (f"{overhead:.3f} ms (runs one after the other)" if overhead is not None else "-")
                     + (f", {pair:.3f} ms (alternating call by call)" if pair is not None else ""),
         "met": overhead is not None and overhead < 1.0 and (pair is None or pair < 1.0)},
        {"target": f"{cfg.reloads} reloads during {rl.get('clients')} clients: every answer one artifact's, never an "
                   "error",
         "measured": f"{rl.get('reloads_ok', 0)}/{len(rl.get('reloads', []))} reloads, {rl.get('errors')} errors, "
                     f"{rl.get('mismatched')} mixed, answers a/b {rl.get('matched', {}).get('a', 0)}/"
                     f"{rl.get('matched', {}).get('b', 0)}, versions {'consistent' if versions_ok else 'INCONSISTENT'}",
         "met": rl.get("errors") == 0 and rl.get("mismatched") == 0 and rl.get("reloads_ok") == cfg.reloads
                and versions_ok and (cfg.reloads == 0 or min(rl.get("matched", {}).get(n, 0) for n in "ab") > 0)},
        {"target": "graceful stop: SIGTERM ends the server with exit code 0",
         "measured": f"exit code {meta.get('server_exit_code')}", "met": meta.get("server_exit_code") == 0},
    ]
    return {"rows": rows, "overhead_ms": overhead, "paired_overhead_ms": pair, "paired_httpclient_overhead_ms": pair_hc,
            "targets": targets}


COLUMNS = [("mode", "what", ""), ("clients", "clients", "d"), ("requests", "requests", ",d"), ("qps", "QPS", ".0f"),
           ("p50_ms", "p50 ms", "ms"), ("p99_ms", "p99 ms", "ms"), ("mean_ms", "mean ms", "ms"),
           ("server_mean_ms", "server mean ms", "ms"), ("errors", "errors", "d"), ("mismatched", "wrong", "d")]


def plot(path: Path, rows: list[dict]) -> Path:
    """QPS and p99 against concurrency (served rows), the in-process floor as a dashed line."""
    plt = _plt()
    served = [r for r in rows if r["mode"] == "served (HTTP)"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r["clients"] for r in served]
    ax1.plot(xs, [r["qps"] for r in served], "o-", label="served (HTTP, end to end)")
    ax1.axhline(rows[0]["qps"], ls="--", c="gray", label="in-process, 1 thread")
    ax2.plot(xs, [r["p99_ms"] for r in served], "o-", label="served p99")
    ax2.plot(xs, [r["p50_ms"] for r in served], "s:", label="served p50")
    ax2.axhline(rows[0]["p99_ms"], ls="--", c="gray", label="in-process p99")
    for ax, yl in ((ax1, "requests per second"), (ax2, "latency, ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax2.set_yscale("log")
    fig.suptitle("recvec serve: POST /recommend on 127.0.0.1")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(meta: dict, summary: dict, out: Path, command: str | None) -> list[Path]:
    """serve.md, serve.csv and serve_qps_p99.png under ``out``."""
    png = plot(out / "serve_qps_p99.png", summary["rows"])
    csv = write_csv(out / "serve.csv", summary["rows"], [c[0] for c in COLUMNS] + ["answers_a", "answers_b"])
    srv = meta.get("server", {})
    events = meta["reload"].get("reloads", [])
    lines = [
        f"# recvec serve on {meta['catalogue']} ({meta['items']:,} items)", "",
        f"Reproduce: `{command or 'recvec bench serve'}`", "",
        (f"{meta['histories']:,} users' train histories (mean {meta['history_len_mean']:.0f} items), POST /recommend "
         f"k={meta.get('k', 10)}; server: {srv.get('workers')} worker(s), {srv.get('search_threads')} search threads; "
         f"clients: one thread and keep-alive connection each ({meta.get('client', 'http.client')}), in the "
         "benchmark's process."), "",
        markdown_table(summary["rows"], COLUMNS), "",
        f"HTTP overhead at 1 client (served p50 - in-process p50): **{summary['overhead_ms']:.3f} ms** (the "
        f"runs one after the other), **{summary['paired_overhead_ms']:.3f} ms** (alternating call by call)"
        + (f"; with Python's http.client as the client, alternating: {summary['paired_httpclient_overhead_ms']:.3f} ms"
           if summary.get("paired_httpclient_overhead_ms") is not None else "")
        if summary["overhead_ms"] is not None and summary["paired_overhead_ms"] is not None else "", "",
        "## Targets", "",
        *[f"- [{'met' if t['met'] else 'NOT met'}] {t['target']}: {t['measured']}" for t in summary["targets"]], "",
        "## Reloads", "",
        *[f"- to {e['to']} at request {e['at_request']:,}: HTTP {e['status']} {e['result']} {e['version']}, load "
          f"{(e['load_s'] or 0) * 1e3:.1f} ms, publish + reload {e['publish_and_reload_s'] * 1e3:.0f} ms"
          for e in events], "",
        "## Machine", "", machine_markdown(meta.get("machine"), meta.get("load_averages", [])), "",
        f"![QPS and p99]({png.name})", "",
    ]
    md = out / "serve.md"
    md.write_text("\n".join(lines))
    return [md, csv, png]
