"""Real HTTP servers on 127.0.0.1 for the tests whose subject is the network (deadlines, sizes,
content coding, cookies, concurrency). Standard library only: these tests also run where only
the hand-off client is installed (scripts/test-handoff-alone.sh).

- :class:`LocalBridge` serves a :class:`~handoff_fakes.FakeBridge` over HTTP; a test can hold
  a path until it says so, or replace a path's answer with raw bytes and headers.
- :class:`DripServer` answers every connection with the same bytes, one every ``interval``
  seconds: each read on the other side gets data long before a socket timeout.
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

from handoff_fakes import FakeBridge

#: Longest a held path waits for the test to release it.
HOLD_LIMIT = 10.0

ROUTES = {
    ("GET", "/.well-known/openid-configuration"): "_discovery",
    ("GET", "/jwks"): "_jwks",
    ("POST", "/par"): "_par",
    ("POST", "/token"): "_token",
}


@dataclass
class Canned:
    """A raw answer for one path."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that drops a connection it refuses to read on (a test's very point) is
        no error of the server's; anything else is printed as usual."""
        if not isinstance(sys.exc_info()[1], ConnectionResetError):
            super().handle_error(request, client_address)


class LocalBridge:
    """The fake bridge behind a real, threaded HTTP server; ``issuer`` is its loopback URL."""

    def __init__(self, fake_options: dict[str, Any]) -> None:
        self.server = _Server(("127.0.0.1", 0), _handler(self))
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.fake = FakeBridge(issuer=self.issuer, **fake_options)
        self.held: dict[str, threading.Event] = {}
        self.arrived: dict[str, threading.Event] = {}
        self.canned: dict[str, Canned] = {}
        self.extra_headers: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def hold(self, path: str) -> threading.Event:
        """Hold ``path``'s answers until the returned event is set; ``arrived[path]`` is set
        when a request for it is waiting."""
        self.held[path], self.arrived[path] = threading.Event(), threading.Event()
        return self.held[path]

    def stop(self) -> None:
        for event in self.held.values():
            event.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Canned:
        self.requests.append((method, path, headers))
        if path in self.held:
            self.arrived[path].set()
            self.held[path].wait(HOLD_LIMIT)
        if path in self.canned:
            return self.canned[path]
        route = ROUTES.get((method, path))
        if route is None:
            return Canned(404, b"{}")
        request = SimpleNamespace(body=body.decode("ascii"), headers=headers)
        status, extra, text = getattr(self.fake, route)(request)
        headers = {"Content-Type": "application/json", **extra, **self.extra_headers.get(path, {})}
        return Canned(status, text.encode(), headers)


def _handler(bridge: LocalBridge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = bridge.answer(self.command, self.path, dict(self.headers), body)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up
                self.wfile.write(answer.body)

        do_GET = do_POST = _serve

    return Handler


class DripServer:
    """Answers each connection with ``head`` at once, then ``answer`` one byte every
    ``interval`` seconds (draining the request meanwhile). ``cut`` is set when a client
    closed a connection before the answer was all sent."""

    def __init__(self, answer: bytes, *, head: bytes = b"", interval: float = 0.05) -> None:
        self.head, self.answer, self.interval = head, answer, interval
        self.cut, self.stopped = threading.Event(), threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)  # a closed listener does not wake accept(): poll
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(self.head)
                for byte in self.answer:
                    until = time.monotonic() + self.interval
                    while (left := until - time.monotonic()) > 0:
                        readable, _, _ = select.select([conn], [], [], left)
                        if readable and not conn.recv(65536):  # the client ended it
                            self.cut.set()
                            return
                    conn.sendall(bytes([byte]))
            except OSError:
                self.cut.set()

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
