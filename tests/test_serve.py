"""`recvec serve`: the real server (a `python -m recvec serve --port 0` subprocess on 127.0.0.1,
waited on through /readyz, stopped with SIGTERM) over artifacts built from the synthetic dataset.

- every endpoint answers the in-process Recommender's answer in the `query --json` shape;
- every bad request is a 4xx JSON error naming its field, never a 500 or a traceback (a table of
  cases, and derandomised hypothesis bodies);
- /metrics is Prometheus text format with the request counts, latency histogram, errors and version;
- reloads: answers given while artifacts a and b are published and reloaded in turn each equal a's
  or b's answer, never a mix, never an error; a corrupt or half-published artifact is refused and
  the old one keeps serving; several workers follow a publish by watching the manifest;
- SIGTERM while clients are sending: requests in flight are answered, the process exits 0.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from recvec.cli import main
from recvec.indexes.artifact import load_artifact, save_artifact
from recvec.indexes.build import open_index
from recvec.indexes.manifest import RESERVED_KEYS
from recvec.indexes.payload import result_payload

httpx = pytest.importorskip("httpx")

START_TIMEOUT_S = 90
LIMITS = ["--max-k", "50", "--max-history", "100", "--max-batch", "4", "--max-body-bytes", "8192"]


def _build(data: Path, out: Path, *args: str) -> Path:
    res = CliRunner().invoke(main, ["build", "--data", str(data), "--out", str(out), "--iterations", "3", "--quiet",
                                    *args])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, synthetic_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-artifacts")
    return {"a": _build(synthetic_dir, root / "a", "--factors", "16"),
            "b": _build(synthetic_dir, root / "b", "--factors", "8", "--seed", "1")}


def _publish(dest: Path, src: Path) -> None:
    """Publish the artifact at ``src`` at ``dest`` with the atomic swap recvec build uses."""
    a = load_artifact(src)
    save_artifact(dest, index=a.index, item_ids=a.item_ids, arrays=a.arrays, catalog=a.catalog,
                  manifest={k: v for k, v in a.manifest.items() if k not in RESERVED_KEYS})


class Served:
    """`recvec serve` in a subprocess on a free port of 127.0.0.1."""

    def __init__(self, index: Path, log: Path, *args: str):
        self.log = log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "recvec", "serve", "--index", str(index), "--port", "0",
                                      *args], stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        port = None
        while port is None:
            m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", log.read_bytes())
            if m:
                port = int(m.group(1))
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"recvec serve did not start: {log.read_text(errors='replace')[-3000:]}")
            else:
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=30)
        while True:
            try:
                if self.http.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("recvec serve did not become ready")
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM) -> int:
        """Send ``sig`` and return the exit code (killed after 30 s: the test then fails on it)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if hasattr(self, "http"):
            self.http.close()
        self._out.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def live(artifacts, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve-live") / "index"
    _publish(path, artifacts["a"])
    return path


@pytest.fixture(scope="module")
def server(live, tmp_path_factory):
    s = Served(live, tmp_path_factory.mktemp("serve-log") / "serve.log", *LIMITS)
    yield s
    code = s.stop()
    assert code == 0, s.text()[-2000:]
    assert "Traceback" not in s.text()


@pytest.fixture(scope="module")
def loaded(artifacts):
    return {name: open_index(str(p)) for name, p in artifacts.items()}


@pytest.fixture(scope="module")
def histories(loaded) -> list[list[int]]:
    ids = loaded["a"].artifact.item_ids
    rng = np.random.default_rng(3)
    return [rng.choice(ids, size=int(rng.integers(1, 30)), replace=False).tolist() for _ in range(40)]


def _expected(lo, history, k=10, **query):
    return result_payload(lo, {"type": "user", "items": history, "k": k, **query}, lo.recommender.recommend(history, k))


# ----------------------------------------------------------------------------------- endpoints


def test_health_ready_info_docs(server, loaded):
    assert server.http.get("/healthz").json() == {"status": "ok"}
    ready = server.http.get("/readyz").json()
    assert ready["status"] == "ready" and re.fullmatch(r"[0-9a-f]{12}", ready["version"])
    info = server.http.get("/info").json()
    art = loaded["a"].artifact
    assert info["artifact"]["version"] == ready["version"]
    assert info["artifact"]["n_items"] == art.n_items and info["artifact"]["model"]["kind"] == "als"
    assert info["artifact"]["index"]["spec"] == "flat" and "files" not in info["artifact"]
    assert info["server"]["limits"]["max_k"] == 50 and info["server"]["workers"] == 1
    assert info["server"]["search_threads"] >= 1
    spec = server.http.get("/openapi.json").json()
    assert {"/recommend", "/similar/{item_id}", "/search", "/healthz", "/readyz", "/metrics", "/info",
            "/admin/reload"} <= set(spec["paths"])
    assert "items" in json.dumps(spec["paths"]["/recommend"]["post"]["requestBody"])
    assert server.http.get("/docs").status_code == 200


def test_recommend_post_and_get_equal_the_library(server, loaded, histories):
    version = server.http.get("/readyz").json()["version"]
    for h in histories[:10]:
        r = server.http.post("/recommend", json={"items": h, "k": 7})
        assert r.status_code == 200 and r.headers["x-recvec-artifact"] == version
        assert r.json() == _expected(loaded["a"], h, 7)
        g = server.http.get("/recommend", params={"items": ",".join(map(str, h)), "k": 7})
        assert g.json() == r.json()


def test_lone_requests_inline_or_on_the_pool_answer_alike(live, loaded, histories, tmp_path):
    """--no-inline (every search on a search thread) answers as the default (a lone request inline)."""
    s = Served(live, tmp_path / "no-inline.log", "--no-inline")
    try:
        assert all(s.http.post("/recommend", json={"items": h, "k": 5}).json() == _expected(loaded["a"], h, 5)
                   for h in histories[:8])
    finally:
        assert s.stop() == 0, s.text()[-2000:]


def test_batch_equals_single_answers(server, loaded, histories):
    hs = histories[:4]
    got = server.http.post("/recommend", json={"histories": hs, "k": 5}).json()
    assert got["query"] == {"type": "batch", "histories": 4, "k": 5}
    for h, answer in zip(hs, got["batch"]):
        want = _expected(loaded["a"], h, 5)
        assert [r["id"] for r in answer["results"]] == [r["id"] for r in want["results"]]
        assert np.allclose([r["score"] for r in answer["results"]], [r["score"] for r in want["results"]], rtol=1e-5)


def test_exclude_skip_timestamps_and_fallback(server, loaded, histories):
    h = histories[0]
    full = _expected(loaded["a"], h, 12)["results"]
    drop = [full[0]["id"], full[3]["id"]]
    got = server.http.post("/recommend", json={"items": h, "k": 10, "exclude": drop + ["not-an-id", 10**30]}).json()
    assert [r["id"] for r in got["results"]] == [r["id"] for r in full if r["id"] not in drop][:10]
    skipped = server.http.post("/recommend", json={"items": h + [987654321], "k": 5, "unknown": "skip"}).json()
    assert skipped["query"]["skipped_unknown"] == [987654321]
    assert [r["id"] for r in skipped["results"]] == [r["id"] for r in _expected(loaded["a"], h, 5)["results"]]
    timed = server.http.post("/recommend", json={"items": h[:3], "timestamps": [1.0e9, 1.1e9, 1.2e9], "k": 3})
    assert timed.status_code == 200 and len(timed.json()["results"]) == 3
    empty = server.http.get("/recommend", params={"k": 3}).json()
    assert empty["query"]["fallback"].startswith("popularity") and len(empty["results"]) == 3


def test_similar_equals_the_library(server, loaded):
    item = int(loaded["a"].artifact.item_ids[5])
    got = server.http.get(f"/similar/{item}", params={"k": 4}).json()
    lo = loaded["a"]
    want = result_payload(lo, {"type": "similar", "item": item, "title": lo.title(item), "k": 4},
                          lo.recommender.similar(item, 4))
    assert got == want


# ----------------------------------------------------------------------------------- errors

BAD = [  # (method, path, body (dict: JSON, bytes: raw), status, field)
    ("POST", "/recommend", {"items": [999_999_999]}, 422, "items"),
    ("POST", "/recommend", {"items": [1, "not-an-id"]}, 422, "items"),
    ("POST", "/recommend", {"items": [1, 2**70]}, 422, "items"),
    ("POST", "/recommend", {"items": [1], "k": 0}, 422, "k"),
    ("POST", "/recommend", {"items": [1], "k": 51}, 422, "k"),
    ("POST", "/recommend", {"items": [1], "k": "3"}, 422, "k"),
    ("POST", "/recommend", {"items": [1], "k": True}, 422, "k"),
    ("POST", "/recommend", {"items": [1], "k": 2.5}, 422, "k"),
    ("POST", "/recommend", {"items": "1,2"}, 422, "items"),
    ("POST", "/recommend", {"items": [1, 2.5]}, 422, "items[1]"),
    ("POST", "/recommend", {"items": [1, None]}, 422, "items[1]"),
    ("POST", "/recommend", {"items": [1, True]}, 422, "items[1]"),
    ("POST", "/recommend", {"items": list(range(101))}, 422, "items"),
    ("POST", "/recommend", {"histories": [[1]] * 5}, 422, "histories"),
    ("POST", "/recommend", {"histories": [[1], "x"]}, 422, "histories[1]"),
    ("POST", "/recommend", {"items": [1], "histories": [[1]]}, 422, "items"),
    ("POST", "/recommend", {}, 422, "items"),
    ("POST", "/recommend", {"items": [1], "kk": 3}, 422, "kk"),
    ("POST", "/recommend", {"items": [1], "unknown": "ignore"}, 422, "unknown"),
    ("POST", "/recommend", {"items": [1, 2], "timestamps": [1.0]}, 422, "timestamps"),
    ("POST", "/recommend", {"items": [1], "timestamps": ["yesterday"]}, 422, "timestamps[0]"),
    ("POST", "/recommend", {"histories": [[1]], "timestamps": [1.0]}, 422, "timestamps[0]"),
    ("POST", "/recommend", {"items": [1], "ef_search": 16}, 422, "ef_search"),
    ("POST", "/recommend", {"items": [1], "ef_search": 0}, 422, "ef_search"),
    ("POST", "/recommend", {"items": [1], "nprobe": 10**12}, 422, "nprobe"),
    ("POST", "/recommend", b'{"items": [1], "timestamps": [NaN]}', 422, "timestamps[0]"),
    ("POST", "/recommend", b'{"items": [1], "k": Infinity}', 422, "k"),
    ("POST", "/recommend", b"{not json", 400, "body"),
    ("POST", "/recommend", b"", 400, "body"),
    ("POST", "/recommend", b"[1, 2]", 422, "body"),
    ("POST", "/recommend", b'{"items": [1]}' + b" " * 9000, 413, "body"),
    ("POST", "/search", {"text": "space robots"}, 400, "text"),
    ("POST", "/search", {"text": ""}, 422, "text"),
    ("POST", "/search", {"text": 5}, 422, "text"),
    ("GET", "/recommend?items=1,abc", None, 422, "items"),
    ("GET", "/recommend?items=1&k=abc", None, 422, "k"),
    ("GET", "/recommend?items=1&k=-1", None, 422, "k"),
    ("GET", "/recommend?items=" + ",".join(map(str, range(101))), None, 422, "items"),
    ("GET", "/similar/999999999", None, 404, "item_id"),
    ("GET", "/similar/%F0%9F%8E%AC", None, 404, "item_id"),
    ("GET", "/similar/1?k=100000", None, 422, "k"),
    ("GET", "/nowhere", None, 404, None),
    ("DELETE", "/recommend", None, 405, None),
]


@pytest.mark.parametrize("method,path,body,status,field", BAD, ids=[f"{m} {p[:30]} {status}" for m, p, _, status, _
                                                                      in BAD])
def test_bad_requests_are_4xx_json_naming_the_field(server, method, path, body, status, field, reliability_counts):
    kw = {"json": body} if isinstance(body, dict) else {"content": body} if body is not None else {}
    r = server.http.request(method, path, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status and err["field"] == field and err["message"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    reliability_counts["bad HTTP requests refused with a 4xx naming the field"] += 1


def test_unknown_ids_are_named(server):
    err = server.http.post("/recommend", json={"items": [1, 999_999_999, "x" * 5000]}).json()["error"]
    assert err["type"] == "unknown_id" and err["ids"][0] == 999_999_999
    assert len(err["ids"][1]) <= 80 and len(err["message"]) < 400


def test_random_bodies_never_give_a_500(server, reliability_counts):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                       st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=20))
    value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                                             max_size=4), max_leaves=12)
    keys = st.sampled_from(["items", "histories", "timestamps", "k", "exclude", "ef_search", "nprobe", "unknown",
                            "text", "x"])
    bodies = st.dictionaries(keys, value, max_size=5)
    seen = []

    @settings(max_examples=100, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, path=st.sampled_from(["/recommend", "/search"]))
    def check(body, path):
        r = server.http.post(path, json=body)
        assert r.status_code in (200, 400, 404, 413, 422), (body, r.text)
        if r.status_code != 200:
            assert set(r.json()["error"]) >= {"status", "type", "field", "message"}
        seen.append(r.status_code)

    check()
    assert 422 in seen
    reliability_counts["random HTTP bodies answered without a 5xx (hypothesis)"] += len(seen)


