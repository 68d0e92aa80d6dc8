"""The serving benchmark (``recvec bench serve``): ``recvec serve`` on 127.0.0.1 under 1 / 8 / 32
concurrent clients, against the in-process ``Recommender`` call measured in the same run, and
during hot reloads.

One run, in order:

1. the ALS artifact is built once under ``OUT/artifacts/a`` (and a second one, another ALS model
   over the same items, under ``OUT/artifacts/b``: the reload run alternates the two); a later run
   reuses them while the data's fingerprint and the config match;
2. ``users`` users with a train history are sampled (seed); request ``j`` of client ``c`` asks
   ``POST /recommend {"items": <history>, "k": k}`` for user ``order[c * requests + j]``, a seeded
   draw among them (the same sequence in every run);
3. the floor: the same sequence of histories through ``Recommender.recommend`` in this process,
   one call each, FAISS on the calling thread as in the server's search threads (and once more with
   the answer's JSON built and encoded, what the server adds before HTTP); every user's answer from
   both artifacts is kept for checking;
4. the server (``python -m recvec serve --port 0``, a subprocess) is started on a copy of artifact
   a; one client first alternates call by call between the in-process call and the served request
   for the same user, sent by each client of CLIENTS (the overhead measured side by side); then
   for each client count every client sends its fixed number of requests back to back on its own
   keep-alive connection (``client``: the lean client of ``httpclient.py`` by default, or
   ``http.client``; one thread per client, started together); each latency is the time from
   sending the request to having read the whole answer; QPS is all requests over the wall time
   from the start to the last answer. Every answer is checked: status 200 and the ids and scores of
   the in-process answer (scores to 1e-5 relative);
5. the reload run: ``reload_clients`` clients as above while the main thread publishes artifact b,
   then a, ... (``save_artifact``: the atomic swap) at the live path ``reloads`` times, evenly over
   the run, each followed by ``POST /admin/reload``; a client that gets past a reload's place waits
   (outside its timed requests) until that reload is done, so each artifact answers some requests
   however fast the clients are. Every answer must equal that user's answer from
   artifact a or from artifact b (and each artifact version the server names in
   ``x-recvec-artifact`` must always be the same one of the two);
6. SIGTERM; the server must exit 0.

Everything is stored as one unit (group ``serve``; latencies as arrays) and the report is built from
it (``serve_report.py``): ``serve.md``, ``serve.csv`` and ``serve_qps_p99.png`` under ``OUT``.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from recvec.benchmarks import runner
from recvec.benchmarks.httpclient import KeepAlive
from recvec.benchmarks.results import ResultStore
from recvec.benchmarks.serve_report import summarise, write_report
from recvec.errors import RecvecError
from recvec.indexes.payload import VERSION_HEADER

GROUP = "serve"
#: How long the server may take to start (load the artifact, import the stack), seconds.
START_TIMEOUT_S = 120.0
#: The benchmark's HTTP clients: the lean one (``httpclient.KeepAlive``) and the standard library's.
CLIENTS = ("socket", "http.client")


def _check_client(kind: str) -> None:
    if kind not in CLIENTS:
        raise RecvecError(f"client must be one of {', '.join(CLIENTS)}, not {kind!r}", params=("client",))


@dataclass(frozen=True)
class ServeBenchConfig:
    """``clients`` concurrency levels; ``requests`` per client; ``users`` distinct histories;
    ``reloads`` during the reload run of ``reload_clients`` clients; ``workers`` / ``server_threads``
    of the server (0: its default); ``inline`` its ``--inline/--no-inline``; ``index`` the artifact's
    index spec; ALS ``factors`` of artifact a (b has half as many, another seed); ``client`` the
    HTTP client of the timed runs (one of CLIENTS; the paired run times both)."""

    clients: tuple[int, ...] = (1, 8, 32)
    requests: int = 1000
    users: int = 1000
    k: int = 10
    reloads: int = 10
    reload_clients: int = 32
    workers: int = 1
    server_threads: int = 0
    inline: bool = True
    index: str = "flat"
    factors: int = 64
    seed: int = 0
    threshold: float = 4.0
    warmup: int = 50
    client: str = "socket"

    def __post_init__(self):
        from recvec.checks import check_int

        _check_client(self.client)
        if not self.clients:
            raise RecvecError("clients: give at least one client count", params=("clients",))
        for c in (*self.clients, self.reload_clients):
            check_int("clients", c, 1, 4096)
        for name in ("requests", "users", "k"):
            check_int(name, getattr(self, name), 1, 10_000_000)
        check_int("reloads", self.reloads, 0, 1000)

    def params(self) -> dict:
        """The config as stored params (tuples as lists)."""
        d = asdict(self)
        d["clients"] = list(self.clients)
        return d


QUICK = {"clients": (1, 4), "requests": 100, "users": 100, "reloads": 3, "reload_clients": 4, "warmup": 10}


# ----------------------------------------------------------------------------------- artifacts


def _build_artifacts(data: str, cfg: ServeBenchConfig, root: Path, force: bool, progress: bool):
    """Artifacts a and b under ``root`` (built unless present for this data and config), the
    sampled users' histories (external ids, time order) and the dataset's name and fingerprint."""
    from recvec.engine.data import load_dataset
    from recvec.engine.models.als import ALSConfig
    from recvec.engine.models.fit import ModelConfig, fit_model
    from recvec.engine.split import leave_last_out
    from recvec.indexes.build import build_artifact
    from recvec.indexes.spec import IndexSpec

    ds = load_dataset(data, progress=progress)
    split = leave_last_out(ds.ratings, cfg.threshold)
    want = {"a": ALSConfig(factors=cfg.factors, seed=cfg.seed),
            "b": ALSConfig(factors=max(1, cfg.factors // 2), seed=cfg.seed + 1)}
    for name, als in want.items():
        dest = root / name
        stamp = {"fingerprint": ds.fingerprint, "als": asdict(als), "index": cfg.index, "threshold": cfg.threshold}
        mark = root / f"{name}.stamp.json"
        if not force and mark.is_file() and json.loads(mark.read_text()) == stamp:
            continue
        model = fit_model(split, ds.catalog, ModelConfig(kind="als", als=als), progress=progress)
        build_artifact(ds, model, IndexSpec.parse(cfg.index), str(dest))
        mark.write_text(json.dumps(stamp))  # beside the artifact, not in it: a manifest lists its own files
    hist_all = split.histories()
    users = np.flatnonzero([len(h) > 0 for h in hist_all])
    rng = np.random.default_rng(cfg.seed)
    if cfg.users < len(users):
        users = np.sort(rng.choice(users, cfg.users, replace=False))
    histories = [split.items.id_of(hist_all[u]).tolist() for u in users]
    return root / "a", root / "b", histories, Path(str(data).rstrip("/")).name or "data", ds.fingerprint


def _publish(dest: Path, loaded) -> None:
    """Publish the artifact of ``loaded`` at ``dest`` (the atomic swap ``recvec build`` uses)."""
    from recvec.indexes.artifact import save_artifact
    from recvec.indexes.manifest import RESERVED_KEYS

    a = loaded.artifact
    save_artifact(str(dest), index=a.index, item_ids=a.item_ids, arrays=a.arrays, catalog=a.catalog,
                  manifest={k: v for k, v in a.manifest.items() if k not in RESERVED_KEYS})


# ----------------------------------------------------------------------------------- in process


def _answer(recs) -> tuple[list, list]:
    return recs.ids.tolist(), [float(s) for s in recs.scores.tolist()]


def _floor(loaded, histories: list, order: np.ndarray, k: int, warmup: int) -> dict:
    """Per-call seconds of ``Recommender.recommend`` over the users in ``order`` (``inproc_s``), and
    of the same plus the answer's JSON (``inproc_json_s``)."""
    from recvec.indexes.payload import result_payload, to_json

    rec = loaded.recommender

    def plain(i):
        rec.recommend(histories[order[i]], k)

    def with_json(i):
        h = histories[order[i]]
        to_json(result_payload(loaded, {"type": "user", "items": h, "k": k}, rec.recommend(h, k)))

    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # as the server's search threads run it: FAISS on the calling thread alone
    try:
        return {"inproc_s": runner.time_each(plain, len(order), warmup=warmup),
                "inproc_json_s": runner.time_each(with_json, len(order), warmup=warmup)}
    finally:
        faiss.omp_set_num_threads(before)


