"""A minimal HTTP/1.1 client over plain sockets, cheap enough to load a server from one core.

``requests`` costs about a millisecond of client CPU per request, as much as a trivial Flask
request on the server: the client, not the server, would be measured. This one builds the
request bytes by hand, parses only the status line and headers, and keeps a connection open
when the server allows it (gunicorn's sync workers close every connection).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined by "\n"
    body: bytes
    seconds: float  # from sending the request to the last byte of the answer

    @property
    def text(self) -> str:
        return self.body.decode()


class Connection:
    """One client connection to ``host:port``, re-opened whenever the server closed it."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.host_header = f"{host}:{port}".encode()

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> Response:
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self.host_header]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode())
        if body or method == "POST":
            lines.append(b"Content-Length: %d" % len(body))
        raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
        started = time.perf_counter()
        reused = self.sock is not None
        try:
            return self._exchange(raw, started)
        except (ConnectionError, _Closed):
            if not reused:
                raise
            self.close()  # an idle keep-alive connection the server closed: once more
            return self._exchange(raw, time.perf_counter())

    def _exchange(self, raw: bytes, started: float) -> Response:
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        sock.sendall(raw)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise _Closed()
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}\n{value}" if name in headers else value
        length = headers.get("content-length")
        if length is not None:
            need = int(length)
            while len(rest) < need:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed mid-body")
                rest += chunk
        elif headers.get("transfer-encoding"):
            raise ConnectionError("chunked answers are not supported by the bench client")
        else:
            while chunk := sock.recv(65536):
                rest += chunk
        if headers.get("connection", "").lower() == "close" or status_line.startswith(
                "HTTP/1.0"):
            self.close()
        return Response(int(status_line.split(" ", 2)[1]), headers, rest,
                        time.perf_counter() - started)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _Closed(Exception):
    """The server closed the connection before answering."""
