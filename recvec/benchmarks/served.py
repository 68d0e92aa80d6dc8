"""Served backends in the latency benchmark: any registered backend other than FAISS (Milvus,
PostgreSQL + pgvector, ...) is measured the same way, through the ``Backend`` interface only.

Where each is reached (:func:`resolve_targets`): the URI given for it (``--uri NAME=URI``), else a
local server started for the run under ``OUT/servers/NAME`` (``--local-servers``,
:mod:`recvec.benchmarks.servers`), else -- Milvus only -- a Milvus Lite file under ``OUT``.

One unit (:func:`run_served`): the catalogue's vectors are loaded into a new collection / table
(``Backend.build``: load seconds and rows/s from the index's ``timings``, the index build after
it), then for each query setting: one batch call over the served users (recall@k against the
FAISS exact flat search of the same users, histories excluded), one query per call from one client
(p50/p99), and ``clients`` concurrent clients -- each its own connection, opened from the
manifest entry as a query process would (``Backend.open``) -- splitting the same queries (per-call
p50/p99 and queries/s). The collection is dropped at the end.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recvec.benchmarks import runner
from recvec.benchmarks.results import slug
from recvec.benchmarks.servers import LocalServer, start
from recvec.benchmarks.sweep import query_settings, search_kwargs
from recvec.errors import RecvecError
from recvec.indexes import backends
from recvec.indexes.backends.base import BackendOptions
from recvec.indexes.backends.served import masked
from recvec.indexes.spec import DEFAULT_EF_SEARCH, IndexSpec, default_nprobe


@dataclass
class Target:
    """Where a served backend is measured: registry ``name``, table ``label`` ("milvus",
    "milvus-lite", "pgvector"), ``uri`` (None: a Milvus Lite file per catalogue) and the local
    ``server`` started for it, if any."""

    name: str
    label: str
    uri: str | None
    server: LocalServer | None = None
    started: list = field(default_factory=list)


def resolve_targets(names: tuple[str, ...], uris: dict[str, str], local_servers: bool, out: Path,
                    progress: bool) -> dict[str, Target]:
    """A Target per served backend in ``names`` (see the module docstring); local servers are started
    here (stop them with :func:`stop_targets`). RecvecError naming ``uri`` when one has no place."""
    targets: dict[str, Target] = {}
    try:
        for name in names:
            if name == backends.DEFAULT:
                continue
            uri = uris.get(name)
            server = None
            if uri is None and local_servers:
                if progress:
                    print(f"starting a local {name} server under {out / 'servers' / name} ...", flush=True)
                server = start(name, out / "servers" / name)
                uri = server.uri
            if uri is None and name != "milvus":
                raise RecvecError(f"backend {name} needs a URI: --uri {name}=URI, or --local-servers to start one "
                                  "for the run", params=("uri",))
            lite = uri is None or str(uri).endswith(".db")
            targets[name] = Target(name, f"{name}-lite" if name == "milvus" and lite else name, uri, server)
    except BaseException:
        stop_targets(targets)
        raise
    return targets


def stop_targets(targets: dict[str, Target]) -> None:
    """Stop the local servers started for these targets."""
    for t in targets.values():
        if t.server is not None:
            t.server.stop()


def sweep_describe(index: Any) -> dict:
    """What ``sweep.query_settings`` reads: ef_search for HNSW, nlist/nprobe for IVF."""
    d = index.describe()
    kind = d.get("kind")
    params = d.get("index_params") or {}
    out = {"index_type": d.get("index_type"), **params}
    if kind == "hnsw":
        out["ef_search"] = DEFAULT_EF_SEARCH
    elif params.get("nlist"):
        out["nprobe"] = default_nprobe(int(params["nlist"]))
    return out


def _server_info(index: Any, target: Target) -> dict:
    """Version and thread counts of the server the index lives in (what is known here)."""
    info: dict[str, Any] = {"uri": masked(index.describe().get("uri"))}
    if target.server is not None:
        info.update(version=target.server.version, pid=target.server.pid)
        try:
            status = Path(f"/proc/{target.server.pid}/status").read_text()
            info["threads"] = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
        except (OSError, StopIteration, ValueError):
            pass
    conn = getattr(index, "_conn", None)
    if conn is not None:  # PostgreSQL: one process per connection; parallel workers per scan
        for name in ("server_version", "max_parallel_workers_per_gather", "max_worker_processes", "shared_buffers"):
            try:
                info[name] = conn.execute(f"SHOW {name}").fetchone()[0]
            except Exception:  # not ours to insist on
                pass
        info["pgvector"] = index.describe().get("pgvector")
    client = getattr(index, "_client", None)
    if client is not None and getattr(index, "mode", "") == "server":
        try:
            info["server_version"] = client.get_server_version()
        except Exception:
            pass
    return info


def target_uri(target: Target, out: Path, name: str) -> str:
    """Where a run loads into: the target's URI, else (Milvus Lite) the file ``out/milvus/NAME.db``."""
    if target.uri is not None:
        return target.uri
    folder = out / "milvus"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{slug(name)}.db")


