"""A lean HTTP/1.1 keep-alive client on one socket, for the serving benchmark's load.

Load generators (wrk, hey, ...) are small native clients, so the latency they report is the
server's and the network stack's. ``http.client`` parses every answer's headers with the ``email``
package: about a quarter of a millisecond a request on the project's machine, which would be
counted as the server's overhead. This client sends a request already framed and reads the answer's
status line, its headers and the ``Content-Length`` bytes of body; nothing else (no chunked bodies,
no redirects, no TLS). ``recvec bench serve --client http.client`` measures with the standard
library instead, and the benchmark's paired run times both beside the in-process call.
"""

from __future__ import annotations

import socket


class ProtocolError(OSError):
    """An answer this client cannot read (no Content-Length, a chunked body, a cut connection)."""


class Answer:
    """One answer: ``status`` (int), ``headers`` (lower-case name -> value, str) and ``body`` (bytes)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


class KeepAlive:
    """One keep-alive connection to ``host:port`` (TCP_NODELAY); ``request`` sends one request and
    reads its whole answer. OSError (ProtocolError included) when the connection fails or the answer
    cannot be read; the connection is then closed and the next request opens a new one."""

    def __init__(self, host: str, port: int, timeout: float = 60.0):
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._buf = sock, b""
        return sock

    def request(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> Answer:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body or method in ("POST", "PUT"):
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        try:
            sock = self._sock or self._connect()
            sock.sendall(head.encode("latin-1") + b"\r\n" + body)
            return self._read(sock)
        except OSError:
            self.close()
            raise

    def _read(self, sock: socket.socket) -> Answer:
        buf = self._buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv(sock)
        lines = buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length")
        if length is None or not length.isdigit():
            raise ProtocolError(f"answer without a Content-Length (headers: {sorted(headers)})")
        start, stop = end + 4, end + 4 + int(length)
        while len(buf) < stop:
            buf += self._recv(sock)
        self._buf = buf[stop:]
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Answer(int(parts[1]), headers, buf[start:stop])

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise ProtocolError("the server closed the connection before the whole answer")
        return chunk

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