# ----------------------------------------------------------------------------------- the server


class Server:
    """``python -m recvec serve`` on 127.0.0.1 (port 0: a free one), its log in ``log_path``."""

    def __init__(self, index: Path, log_path: Path, *, workers: int, threads: int, inline: bool = True):
        cmd = [sys.executable, "-m", "recvec", "serve", "--index", str(index), "--host", "127.0.0.1", "--port", "0",
               "--workers", str(workers), "--log-level", "warning", "--inline" if inline else "--no-inline"]
        if threads:
            cmd += ["--threads", str(threads)]
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.port = self._wait_listening()
        self.wait_ready()

    def _wait_listening(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", self.log_path.read_bytes())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RecvecError(f"recvec serve exited with code {self.proc.returncode}: "
                                  f"{self.log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        self.stop()
        raise RecvecError(f"recvec serve did not listen within {START_TIMEOUT_S:.0f} s (log: {self.log_path})")

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict, dict]:
        """One request on a fresh connection: (status, headers, JSON body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body, {"Content-Type": "application/json"} if body is not None else {})
            r = conn.getresponse()
            data = r.read()
            return r.status, dict(r.getheaders()), (json.loads(data) if data[:1] in (b"{", b"[") else {})
        finally:
            conn.close()

    def wait_ready(self) -> dict:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                status, _, body = self.request("GET", "/readyz")
                if status == 200:
                    return body
            except OSError:
                pass
            time.sleep(0.05)
        raise RecvecError("recvec serve did not become ready")

    def server_time(self) -> tuple[float, float]:
        """(sum of seconds, count) of /recommend in the server's latency histogram."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()

        def value(name: str) -> float:
            m = re.search(rf'^{name}{{endpoint="/recommend"}} (\S+)$', text, re.MULTILINE)
            return float(m.group(1)) if m else 0.0

        return value("recvec_request_duration_seconds_sum"), value("recvec_request_duration_seconds_count")

    def stop(self) -> int | None:
        """SIGTERM, then wait (kill after 30 s); the exit code (None if it had to be killed)."""
        code = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        else:
            code = self.proc.returncode
        self._log.close()
        return code