# ----------------------------------------------------------------------------------- metrics


def test_metrics_are_prometheus_text(server, histories):
    from prometheus_client.parser import text_string_to_metric_families

    for h in histories[:5]:
        server.http.post("/recommend", json={"items": h})
    server.http.post("/recommend", json={"items": [1], "k": 0})
    r = server.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    ok = [s for s in fams["recvec_requests"].samples
          if s.labels == {"endpoint": "/recommend", "method": "POST", "status": "200"}]
    assert ok and ok[0].value >= 5
    buckets = [s for s in fams["recvec_request_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["endpoint"] == "/recommend"]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value >= 6
    assert any(s.labels.get("type") == "validation" and s.value >= 1 for s in fams["recvec_request_errors"].samples)
    version = server.http.get("/readyz").json()["version"]
    info = [s for s in fams["recvec_artifact_info"].samples if s.value == 1]
    assert [s.labels["version"] for s in info] == [version]


# ----------------------------------------------------------------------------------- reloads


def _kind(answer: dict, want: dict[str, dict]) -> str:
    ids = [r["id"] for r in answer["results"]]
    for name, w in want.items():
        if ids == [r["id"] for r in w["results"]] and np.allclose(
                [r["score"] for r in answer["results"]], [r["score"] for r in w["results"]], rtol=1e-5):
            return name
    return "MIXED"


def test_reloads_under_load_never_mix_or_fail(server, live, artifacts, loaded, histories, reliability_counts):
    want = [{n: _expected(lo, h) for n, lo in loaded.items()} for h in histories]
    assert sum(w["a"]["results"] != w["b"]["results"] for w in want) > len(want) // 2
    stop = threading.Event()
    seen: list[tuple[str, str | None]] = []
    failures: list[str] = []

    def client(t: int):
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for i in np.random.default_rng(t).permutation(10**6) % len(histories):
                if stop.is_set():
                    return
                r = c.post("/recommend", json={"items": histories[i]})
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                seen.append((_kind(r.json(), want[i]), r.headers.get("x-recvec-artifact")))

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    versions = {server.http.get("/readyz").json()["version"]: "a"}
    try:
        for i in range(6):
            name = "b" if i % 2 == 0 else "a"
            time.sleep(0.15)
            _publish(live, artifacts[name])
            r = server.http.post("/admin/reload")
            assert r.status_code == 200 and r.json()["status"] == "reloaded", r.text
            versions[r.json()["version"]] = name
        time.sleep(0.15)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures[:3]
    kinds = [k for k, _ in seen]
    assert "MIXED" not in kinds and {"a", "b"} <= set(kinds)
    assert all(versions[v] == k for k, v in seen), "an answer's x-recvec-artifact names the other artifact"
    reliability_counts["HTTP answers during reloads checked (old or new artifact, never mixed)"] += len(seen)


def test_corrupt_or_half_published_artifact_is_refused(server, live, artifacts, loaded, histories, tmp_path):
    _publish(live, artifacts["a"])
    assert server.http.post("/admin/reload").status_code == 200
    before = server.http.get("/readyz").json()["version"]
    h = histories[1]
    want = server.http.post("/recommend", json={"items": h}).json()
    bad = tmp_path / "bad"
    shutil.copytree(artifacts["b"], bad)
    blob = bytearray((bad / "index.faiss").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (bad / "index.faiss").write_bytes(bytes(blob))
    shutil.rmtree(live)
    shutil.copytree(bad, live)  # a corrupt artifact where the served one was published
    r = server.http.post("/admin/reload")
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["type"] == "reload_failed" and err["serving"] == before and "checksum" in err["message"]
    assert server.http.post("/recommend", json={"items": h}).json() == want
    (live / "manifest.json").unlink()  # half-published: no manifest
    r = server.http.post("/admin/reload")
    assert r.status_code == 409 and "manifest.json" in r.json()["error"]["message"]
    assert server.http.get("/readyz").json()["version"] == before
    info = server.http.get("/info").json()
    assert info["reloads"]["failed"] >= 2 and info["last_reload_error"]
    metrics = server.http.get("/metrics").text
    assert re.search(r'^recvec_reloads_total\{outcome="failed"\} [2-9]', metrics, re.MULTILINE)
    shutil.rmtree(live)
    _publish(live, artifacts["a"])


def test_workers_follow_a_publish_and_share_metrics(artifacts, tmp_path):
    live = tmp_path / "index"
    _publish(live, artifacts["a"])
    s = Served(live, tmp_path / "serve.log", "--workers", "2", "--watch", "0.3")
    try:
        first = s.http.get("/readyz").json()["version"]
        _publish(live, artifacts["b"])
        deadline = time.monotonic() + 30
        while True:  # every worker's artifact_info gauge names the new version
            text = s.http.get("/metrics").text
            served = dict(re.findall(r'^recvec_artifact_info\{[^}]*pid="(\d+)",version="(\w+)"\} 1\.0$', text, re.MULTILINE))
            if len(served) == 2 and first not in served.values():
                break
            assert time.monotonic() < deadline, f"the workers did not follow the publish: {served}"
            time.sleep(0.1)
        item = int(load_artifact(live).item_ids[0])
        for _ in range(20):  # fresh connections: the workers share the socket
            r = httpx.post(s.url + "/recommend", json={"items": [item]}, timeout=30)
            assert r.status_code == 200 and r.headers["x-recvec-artifact"] in served.values()
        text = s.http.get("/metrics").text
        total = re.search(r'^recvec_requests_total\{endpoint="/recommend",method="POST",status="200"\} (\S+)$',
                          text, re.MULTILINE)
        assert total and float(total.group(1)) >= 20
    finally:
        assert s.stop() == 0, s.text()[-2000:]


def test_string_ids_pass_through_and_admin_token(artifacts, tmp_path, monkeypatch):
    """An artifact whose item ids are strings: ids in requests and answers are those strings (an
    integer is not one of them); the server also requires its admin token here."""
    a = load_artifact(artifacts["a"])
    sids = np.array([f"m{i}" for i in a.item_ids.tolist()])
    save_artifact(tmp_path / "str", index=a.index, item_ids=sids, arrays=a.arrays, catalog=a.catalog,
                  manifest={k: v for k, v in a.manifest.items() if k not in RESERVED_KEYS})
    monkeypatch.setenv("RECVEC_ADMIN_TOKEN", "test-token-not-a-secret")
    s = Served(tmp_path / "str", tmp_path / "serve.log")
    try:
        lo = open_index(str(tmp_path / "str"))
        h = sids[[3, 10, 40]].tolist()
        got = s.http.post("/recommend", json={"items": h, "k": 5})
        assert got.status_code == 200 and got.json() == _expected(lo, h, 5)
        assert all(isinstance(r["id"], str) for r in got.json()["results"])
        assert s.http.get("/recommend", params={"items": ",".join(h), "k": 5}).json() == got.json()
        assert s.http.get(f"/similar/{h[0]}", params={"k": 3}).json()["query"]["item"] == h[0]
        err = s.http.post("/recommend", json={"items": [int(a.item_ids[3])]}).json()["error"]
        assert err["type"] == "unknown_id" and err["field"] == "items"
        assert s.http.post("/admin/reload").status_code == 401
        assert s.http.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = s.http.post("/admin/reload", headers={"Authorization": "Bearer test-token-not-a-secret"})
        assert ok.status_code == 200 and ok.json()["status"] == "unchanged"
    finally:
        assert s.stop() == 0
    assert "test-token-not-a-secret" not in s.text()


# ----------------------------------------------------------------------------------- text, start-up, shutdown


def test_text_index_search(artifacts, tmp_path):
    """/search on a text artifact (random unit vectors under the packaged e5-small encoder: the
    point is the path text -> the artifact's encoder -> search, compared with the library's)."""
    import faiss

    from recvec.indexes.build import text_query_vectors

    a = load_artifact(artifacts["a"])
    rng = np.random.default_rng(0)
    v = rng.standard_normal((a.n_items, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(384)
    index.add(v)
    head = {"model": {"kind": "text", "params": {"kind": "text", "encoder": "e5-small", "pooling": "mean"}},
            "encoder": "e5-small", "pooling": "mean", "normalized": True, "user_encoder": {"kind": "mean"}}
    save_artifact(tmp_path / "text", index=index, item_ids=a.item_ids, arrays={"item_vectors": v, "popularity": a.arrays["popularity"]},
                  catalog=a.catalog, manifest=head)
    s = Served(tmp_path / "text", tmp_path / "serve.log")
    try:
        got = s.http.post("/search", json={"text": "a robot story", "k": 5})
        assert got.status_code == 200, got.text
        lo = open_index(str(tmp_path / "text"))
        recs = lo.recommender.search_vectors(text_query_vectors(lo.artifact, ["a robot story"]), 5)[0]
        assert [r["id"] for r in got.json()["results"]] == recs.ids.tolist()
        assert got.json()["query"] == {"type": "text", "text": "a robot story", "k": 5}
        assert s.http.get("/info").json()["artifact"]["text_queries"] is True
        assert s.http.post("/search", json={"text": "   "}).status_code == 422
    finally:
        assert s.stop() == 0


def test_start_up_errors_are_clean(tmp_path, live):
    res = CliRunner().invoke(main, ["serve", "--index", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "Error: no artifact at" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["serve", "--index", str(live), "--port", "70000"])
    assert res.exit_code == 2
    res = CliRunner().invoke(main, ["serve", "--index", str(live), "--max-k", "0"])
    assert res.exit_code == 2 and "--max-k" in res.output
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        res = CliRunner().invoke(main, ["serve", "--index", str(live), "--port", str(busy.getsockname()[1])])
    assert res.exit_code == 2 and "cannot listen on 127.0.0.1" in res.output and "Traceback" not in res.output


def test_sigterm_finishes_requests_in_flight_and_exits_0(live, histories, tmp_path):
    s = Served(live, tmp_path / "serve.log")
    statuses: list[int] = []
    refused = []
    started = threading.Barrier(5)

    def client(t: int):
        with httpx.Client(base_url=s.url, timeout=30) as c:
            started.wait()
            for i in range(10**6):
                try:
                    statuses.append(c.post("/recommend", json={"items": histories[(t + i) % len(histories)]})
                                    .status_code)
                except httpx.TransportError:  # the server stopped accepting: the end
                    refused.append(t)
                    return

    threads = [threading.Thread(target=client, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.5)
    code = s.stop(signal.SIGTERM)
    for t in threads:
        t.join(timeout=30)
    assert code == 0, s.text()[-2000:]
    assert statuses and set(statuses) == {200}  # every request that got an answer got a whole one
    assert sorted(refused) == [0, 1, 2, 3]
    log = s.text()
    assert "Shutting down" in log and "recvec serve: stopped" in log and "Traceback" not in log


def test_bench_serve_quick_checks_every_answer(synthetic_dir, tmp_path):
    """`recvec bench serve --quick` end to end: stored results, report files, every answer checked
    (the correctness targets; speed is the README's, not a test's)."""
    res = CliRunner().invoke(main, ["bench", "serve", "--data", str(synthetic_dir), "--quick", "--requests", "40",
                                    "--out", str(tmp_path / "out"), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    rows = {(r["mode"], r["clients"]): r for r in out["summary"]}
    assert rows[("served (HTTP)", 4)]["requests"] == 160 and rows[("served (HTTP)", 4)]["errors"] == 0
    targets = {t["target"].split(" ")[0]: t for t in out["targets"]}
    assert all(t["met"] for name, t in targets.items() if name != "HTTP"), out["targets"]
    assert [e["to"] for e in out["reloads"]] == ["b", "a", "b"]
    assert {Path(f).name for f in out["files"]} == {"serve.md", "serve.csv", "serve_qps_p99.png"}
    again = CliRunner().invoke(main, ["bench", "serve", "--data", str(synthetic_dir), "--quick", "--requests", "40",
                                      "--out", str(tmp_path / "out"), "--report-only", "--json"])
    assert again.exit_code == 0 and json.loads(again.output)["summary"] == out["summary"]


SERVE_FLAGS = ["--port", "--workers", "--threads", "--watch", "--max-k", "--max-history", "--max-batch",
               "--max-body-bytes", "--shutdown-timeout"]
BENCH_FLAGS = ["--requests", "--users", "-k", "--reloads", "--reload-clients", "--workers", "--server-threads",
               "--factors", "--seed", "--clients"]


def test_numeric_flags_at_extremes_exit_cleanly(tmp_path, reliability_counts):
    """Every numeric flag of `serve` (on a missing artifact: nothing starts) and `bench serve
    --report-only` (nothing stored: nothing runs) with extreme values: exit 0 or 2, `Error: ...`,
    no traceback."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    values = st.sampled_from(["-1", "0", "1", "65536", str(2**31), str(2**63), "nan", "inf", "1e309", "abc", "",
                              "1,2", "0.5"])

    @settings(max_examples=120, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(which=st.sampled_from([("serve", f) for f in SERVE_FLAGS] + [("bench", f) for f in BENCH_FLAGS]),
           value=values)
    def check(which, value):
        kind, flag = which
        args = (["serve", "--index", str(tmp_path / "missing"), flag, value] if kind == "serve" else
                ["bench", "serve", "--report-only", "--out", str(tmp_path / "none"), flag, value])
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, (args, res.output, res.exception)
        assert "Error" in res.output and "Traceback" not in res.output
        reliability_counts["numeric flags driven with extreme values (hypothesis), each a clean exit"] += 1

    check()
