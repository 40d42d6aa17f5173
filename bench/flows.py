"""Complete hand-offs as the IdP (back channel) and the user's browser drive them.

Each flow is the exact sequence of requests a real step-up makes; every answer is checked
(status, redirect target, token response), so a benchmark can never count a failed login.
Users are seeded with secrets derived from their index, so the client knows every user's TOTP
secret and recovery code without keeping a million of them.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import re
import secrets
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

from bridge.factors import recovery, totp
from bridge.keyring import Vault
from bridge.oidc.clients import new_client
from bridge.store import Store, User

from .http import Response

CLIENT_ID = "bench-idp"
CLIENT_SECRET = "bench-secret-0123456789"  # noqa: S105 - a throw-away benchmark client
CALLBACK = "http://127.0.0.1:9/callback"


def seeded_bridge(prefix: str, users: Users):
    """The bridge in this process on a new embedded database (a temporary folder named
    ``prefix``…), the benchmark's IdP registered and ``users`` seeded through its store."""
    from bridge import create_app

    app = create_app({"data_dir": Path(tempfile.mkdtemp(prefix=prefix)),
                      "issuer": "http://127.0.0.1:9", "ip_limit": 100_000}, environ={})
    register_client(app)
    bridge = app.extensions["stepup"]
    users.seed(bridge.store, bridge.secrets.vault, bridge.secrets.pepper, 0, users.count)
    return app


def register_client(app) -> None:
    """The benchmark's IdP (``CLIENT_ID``, ``CLIENT_SECRET``, ``CALLBACK``) registered at the
    bridge ``app``."""
    bridge = app.extensions["stepup"]
    with bridge.store.begin() as tx:
        tx.add_client(new_client(bridge.secrets.pepper, CLIENT_ID, secret=CLIENT_SECRET,
                                 jwks_uri=None, redirect_uris=[CALLBACK],
                                 redirect_uri_prefixes=[]))
_BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: The key as the page shows it: in groups (``<span>``s) inside ``#totp-secret``.
_SECRET = re.compile(r'id="totp-secret"[^>]*>((?:\s*<span>[A-Z2-7]+</span>)+)\s*<')
_CODE = re.compile(r'id="recovery-code"[^>]*>\s*([0-9A-Z-]+)\s*<')
#: A flow's path, from the forms on its pages (every page of a flow has its cancel form).
FLOW_FORM = re.compile(r'action="(/flow/[^/"]+)/')
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Transport(Protocol):
    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> Response: ...


class FlowFailed(Exception):
    """An answer a working bridge would not give."""


# -- users ----------------------------------------------------------------------------------
def email(subject: str) -> str:
    """The address the IdP pushes for ``subject``."""
    return f"{subject}@example.org"