# ----------------------------------------------------------------------------------- clients


def _same(got: dict, want: tuple[list, list]) -> bool:
    ids = [r["id"] for r in got.get("results", ())]
    if ids != want[0]:
        return False
    scores = np.array([r["score"] for r in got["results"]], dtype=np.float64)
    return bool(np.allclose(scores, want[1], rtol=1e-5, atol=1e-7))


def poster(kind: str, port: int):
    """``(post, close)`` of one keep-alive connection to 127.0.0.1:``port`` of client ``kind``
    (``socket``: the lean client of ``httpclient.py``; ``http.client``: the standard library's):
    ``post(body) -> (status, body bytes, x-recvec-artifact)`` sends POST /recommend."""
    if kind == "socket":
        conn = KeepAlive("127.0.0.1", port)

        def post(body: bytes):
            a = conn.request("POST", "/recommend", body)
            return a.status, a.body, a.getheader(VERSION_HEADER)

        return post, conn.close
    _check_client(kind)
    hc = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}

    def post_hc(body: bytes):
        hc.request("POST", "/recommend", body, headers)
        r = hc.getresponse()
        return r.status, r.read(), r.getheader(VERSION_HEADER)

    return post_hc, hc.close


def drive(port: int, bodies: list[bytes], users: np.ndarray, clients: int, requests: int,
          expected: list[dict], *, warmup: int = 0, on_progress=None, pace=None, kind: str = "socket") -> dict:
    """``clients`` threads, each sending ``requests`` POST /recommend on its own keep-alive
    connection of client ``kind`` (client c sends bodies[users[c * requests + j]]); ``expected[u]`` maps an artifact name
    to user u's answer (ids, scores). Returns the per-request seconds in client order, the wall
    seconds, errors (non-200, transport failures), answers matching no artifact, the count of answers
    per artifact, and which artifact each ``x-recvec-artifact`` version answered as. ``on_progress(done)``
    is called once when the clients start (``done[0]``: requests answered, counted 16 at a time);
    ``pace(count)``, if given, is called by a client after each 16, outside the timed part, and may
    block it."""
    lat = np.zeros(clients * requests)
    outcome = {"errors": 0, "mismatched": 0, "first_errors": [], "matched": {}, "versions": {}}
    lock = threading.Lock()
    done = [0]
    barrier = threading.Barrier(clients + 1)

    def client(c: int):
        post, close = poster(kind, port)
        for j in range(warmup):
            post(bodies[users[(c * requests + j) % len(users)]])
        barrier.wait()
        answers = []
        clock = time.perf_counter
        for j in range(requests):
            u = users[c * requests + j]
            t0 = clock()
            try:
                status, data, version = post(bodies[u])
            except (OSError, http.client.HTTPException) as e:
                lat[c * requests + j] = clock() - t0
                answers.append((u, None, f"{type(e).__name__}: {e}", None))
                close()  # the next request opens a new connection
                continue
            lat[c * requests + j] = clock() - t0
            answers.append((u, status, data, version))
            if (on_progress is not None or pace is not None) and j % 16 == 15:
                with lock:
                    done[0] += 16
                    count = done[0]
                if pace is not None:
                    pace(count)
        close()
        check(answers)

    def check(answers):  # after the timed loop: parsing is not part of the latency
        errors, mismatched, first, matched, versions = 0, 0, [], {}, {}
        for u, status, data, version in answers:
            if status != 200:
                errors += 1
                first.append(f"{status}: {data[:200] if isinstance(data, bytes) else data}")
                continue
            got = json.loads(data)
            which = [name for name, want in expected[u].items() if _same(got, want)]
            if not which:
                mismatched += 1
                continue
            matched[which[0]] = matched.get(which[0], 0) + 1
            versions.setdefault(version, set()).update(which)
        with lock:
            outcome["errors"] += errors
            outcome["mismatched"] += mismatched
            outcome["first_errors"] += first[: 5 - len(outcome["first_errors"])]
            for name, n in matched.items():
                outcome["matched"][name] = outcome["matched"].get(name, 0) + n
            for v, names in versions.items():
                outcome["versions"].setdefault(v, set()).update(names)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    with runner.gc_paused():
        barrier.wait()
        t0 = time.perf_counter()
        if on_progress is not None:
            on_progress(done)
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    outcome["versions"] = {str(v): sorted(n) for v, n in outcome["versions"].items()}
    return {"latency_s": lat, "wall_s": wall, **outcome}


