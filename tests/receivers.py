"""Real receivers for the notification tests, on 127.0.0.1: an SMTP server (aiosmtpd) and a
webhook receiver (werkzeug) that checks Standard Webhooks signatures and de-duplicates by id.
Both can be stopped and started again on the same port, or told to misbehave. A drip server
answers one byte at a time, for the senders' deadlines."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import ipaddress
import select
import socket
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from urllib.parse import quote

from aiosmtpd.controller import Controller
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.e2e.browser import free_port

#: A signing secret for the tests, in the Standard Webhooks format.
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def verify(secret: str, headers, body: bytes, now: float, tolerance: int = 300) -> bool:
    """What a receiver does (docs/webhooks.md): recompute the HMAC, compare in constant time,
    refuse stale timestamps, and answer False, never raise, for whatever headers come."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or \
                abs(now - int(timestamp)) > tolerance:
            return False
        expected = base64.b64encode(hmac.new(
            key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
        return any(hmac.compare_digest(expected, sig.partition(",")[2].encode())
                   for sig in headers["webhook-signature"].split() if sig.startswith("v1,"))
    except (KeyError, ValueError):  # a missing header, a bad secret, text that is not UTF-8
        return False


def tls_files(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (the test trusts it as a CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class SmtpSink:
    """``tls``: None (plain), "starttls" (required before AUTH and mail) or "smtps" (TLS from
    the first byte), with the certificate of :func:`tls_files`; ``login``: (user, password)
    that AUTH must present."""

    def __init__(self, tls: str | None = None, certs: tuple[Path, Path] | None = None,
                 login: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.messages: list[Message] = []
        self.controller: Controller | None = None
        self.tls, self.certs, self.login = tls, certs, login
        self.logins: list[str] = []
        #: An SMTP reply to refuse every recipient with ("550 5.1.1 <addr>: no such user"),
        #: as a mail server does; None takes them.
        self.refuse_rcpt: str | None = None
        self.refused = 0  # recipients refused so far

    @property
    def url(self) -> str:
        scheme = {None: "smtp", "starttls": "smtp+starttls", "smtps": "smtps"}[self.tls]
        auth = ""
        if self.login:
            auth = f"{quote(self.login[0], safe='')}:{quote(self.login[1], safe='')}@"
        return f"{scheme}://{auth}127.0.0.1:{self.port}"

    def _check_login(self, mechanism: str, login: bytes, password: bytes) -> bool:
        self.logins.append(login.decode())
        return self.login is not None and (login.decode(), password.decode()) == self.login

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_rcpt:
            self.refused += 1
            return self.refuse_rcpt.replace("<addr>", f"<{address}>")  # echoes it, as servers do
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd calls it by this name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def start(self) -> SmtpSink:
        options: dict = {}
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.certs)
            # aiosmtpd only knows STARTTLS as TLS: on an smtps socket it must be told that
            # AUTH is fine (the whole connection is TLS).
            options = ({"ssl_context": context, "auth_require_tls": False}
                       if self.tls == "smtps" else
                       {"tls_context": context, "require_starttls": True})
        if self.login:
            options |= {"auth_required": True, "auth_callback": self._check_login}
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)
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


class DripServer:
    """Accepts one connection and sends ``answer`` one byte every ``interval`` seconds, from
    the start (a mail server speaks first; an HTTP request is simply drained meanwhile): each
    read on the other side gets data long before a socket timeout. ``cut`` is set when the
    client shut the connection mid-answer, ``finished`` when all was sent."""

    def __init__(self, answer: bytes, interval: float = 0.25,
                 certs: tuple[Path, Path] | None = None) -> None:
        self.answer, self.interval = answer, interval
        self.tls = None
        if certs:  # TLS from the first byte (https, smtps)
            self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.load_cert_chain(*certs)
        self.cut, self.finished = threading.Event(), threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        if self.tls:
            conn = self.tls.wrap_socket(conn, server_side=True)
        with conn:
            for byte in self.answer:
                until = time.monotonic() + self.interval
                while (left := until - time.monotonic()) > 0:
                    readable, _, _ = select.select([conn], [], [], left)
                    if readable and not conn.recv(65536):  # the client ended the exchange
                        self.cut.set()
                        return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    self.cut.set()
                    return
            self.finished.set()
            conn.recv(65536)  # let the client read it all before the close

    def stop(self) -> None:
        self.listener.close()