class Users:
    """Subjects ``{prefix}{i}`` with secrets derived from ``i``; tracks the TOTP steps used."""

    def __init__(self, prefix: str, count: int):
        self.prefix, self.count = prefix, count
        self._next = itertools.count()
        self._last_step: dict[int, int] = {}
        self._codes: dict[int, str] = {}  # rotated recovery codes
        self._lock = threading.Lock()
        self._busy: set[int] = set()  # users with a TOTP step-up in flight
        self.random_order = False

    def subject(self, i: int) -> str:
        return f"{self.prefix}{i}"

    def email(self, i: int) -> str:
        return email(self.subject(i))

    def secret(self, i: int) -> str:
        raw = hashlib.sha256(f"totp:{self.prefix}{i}".encode()).digest()[: totp.SECRET_BYTES]
        return base64.b32encode(raw).decode().rstrip("=")

    def recovery_code(self, i: int) -> str:
        if (code := self._codes.get(i)) is not None:
            return code
        raw = hashlib.sha256(f"rc:{self.prefix}{i}".encode()).digest()
        return recovery.display("".join(recovery.ALPHABET[b % 32] for b in raw[: recovery.LENGTH]))

    def rotated(self, i: int, code: str) -> None:
        self._codes[i] = code

    def seed(self, store: Store, vault: Vault, pepper: bytes, start: int, stop: int,
             batch: int = 5000) -> None:
        """Enroll users ``start`` … ``stop - 1`` through the store, in bulk, each with the
        address a past sign-in kept (a step-up then updates it, as a returning user's does)."""
        now = time.time()
        for lo in range(start, stop, batch):
            rows = [User(subject=self.subject(i), display_name=None,
                         totp_secret=vault.seal("totp_secret", self.subject(i), self.secret(i)),
                         totp_last_step=0,
                         recovery_digest=recovery.keyed_digest(pepper, self.recovery_code(i)),
                         recovery_version=1, failures=0, last_failure_at=None, locked_at=None,
                         created_at=now) for i in range(lo, min(lo + batch, stop))]
            with store.begin() as tx:  # returning users: their address is kept already
                tx.add_users(rows, emails=[self.email(i) for i in range(lo, min(lo + batch, stop))])

    def totp_flows(self, seconds: float) -> int:
        """TOTP step-ups this pool of fresh users gives at least over ``seconds``: each user
        the steps now and next at once, then one more per time step."""
        return self.count * (2 + int(seconds // totp.PERIOD))

    def take_totp(self) -> tuple[int, str]:
        """A user and a code whose time step this user has not used yet (no replay, no
        waiting for the next step): the steps now and next, each once per user, and never a
        user whose other step-up is still in flight (its older code, arriving after the newer
        one, would rightly be refused as a replay). ``done(i)`` when the step-up ends.

        An empty pool raises rather than waits for the next step: a wait would idle the
        server and understate a closed loop's rate; a phase sizes its pool (``totp_flows``)
        or caps its flows instead."""
        for _ in range(self.count):
            i = random.randrange(self.count) if self.random_order else next(self._next) % self.count
            step = int(time.time() // totp.PERIOD)
            with self._lock:
                last = self._last_step.get(i, 0)
                if last < step + 1 and i not in self._busy:
                    use = step if last < step else step + 1
                    self._last_step[i] = use
                    self._busy.add(i)
                    return i, totp.code_at(self.secret(i), use * totp.PERIOD)
        raise RuntimeError(f"all {self.count:,} users have used this TOTP time step and the "
                           "next: seed more users")

    def done(self, i: int) -> None:
        with self._lock:
            self._busy.discard(i)

    def take(self) -> int:
        return next(self._next) % self.count


# -- recording ------------------------------------------------------------------------------
@dataclass
class Recorder:
    """Latencies by endpoint (per thread, merged at the end)."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, label: str, seconds: float) -> None:
        self.latencies[label].append(seconds)

    def merge(self, others: Iterable[Recorder]) -> None:
        for other in others:
            for label, values in other.latencies.items():
                self.latencies[label].extend(values)


# -- one hand-off ---------------------------------------------------------------------------
class Handoff:
    """One step-up: the IdP's back channel and one browser (its own cookie)."""

    def __init__(self, idp: Transport, browser: Transport, recorder: Recorder, subject: str):
        self.idp, self.browser, self.recorder = idp, browser, recorder
        self.subject = subject
        self.cookie = ""
        self.verifier = secrets.token_urlsafe(48)
        self.flow = ""

    def _send(self, label: str, method: str, path: str, expect: int | tuple, *,
              browser: bool, headers: dict[str, str] | None = None,
              form: dict | None = None) -> Response:
        """One request, by the browser (with its cookie) or the IdP's back channel (without:
        the two may share one transport)."""
        headers = dict(headers or {})
        body = urlencode(form).encode() if form is not None else b""
        if form is not None:
            headers.update(_FORM)
        if browser and self.cookie:
            headers["Cookie"] = self.cookie
        response = (self.browser if browser else self.idp).request(method, path, headers, body)
        self.recorder.add(label, response.seconds)
        if response.status not in (expect if isinstance(expect, tuple) else (expect,)):
            raise FlowFailed(f"{label}: HTTP {response.status} (expected {expect}): "
                             f"{response.body[:200]!r}")
        if browser and (cookie := response.headers.get("set-cookie")):
            self.cookie = cookie.split("\n")[-1].split(";", 1)[0]
        return response

    def start(self) -> str:
        """PAR, then /authorize, which answers with the first page of the flow."""
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(self.verifier.encode()).digest()).decode().rstrip("=")
        par = self._send("POST /par", "POST", "/par", 201, browser=False,
                         headers={"Authorization": _BASIC}, form={
                             "response_type": "code", "scope": "openid",
                             "client_id": CLIENT_ID, "redirect_uri": CALLBACK, "state": "s",
                             "nonce": secrets.token_urlsafe(8), "code_challenge": challenge,
                             "code_challenge_method": "S256", "login_hint": self.subject,
                             # what the Keycloak authenticator pushes for a user with an address
                             "preferred_username": self.subject,
                             "email": email(self.subject)})
        request_uri = par.body.split(b'"request_uri":', 1)[1].split(b'"')[1].decode()
        query = urlencode({"client_id": CLIENT_ID, "request_uri": request_uri})
        opened = self._send("GET /authorize", "GET", f"/authorize?{query}", (200, 303),
                            browser=True)
        if opened.status == 303:  # a bridge before 4-request step-ups (bench.instructions --tree)
            self.flow = urlsplit(opened.headers["location"]).path
            return self.page("GET /flow/<id>")
        page = opened.text
        match = FLOW_FORM.search(page)
        if match is None:
            raise FlowFailed("GET /authorize: not a page of a flow")
        self.flow = match.group(1)
        return page

    def page(self, label: str, path: str = "") -> str:
        return self._send(label, "GET", self.flow + path, 200, browser=True).text

    def post(self, label: str, action: str, page: str, **form: str) -> str:
        """Post a form of ``page``; returns where the bridge redirects to."""
        match = _CSRF.search(page)
        if match is None:
            raise FlowFailed(f"{label}: no CSRF token on the page")
        form["csrf_token"] = match.group(1)
        answer = self._send(label, "POST", f"{self.flow}/{action}", 303, browser=True,
                            form=form)
        return answer.headers["location"]

    def redeem(self, location: str) -> None:
        if not location.startswith(CALLBACK):
            raise FlowFailed(f"expected a redirect to the IdP, got {location[:80]}")
        code = parse_qs(urlsplit(location).query)["code"][0]
        answer = self._send("POST /token", "POST", "/token", 200, browser=False,
                            headers={"Authorization": _BASIC}, form={
                                "grant_type": "authorization_code", "code": code,
                                "redirect_uri": CALLBACK, "code_verifier": self.verifier})
        if b'"id_token"' not in answer.body:
            raise FlowFailed("token response without an id_token")


def totp_stepup(idp: Transport, browser: Transport, recorder: Recorder, users: Users) -> None:
    """PAR, /authorize (the TOTP page), the code, /token: four requests."""
    i, code = users.take_totp()
    try:
        handoff = Handoff(idp, browser, recorder, users.subject(i))
        page = handoff.start()
        handoff.redeem(handoff.post("POST /flow/<id>/totp", "totp", page, otp=code))
    finally:
        users.done(i)


def recovery_stepup(idp: Transport, browser: Transport, recorder: Recorder,
                    users: Users) -> None:
    """TOTP page → "use your recovery code" → code → new code shown → saved → /token."""
    i = users.take()
    handoff = Handoff(idp, browser, recorder, users.subject(i))
    handoff.start()
    form = handoff.page("GET /flow/<id>/recovery", "/recovery")
    handoff.post("POST /flow/<id>/recovery", "recovery", form,
                 recovery_code=users.recovery_code(i))
    shown = handoff.page("GET /flow/<id> (new code)")
    match = _CODE.search(shown)
    if match is None:
        raise FlowFailed("no new recovery code shown")
    location = handoff.post("POST /flow/<id>/saved", "saved", shown, saved="yes")
    users.rotated(i, match.group(1))  # the old code no longer works from here on
    handoff.redeem(location)


_enrolled = itertools.count()


def enrollment(idp: Transport, browser: Transport, recorder: Recorder, prefix: str) -> None:
    """A new user: QR page, first code, first recovery code saved, /token."""
    handoff = Handoff(idp, browser, recorder, f"{prefix}new-{next(_enrolled)}")
    page = handoff.start()
    match = _SECRET.search(page)
    if match is None:
        raise FlowFailed("no TOTP secret on the enrollment page")
    secret = re.sub(r"\s*</?span>\s*", "", match.group(1))
    handoff.post("POST /flow/<id>/enroll", "enroll", page, otp=totp.code_at(secret, time.time()))
    shown = handoff.page("GET /flow/<id> (new code)")
    handoff.redeem(handoff.post("POST /flow/<id>/saved", "saved", shown, saved="yes"))