def paired(port: int, bodies: list[bytes], histories: list, users: np.ndarray, loaded, k: int) -> dict:
    """One client alternating call by call: the in-process ``recommend`` for user u (FAISS on this
    thread alone), then POST /recommend for the same user with each client of CLIENTS (one
    connection each); all timed, so drifting load on a shared machine hits them alike. Returns
    ``paired_inproc_s``, ``paired_served_s`` (the lean client), ``paired_served_httpclient_s`` and
    the errors."""
    import faiss

    rec = loaded.recommender
    posts = [poster(kind, port) for kind in CLIENTS]
    times = np.zeros((1 + len(posts), len(users)))
    errors = 0
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    clock = time.perf_counter
    try:
        with runner.gc_paused():
            for j, u in enumerate(users):
                t0 = clock()
                rec.recommend(histories[u], k)
                times[0, j] = clock() - t0
                for i, (post, _) in enumerate(posts, 1):
                    t0 = clock()
                    status = post(bodies[u])[0]
                    times[i, j] = clock() - t0
                    errors += status != 200
    finally:
        faiss.omp_set_num_threads(before)
        for _, close in posts:
            close()
    return {"paired_inproc_s": times[0], "paired_served_s": times[1], "paired_served_httpclient_s": times[2],
            "errors": errors}


