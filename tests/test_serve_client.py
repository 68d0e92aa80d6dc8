"""The service's request paths without HTTP, and the serving benchmark's lean HTTP client.

``queries.recommend`` answers the common request (integer ids, no ``exclude``) on a lean path that
lets the Recommender look the ids up; every answer and every error there must equal the general
path's (the same history sent as strings takes the general path). ``KeepAlive`` is checked against
a scripted socket server: answers split across reads, several on one connection, and the answers it
refuses (chunked, no Content-Length, a connection cut mid-body).
"""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from recvec.benchmarks.httpclient import KeepAlive, ProtocolError
from recvec.cli import main
from recvec.indexes.payload import to_json
from recvec.serve import queries
from recvec.serve.holder import IndexHolder

PARAMS = {"ef_search": None, "nprobe": None}


@pytest.fixture(scope="module")
def snap(tmp_path_factory, synthetic_dir):
    out = tmp_path_factory.mktemp("serve-queries") / "a"
    res = CliRunner().invoke(main, ["build", "--data", str(synthetic_dir), "--out", str(out), "--iterations", "3",
                                    "--factors", "8", "--quiet"])
    assert res.exit_code == 0, res.output
    holder = IndexHolder(str(out), None)
    holder.load()
    yield holder.current
    holder.close()


def _answer_or_error(snap, items, **kw):
    try:
        return queries.recommend(snap, items, params=PARAMS, **kw)
    except queries.ApiError as e:
        return e.body()


def test_lean_path_equals_the_general_path(snap):
    """Integer ids (the lean path) and the same ids as strings (the general path) answer alike:
    results, the unknown-id error, skipped ids, timestamps, a k over what the history leaves, an
    empty history; only the echoed query differs (ids as sent)."""
    items = snap.loaded.recommender.items
    n = len(items)
    ids = items.id_of(np.arange(0, n, 3)).tolist()
    cases = [
        (ids[:5], {"k": 7}),
        (ids, {"k": 1}),
        (ids[:4] + [987654321], {"k": 5}),
        (ids[:4] + [987654321], {"k": 5, "unknown": "skip"}),
        (ids[:3], {"k": 3, "timestamps": [1.0e9, 1.1e9, 1.2e9]}),
        (ids, {"k": n - len(ids) + 1}),
        (ids[:2] + ids[:2], {"k": n - 1}),
        ([], {"k": 4}),
        ([], {"k": n + 1}),
    ]
    for history, kw in cases:
        lean = _answer_or_error(snap, history, **kw)
        general = _answer_or_error(snap, [str(i) for i in history], **kw)
        assert ("error" in lean) == ("error" in general), (lean, general)
        if "error" in lean:  # unknown ids are named as sent
            lean["error"]["ids"] = [str(i) for i in lean["error"].get("ids", [])]
            general["error"]["ids"] = general["error"].get("ids", [])
            assert lean == general, (history, kw)
            continue
        assert lean["query"].pop("items") == history
        general["query"].pop("items")
        if "skipped_unknown" in lean["query"]:
            assert [str(i) for i in lean["query"].pop("skipped_unknown")] == general["query"].pop("skipped_unknown")
        assert lean == general, (history, kw)
    err = _answer_or_error(snap, ids, k=n - len(ids) + 1)["error"]
    assert err["type"] == "out_of_range" and err["field"] == "k"
    assert _answer_or_error(snap, [True, 1], k=3)["error"]["field"] == "items[0]"  # a bool is not an id
    huge = _answer_or_error(snap, [2**63, ids[0]], k=3, unknown="skip")  # beyond int64: the general path
    assert huge["query"]["skipped_unknown"] == [2**63]


def test_to_json_falls_back_for_what_orjson_refuses():
    import json

    for payload in ({"a": [1, 2.5, "x", None, True]}, {"big": 2**70}):
        assert json.loads(to_json(payload)) == payload


class Scripted:
    """A socket server on 127.0.0.1 answering each request it reads with the next of ``answers``
    (bytes, each sent in pieces of ``piece`` bytes); a None answer closes the connection."""

    def __init__(self, answers: list[bytes | None], piece: int = 7):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answers, self.piece, self.requests = list(answers), piece, []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            buf = b""
            for answer in self.answers:
                while b"\r\n\r\n" not in buf:
                    buf += conn.recv(4096)
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buf) < length:
                    buf += conn.recv(4096)
                self.requests.append((head, buf[:length]))
                buf = buf[length:]
                if answer is None:
                    return
                for i in range(0, len(answer), self.piece):
                    conn.sendall(answer[i:i + self.piece])

    def close(self):
        self.thread.join(timeout=10)
        self.sock.close()


def _http(status: int, body: bytes, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}\r\n".encode() + body


def test_keepalive_reads_answers_split_and_in_a_row():
    body = b'{"results": [1, 2, 3]}'
    srv = Scripted([_http(200, body, f"content-length: {len(body)}", "x-recvec-artifact: abc"),
                    _http(422, b"{}", "Content-Length: 2")])
    conn = KeepAlive("127.0.0.1", srv.port)
    a = conn.request("POST", "/recommend", b'{"items": [1]}')
    assert (a.status, a.body, a.getheader("X-Recvec-Artifact")) == (200, body, "abc")
    b = conn.request("POST", "/recommend", b"{}")
    assert (b.status, b.body) == (422, b"{}")
    conn.close()
    srv.close()
    head, sent = srv.requests[0]
    assert head.startswith(b"POST /recommend HTTP/1.1") and b"Content-Length: 14" in head and sent == b'{"items": [1]}'


@pytest.mark.parametrize("answer, message", [
    (_http(200, b"5\r\nhello\r\n0\r\n\r\n", "transfer-encoding: chunked"), "Content-Length"),
    (b"SPDY/9 200 OK\r\n\r\n", "status line"),
    (None, "closed the connection"),
    (_http(200, b'{"cut', "content-length: 100"), "closed the connection"),
])
def test_keepalive_refuses_what_it_cannot_read(answer, message):
    """After its answers the scripted server closes the connection (None: before answering)."""
    srv = Scripted([answer])
    conn = KeepAlive("127.0.0.1", srv.port, timeout=10)
    with pytest.raises(ProtocolError, match=message):
        conn.request("GET", "/x")
    assert conn._sock is None  # closed: the next request opens a new connection
    srv.close()