def collection_name(text: str, limit: int) -> str:
    """``text`` as a collection / table name both servers accept: letters, digits and ``_``, at most
    ``limit`` characters (the backend adds its ``_r<hex>`` suffix)."""
    return slug(text).replace("-", "_").replace(".", "_")[:limit]


def supports(target: Target, spec_text: str) -> bool:
    """Whether the target's backend can build this index kind (e.g. no ivfpq on Milvus Lite)."""
    uri = target.uri or os.path.join(os.path.abspath(os.sep), "tmp", "recvec-probe.db")
    try:
        backends.get(target.name).check(IndexSpec.parse(spec_text),
                                        BackendOptions(name=target.name, uri=uri, collection="probe"))
    except RecvecError:
        return False
    return True


def run_served(run: Any, target: Target, spec_text: str) -> dict:
    """Build, measure and drop one served index for the catalogue ``run`` holds (a ``latency._Run``);
    stores the build unit and one search unit per query setting. Returns the progress bar's info."""
    p, cfg = run.p, run.cfg
    be = backends.get(target.name)
    spec = IndexSpec.parse(spec_text)
    coll = collection_name(f"bench_{run.src.name}_{spec_text}", 40)
    uri = target_uri(target, run.store.root, run.src.name)  # Milvus Lite: a file per catalogue
    options = be.check(spec, BackendOptions(name=target.name, uri=uri, collection=coll, progress=run.progress))
    rss_before = runner.rss_bytes()
    t0 = time.perf_counter()
    index = be.build(p.vectors, spec, options)
    build_s = time.perf_counter() - t0
    clients: list[Any] = []
    info: dict = {}
    try:
        timings = dict(getattr(index, "timings", {}) or {})
        n = len(p.vectors)
        describe = sweep_describe(index)
        run.store.save(run.group("build"), run.build_key(target.label, spec_text),
                       {"build_s": build_s, "load_s": timings.get("load_s"), "index_s": timings.get("index_s"),
                        "rows_per_s": n / timings["load_s"] if timings.get("load_s") else None,
                        "index_bytes": None, "rss_before": rss_before, "rss_after": runner.rss_bytes(),
                        "describe": describe, "served": index.describe(), "server": _server_info(index, target),
                        "n": n, "d": int(p.vectors.shape[1]), "raw_bytes": int(p.vectors.nbytes),
                        "machine": run.machine()})
        entry = be.manifest_entry(index)
        clients = [be.open(entry, {}, p.vectors, verify=False) for _ in range(cfg.clients)]
        mq = min(cfg.milvus_queries, len(p.queries))
        q, h, k = p.queries[:mq], p.histories[:mq], cfg.k
        for s in query_settings(describe, k, ef_search=cfg.ef_search, nprobe=cfg.nprobe):
            key = run.search_key(target.label, spec_text, s)
            if run.done(run.group("search"), key):
                continue
            info = _measure(run, index, clients, q, h, k, s, key)
    finally:
        for c in clients:
            c.close()
        try:
            be.discard(index)
        finally:
            index.close()
    return info


def _measure(run: Any, index: Any, clients: list, q: np.ndarray, h: list, k: int, setting: dict, key: dict) -> dict:
    cfg = run.cfg
    kw = search_kwargs(setting)
    out: dict = {}
    index.search(q[:4], k, exclude=h[:4], **kw)  # untimed warm-up
    batch_s = runner.time_batch(lambda: out.setdefault("ids", index.search(q, k, exclude=h, **kw)[0]), 1)
    n1 = min(cfg.single, len(q))
    fallbacks0 = getattr(index, "fallbacks", 0)
    single = runner.time_each(lambda i: index.search(q[i:i + 1], k, exclude=[h[i]], **kw), n1, warmup=cfg.warmup)
    calls = [lambda i, c=c: c.search(q[i:i + 1], k, exclude=[h[i]], **kw) for c in clients]
    conc, wall = runner.time_concurrent(calls, n1) if calls else (np.empty(0), 0.0)
    recall = run._recall(out["ids"])
    run.store.save(run.group("search"), key,
                   {"batch_s": batch_s, "nq": len(q), "nsingle": n1, "default": bool(setting.get("default")),
                    "recall_at_run": recall, "clients": len(clients), "conc_wall_s": wall,
                    "query_batch": getattr(index, "query_batch", None),
                    "fallbacks": getattr(index, "fallbacks", 0) - fallbacks0, "machine": run.machine(),
                    "client_threads": {"python": len(clients), "pid": os.getpid()}},
                   {"ids": out["ids"].astype(np.int32), "single_s": single, "conc_s": conc})
    return {"recall": f"{recall:.3f}" if recall is not None else "-", "p50": f"{np.median(single) * 1e3:.2f}ms",
            f"c{len(clients)}_qps": f"{n1 / wall:.0f}" if wall else "-"}