# ----------------------------------------------------------------------------------- the run


def _run(cfg: ServeBenchConfig, data: str, out: Path, force: bool, progress: bool,
         context: runner.RunContext) -> tuple[dict, dict]:
    from recvec.indexes.build import open_index

    a_dir, b_dir, histories, name, fingerprint = _build_artifacts(data, cfg, out / "artifacts", force, progress)
    loaded = {"a": open_index(str(a_dir)), "b": open_index(str(b_dir))}
    expected = [{n: _answer(lo.recommender.recommend(h, cfg.k)) for n, lo in loaded.items()} for h in histories]
    bodies = [json.dumps({"items": h, "k": cfg.k}, separators=(",", ":")).encode() for h in histories]
    n_req = max(cfg.clients + (cfg.reload_clients,)) * cfg.requests
    order = np.random.default_rng(cfg.seed + 7).integers(0, len(histories), size=n_req)
    loads = [runner.load_average()]
    arrays: dict[str, np.ndarray] = dict(_floor(loaded["a"], histories, order[: cfg.requests], cfg.k, cfg.warmup))
    live = out / "artifacts" / "live"
    if live.exists():
        shutil.rmtree(live)
    _publish(live, loaded["a"])
    server = Server(live, out / "serve.log", workers=cfg.workers, threads=cfg.server_threads, inline=cfg.inline)
    runs, reload_info = [], {}
    try:
        _, _, info = server.request("GET", "/info")
        pair = paired(server.port, bodies, histories, order[: cfg.requests], loaded["a"], cfg.k)
        paired_errors = pair.pop("errors")
        arrays.update(pair)
        only_a = [{"a": e["a"]} for e in expected]  # no reload: every answer must be artifact a's
        for clients in cfg.clients:
            before = server.server_time()
            r = drive(server.port, bodies, order, clients, cfg.requests, only_a, warmup=cfg.warmup, kind=cfg.client)
            after = server.server_time()
            loads.append(runner.load_average())
            arrays[f"served_c{clients}_s"] = r.pop("latency_s")
            runs.append({"clients": clients, **r, "server_mean_ms": _server_mean(before, after),
                         "load_average": loads[-1]})
        r, reload_info = _reload_run(server, cfg, bodies, order, expected, live, loaded)
        loads.append(runner.load_average())
        arrays["reload_s"] = r.pop("latency_s")
        reload_info.update(r)
    finally:
        exit_code = server.stop()
    meta = {"catalogue": name, "fingerprint": fingerprint, "k": cfg.k, "items": len(loaded["a"].recommender.items),
            "client": cfg.client, "histories": len(histories), "history_len_mean": float(np.mean([len(h) for h in histories])),
            "runs": runs, "paired_errors": paired_errors, "reload": reload_info, "server": info.get("server", {}),
            "server_exit_code": exit_code, "load_averages": loads, "machine": runner.machine_info(context)}
    return meta, arrays


def _server_mean(before, after) -> float | None:
    n = after[1] - before[1]
    return (after[0] - before[0]) / n * 1e3 if n > 0 else None


