"""Real receivers for the notification tests, on 127.0.0.1: an SMTP server (aiosmtpd) and a
webhook receiver (werkzeug) that checks Standard Webhooks signatures and de-duplicates by id.
Both can be stopped and started again on the same port, or told to misbehave."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import threading
import time
from email.message import Message

from aiosmtpd.controller import Controller
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.e2e.browser import free_port

#: A signing secret for the tests, in the Standard Webhooks format.
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def verify(secret: str, headers, body: bytes, now: float, tolerance: int = 300) -> bool:
    """What a receiver does (docs/webhooks.md): recompute the HMAC, compare in constant time,
    refuse stale timestamps."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(now - int(timestamp)) > tolerance:
        return False
    expected = base64.b64encode(hmac.new(
        key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, sig.partition(",")[2])
               for sig in headers["webhook-signature"].split() if sig.startswith("v1,"))


class SmtpSink:
    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Message] = []
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd calls it by this name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def start(self) -> SmtpSink:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller:
            self.controller.stop()
            self.controller = None


class WebhookReceiver:
    """``mode``: "ok" (204), "fail" (500) or "hang" (answers after ``hang_s`` seconds)."""

    def __init__(self, secret: str = WEBHOOK_SECRET) -> None:
        self.secret, self.port = secret, free_port()
        self.mode, self.hang_s = "ok", 0.0
        self.received: list[dict] = []  # every POST, as it came
        self.by_id: dict[str, dict] = {}  # what a de-duplicating receiver keeps
        self.duplicates = 0
        self.server = None
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends a hang early (at stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _app(self, environ, start_response):
        request = Request(environ)
        body = request.get_data()
        entry = {"headers": dict(request.headers), "body": body,
                 "valid": verify(self.secret, request.headers, body, time.time()),
                 "mode": self.mode}
        with self.lock:
            self.received.append(entry)
        if entry["mode"] == "hang":  # answers too late, but takes the event (de-duplicated)
            self.release.wait(self.hang_s)
        if entry["mode"] == "fail":
            return Response("no", status=500)(environ, start_response)
        with self.lock:
            if entry["valid"]:
                msg_id = request.headers["webhook-id"]
                if msg_id in self.by_id:
                    self.duplicates += 1
                self.by_id.setdefault(msg_id, entry)
        return Response(status=204)(environ, start_response)

    def start(self) -> WebhookReceiver:
        self.release.clear()
        self.server = make_server("127.0.0.1", self.port, self._app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