def _reload_run(server: Server, cfg: ServeBenchConfig, bodies, order, expected, live: Path, loaded):
    """``reload_clients`` clients while ``reloads`` publishes + POST /admin/reload alternate b and a."""
    total = cfg.reload_clients * cfg.requests
    events = []
    state = {"next": 0}  # the reload the clients wait for once past its place
    turn = threading.Condition()

    def place(i):
        return (i + 1) * total / (cfg.reloads + 1)

    def pace(count):  # a client past the next reload's place waits for it: answers on both sides of it
        with turn:
            turn.wait_for(lambda: state["next"] >= cfg.reloads or count < place(state["next"]), timeout=120)

    def reloader(done):
        state["thread"] = threading.Thread(target=reload_loop, args=(done,), daemon=True)
        state["thread"].start()

    def reload_loop(done):
        try:
            for i in range(cfg.reloads):
                while done[0] < place(i):
                    time.sleep(0.002)
                reload_once(i, done)
                with turn:
                    state["next"] = i + 1
                    turn.notify_all()
        finally:
            with turn:
                state["next"] = cfg.reloads
                turn.notify_all()

    def reload_once(i, done):
        which = "b" if i % 2 == 0 else "a"
        t0 = time.perf_counter()
        try:
            _publish(live, loaded[which])
            status, _, body = server.request("POST", "/admin/reload")
        except (OSError, RecvecError) as e:
            status, body = None, {"error": str(e)}
        events.append({"to": which, "status": status, "result": body.get("status"),
                       "version": body.get("version"), "load_s": body.get("load_s"),
                       "publish_and_reload_s": time.perf_counter() - t0, "at_request": int(done[0])})

    r = drive(server.port, bodies, order, cfg.reload_clients, cfg.requests, expected, warmup=0, on_progress=reloader,
              pace=pace if cfg.reloads else None, kind=cfg.client)
    if "thread" in state:
        state["thread"].join(timeout=120)
    # with several workers the one answering may have followed the publish already (manifest watch)
    ok = sum(1 for e in events if e["status"] == 200 and e["result"] in ("reloaded", "unchanged"))
    return r, {"clients": cfg.reload_clients, "reloads": events, "reloads_ok": ok}


def bench_serve(cfg: ServeBenchConfig, out: str | Path, *, data: str | None = None, force: bool = False,
                progress: bool = False, report_only: bool = False, command: str | None = None) -> dict:
    """Run (or, stored and not ``force``, reuse) the serving benchmark on ``data`` (default: the
    embedded synthetic dataset) under ``out``; returns ``{"summary": rows, "overhead_ms", "targets",
    "files", ...}``. RecvecError when the server fails to start or nothing is stored for
    ``report_only``."""
    out = Path(out)
    store = ResultStore(out)
    data = data or "synthetic"
    params = {"label": "serve", "data": str(data), **cfg.params()}
    stored = store.get(GROUP, params)
    if stored is None or (force and not report_only):
        if report_only:
            raise RecvecError(f"no stored serve benchmark under {out} for these settings; run it without --report-only")
        meta, arrays = _run(cfg, data, out, force, progress, runner.RunContext(command))
        stored = store.save(GROUP, params, meta, arrays)
    stored = stored.loaded()
    meta = stored.meta
    arrays = {n: stored.array(n) for n in ("inproc_s", "inproc_json_s", "reload_s", "paired_inproc_s", "paired_served_s",
                                           "paired_served_httpclient_s")
              + tuple(f"served_c{r['clients']}_s" for r in meta["runs"]) if stored.has_array(n)}
    summary = summarise(meta, arrays, cfg)
    files = write_report(meta, summary, out, meta.get("machine", {}).get("command") or command)  # the run's own
    return {"summary": summary["rows"], "overhead_ms": summary["overhead_ms"],
            "paired_overhead_ms": summary["paired_overhead_ms"],
            "paired_httpclient_overhead_ms": summary["paired_httpclient_overhead_ms"], "targets": summary["targets"],
            "reloads": meta["reload"].get("reloads", []), "server": meta.get("server"),
            "load_averages": meta.get("load_averages"), "threads": meta.get("machine", {}).get("threads"),
            "files": [str(f) for f in files]}


def quick(cfg: ServeBenchConfig) -> ServeBenchConfig:
    """The config with QUICK's sizes (a smoke run of well under a minute)."""
    return replace(cfg, **QUICK)
