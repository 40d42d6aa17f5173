"""Keycloak logins with the bridge against Keycloak's own OTP form, on one Keycloak, in one run.

    bench/run.sh keycloak [--seconds 15] [--rounds 3] [--threads 4] [--users 300] [--out FILE]

One Keycloak 26 (``scripts/keycloak.sh``, in-memory database) holds two realms with the same
users, passwords and TOTP secrets:

* ``stepped``: the realm's browser flow after ``stepup keycloak install --cover browser``, so a
  login is the password form, then the hand-off to the bridge (``stepup serve``, SQLite, the
  same gunicorn settings as production) and its TOTP page, then back to Keycloak;
* ``builtin``: Keycloak's default browser flow, whose conditional OTP form asks the same users
  for the same kind of code.

Every login is complete and checked: the authorization request of a confidential client, the
password, the second factor, and the code exchanged for tokens at Keycloak's token endpoint.
Keycloak and the bridge run on ``--server-core``, this client on ``--client-core``; phases
alternate between the realms (``--rounds``) and the figures are medians of the paired slices,
so other load on the machine touches both sides alike. Users are imported into Keycloak with
their OTP credential and seeded into the bridge through its store (with the same secret), so
neither side spends the run on enrollment.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import math
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from .flows import FLOW_FORM, FlowFailed, Recorder, Users
from .ratio import Phase, pct
from .report import begin
from .servers import REPO, Server, children, cpu_seconds, free_port

KEYCLOAK = REPO / "scripts" / "keycloak.sh"
REALMS = ("stepped", "builtin")
RP_ID, RP_SECRET = "rp", "bench-rp-secret-0123456789"
CALLBACK = "http://127.0.0.1:9/callback"  # never fetched: the client stops at the redirect
_FORM = re.compile(r'<form[^>]*\baction="([^"]+)"')
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_NAMESPACE = uuid.UUID("6f1c8e9a-93a5-4f43-9b0c-5e9e1b7d2c10")


class KeycloakUsers(Users):
    """Users with a fixed Keycloak id (the bridge's subject: the authenticator sends the user
    id as ``login_hint``) and a TOTP key of ASCII characters, which Keycloak stores as text."""

    def subject(self, i: int) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"{self.prefix}{i}"))

    def username(self, i: int) -> str:
        return f"{self.prefix}{i}"

    def password(self, i: int) -> str:
        return f"pw-{self.prefix}{i}"

    def key(self, i: int) -> str:
        return hashlib.sha256(f"totp:{self.prefix}{i}".encode()).hexdigest()[:20]

    def secret(self, i: int) -> str:
        return base64.b32encode(self.key(i).encode()).decode().rstrip("=")

    def representation(self, i: int, otp: bool) -> dict:
        credentials = [{"type": "password", "value": self.password(i), "temporary": False}]
        if otp:
            credentials.append({
                "type": "otp", "userLabel": "bench",
                "secretData": f'{{"value":"{self.key(i)}"}}',
                "credentialData": '{"subType":"totp","digits":6,"counter":0,"period":30,'
                                  '"algorithm":"HmacSHA1"}'})
        return {"id": self.subject(i), "username": self.username(i), "enabled": True,
                "email": f"{self.username(i)}@example.org", "emailVerified": True,
                "firstName": "Bench", "lastName": f"User {i}", "credentials": credentials}


# -- one complete login ---------------------------------------------------------------------
class Login:
    """A browser (a cookie jar) signing in to one realm, then the client redeeming the code."""

    def __init__(self, keycloak: str, realm: str, recorder: Recorder):
        self.keycloak, self.realm, self.recorder = keycloak, realm, recorder
        self.browser = requests.Session()

    def _go(self, label: str, method: str, url: str, expect: tuple[int, ...],
            **kw) -> requests.Response:
        started = time.perf_counter()
        answer = self.browser.request(method, url, allow_redirects=False, timeout=30, **kw)
        self.recorder.add(label, time.perf_counter() - started)
        for cookie in self.browser.cookies:
            # Keycloak marks its cookies Secure: browsers send them to http://127.0.0.1 (a
            # secure context), http.cookiejar would not.
            cookie.secure = False
        if answer.status_code not in expect:
            raise FlowFailed(f"{self.realm} {label}: HTTP {answer.status_code} "
                             f"{answer.text[:200]!r}")
        return answer

    def _follow(self, label: str, answer: requests.Response) -> requests.Response | str:
        """Follow redirects until a page, or until the client's callback (returned as URL)."""
        while answer.is_redirect:
            location = urljoin(answer.url, answer.headers["location"])
            if location.startswith(CALLBACK):
                return location
            path = urlsplit(location).path
            hop = (label if path.startswith("/realms/") else
                   "bridge /authorize" if path == "/authorize" else "bridge page")
            answer = self._go(hop, "GET", location, (200, 302, 303))
        return answer

    def password(self, users: KeycloakUsers, i: int) -> requests.Response | str:
        base = f"{self.keycloak}/realms/{self.realm}/protocol/openid-connect"
        page = self._go("Keycloak login page", "GET", f"{base}/auth", (200,), params={
            "client_id": RP_ID, "redirect_uri": CALLBACK, "response_type": "code",
            "scope": "openid", "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8)})
        answer = self._go("Keycloak password", "POST", _action(page.text), (200, 302, 303),
                          data={"username": users.username(i), "password": users.password(i),
                                "credentialId": ""})
        return self._follow("Keycloak password", answer)

    def redeem(self, location: str) -> None:
        code = parse_qs(urlsplit(location).query).get("code", [""])[0]
        if not code:
            raise FlowFailed(f"{self.realm}: the callback has no code: {location[:120]}")
        started = time.perf_counter()
        answer = requests.post(
            f"{self.keycloak}/realms/{self.realm}/protocol/openid-connect/token", timeout=30,
            auth=(RP_ID, RP_SECRET), data={"grant_type": "authorization_code", "code": code,
                                           "redirect_uri": CALLBACK})
        self.recorder.add("Keycloak token", time.perf_counter() - started)
        if answer.status_code != 200 or "id_token" not in answer.json():
            raise FlowFailed(f"{self.realm} token: HTTP {answer.status_code} {answer.text[:200]}")


def _action(page: str) -> str:
    found = _FORM.search(page)
    if found is None:
        raise FlowFailed(f"no form on the page: {page[:200]!r}")
    return html.unescape(found.group(1))


def stepped_login(keycloak: str, users: KeycloakUsers, recorder: Recorder) -> None:
    """Password at Keycloak, TOTP at the bridge, back to Keycloak, code for tokens."""
    i, code = users.take_totp()
    try:
        login = Login(keycloak, "stepped", recorder)
        page = login.password(users, i)
        flow = None if isinstance(page, str) else FLOW_FORM.search(page.text)
        csrf = None if isinstance(page, str) else _CSRF.search(page.text)
        if flow is None or csrf is None:
            raise FlowFailed("stepped: expected the bridge's TOTP page, got "
                             f"{getattr(page, 'url', page)}")
        totp_form = urljoin(page.url, flow.group(1) + "/totp")
        answer = login._go("bridge TOTP", "POST", totp_form, (303,),
                           data={"otp": code, "csrf_token": csrf.group(1)})
        location = login._follow("Keycloak callback", answer)
        if not isinstance(location, str):
            raise FlowFailed(f"stepped: no way back to the client: {location.text[:200]!r}")
        login.redeem(location)
    finally:
        users.done(i)


def builtin_login(keycloak: str, users: KeycloakUsers, recorder: Recorder) -> None:
    """Password and Keycloak's own OTP form, code for tokens."""
    i, code = users.take_totp()
    try:
        login = Login(keycloak, "builtin", recorder)
        page = login.password(users, i)
        if isinstance(page, str) or 'name="otp"' not in page.text:
            raise FlowFailed("builtin: expected Keycloak's OTP form")
        answer = login._go("Keycloak OTP", "POST", _action(page.text), (302, 303),
                           data={"otp": code, "login": "Sign In"})
        location = login._follow("Keycloak OTP", answer)
        if not isinstance(location, str):
            raise FlowFailed("builtin: no way back to the client")
        login.redeem(location)
    finally:
        users.done(i)


# -- the world ------------------------------------------------------------------------------
def _run(*args, env: dict | None = None, timeout: int = 600) -> str:
    done = subprocess.run([str(a) for a in args], cwd=REPO, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{done.stdout[-2000:]}"
                         f"{done.stderr[-2000:]}")
    return done.stdout


def _tree(pid: int) -> list[int]:
    found = [pid]
    for child in children(pid):
        found += _tree(child)
    return found


@dataclass
class World:
    keycloak: str
    kc_port: int
    kc_pid: int
    bridge: Server
    data: Path
    env: dict[str, str] = field(default_factory=dict)

    def keycloak_pids(self) -> list[int]:
        return _tree(self.kc_pid)

    def stop(self) -> None:
        try:
            self.bridge.stop()
        finally:
            _stop_keycloak(self.kc_port)
            shutil.rmtree(self.data, ignore_errors=True)


def _stop_keycloak(port: int) -> None:
    subprocess.run([KEYCLOAK, "stop", str(port)], cwd=REPO, capture_output=True,
                   env={**os.environ, "KEYCLOAK_DB": "dev-mem"}, check=False)


def start_world(args, users: dict[str, KeycloakUsers], out: Callable[[str], None]) -> World:
    kc_env = {"KEYCLOAK_DB": "dev-mem"}
    _run(KEYCLOAK, "fetch")
    _run(KEYCLOAK, "build")
    kc_port = free_port()
    keycloak = f"http://127.0.0.1:{kc_port}"
    started = time.perf_counter()
    _run(KEYCLOAK, "start", kc_port, env=kc_env)
    try:
        return _populate(args, users, out, keycloak, kc_port, started)
    except BaseException:
        _stop_keycloak(kc_port)
        raise


def _populate(args, users: dict[str, KeycloakUsers], out: Callable[[str], None], keycloak: str,
              kc_port: int, started: float) -> World:
    from keycloak import KeycloakAdmin, KeycloakOpenIDConnection

    kc_pid = int((REPO / ".cache" / "keycloak" / f"kc-{kc_port}.pid").read_text())
    out(f"  Keycloak {_run(KEYCLOAK, 'version').strip()} started in "
        f"{time.perf_counter() - started:.0f} s")
    master = KeycloakAdmin(connection=KeycloakOpenIDConnection(
        server_url=keycloak, username="admin", password="admin",  # noqa: S106 - keycloak.sh's
        realm_name="master", verify=True, timeout=600))
    started = time.perf_counter()
    for realm in REALMS:
        master.create_realm({
            "realm": realm, "enabled": True,
            "clients": [{"clientId": RP_ID, "secret": RP_SECRET, "publicClient": False,
                         "standardFlowEnabled": True, "redirectUris": [CALLBACK],
                         "protocol": "openid-connect"}],
            "users": [users[realm].representation(i, otp=realm == "builtin")
                      for i in range(users[realm].count)]})
    out(f"  imported {args.users:,} users into each realm in "
        f"{time.perf_counter() - started:.0f} s")
    # Keycloak's threads are all under its JVM's pid. It was started from this process, on the
    # client core, so the JVM sized itself for one CPU, as the one it gets.
    for pid in _tree(kc_pid):
        _run("taskset", "-a", "-p", "-c", args.server_core, pid)

    data, bridge_port = Path(tempfile.mkdtemp(prefix="stepup-bench-kc-")), free_port()
    try:
        return _serve_bridge(args, users, keycloak, kc_port, kc_pid, data, bridge_port)
    except BaseException:
        shutil.rmtree(data, ignore_errors=True)
        raise


def _serve_bridge(args, users: dict[str, KeycloakUsers], keycloak: str, kc_port: int,
                  kc_pid: int, data: Path, bridge_port: int) -> World:
    from bridge import create_app

    issuer = f"http://127.0.0.1:{bridge_port}"
    env = {"STEPUP_DATA_DIR": str(data), "STEPUP_ISSUER": issuer, "STEPUP_IP_LIMIT": "100000",
           "STEPUP_WORKERS": str(args.workers)}
    app = create_app({"data_dir": data, "issuer": issuer}, environ={})
    bridge = app.extensions["stepup"]
    stepped = users["stepped"]
    stepped.seed(bridge.store, bridge.secrets.vault, bridge.secrets.pepper, 0, stepped.count)
    bridge.store.engine.dispose()
    _run(sys.executable, "-m", "bridge.cli", "keycloak", "install", "--server-url", keycloak,
         "--realm", "stepped", "--cover", "browser", "--admin-user", "admin",
         "--admin-password", "admin", env=env)
    server = Server("bridge", ["-m", "bridge.cli", "serve", "--port", str(bridge_port)],
                    {**os.environ, **env}, bridge_port, args.server_core, data / "server.log",
                    "/readyz")
    return World(keycloak, kc_port, kc_pid, server, data, env)


# -- phases ---------------------------------------------------------------------------------
@dataclass
class LoginPhase(Phase):
    """``server_cpu`` is Keycloak's; the bridge's is apart."""

    bridge_cpu: float = 0.0


def run_phase(world: World, login: Callable, users: KeycloakUsers, threads: int,
              seconds: float) -> LoginPhase:
    phase = LoginPhase()
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    recorders: list[Recorder] = []

    def worker() -> None:
        recorder = Recorder()
        recorders.append(recorder)
        while time.perf_counter() < stop:
            began = time.perf_counter()
            try:
                login(world.keycloak, users, recorder)
            except Exception as e:  # counted and reported, never silent
                with lock:
                    phase.errors.append(f"{type(e).__name__}: {e}")
                continue
            recorder.add("whole login", time.perf_counter() - began)
            with lock:
                phase.count += 1

    kc0, br0 = cpu_seconds(world.keycloak_pids()), cpu_seconds(world.bridge.pids())
    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    phase.seconds = time.perf_counter() - started
    phase.server_cpu = cpu_seconds(world.keycloak_pids()) - kc0
    phase.bridge_cpu = cpu_seconds(world.bridge.pids()) - br0
    phase.recorder.merge(recorders)
    return phase


WARM_UP = 20  # seconds per realm


def _check_pool(realm: str, warm: LoginPhase, users: KeycloakUsers, args) -> None:
    """Stop before measuring if ``realm``'s users would run out of TOTP steps: each signs in
    twice at once, then once per time step, and an empty pool caps the rate measured."""
    active = WARM_UP + args.rounds * args.seconds  # this realm's load; as long again the other's
    needed = 1.25 * warm.rate * active  # a margin for a faster slice than the warm-up
    capacity = users.totp_flows(2 * active)
    dry = any("TOTP time step" in e for e in warm.errors)  # the warm-up's rate is capped, then
    if dry or needed > capacity:
        more = 2 * users.count if dry else math.ceil(users.count * needed / capacity)
        raise SystemExit(f"{realm}: {warm.rate:.1f} logins/s over {active:g} s need more than "
                         f"{users.count:,} users (each signs in twice, then once per time "
                         f"step): rerun with --users {more}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="per measured slice")
    parser.add_argument("--rounds", type=int, default=3, help="slices per realm, alternating")
    parser.add_argument("--threads", type=int, default=4, help="browsers signing in at once")
    parser.add_argument("--users", type=int, default=300,
                        help="users in each realm (each signs in twice, then once per 30 s)")
    parser.add_argument("--workers", type=int, default=2, help="STEPUP_WORKERS")
    args, out = begin(parser, "Keycloak benchmark")
    out(f"Keycloak and the bridge ({args.workers} workers, SQLite) pinned to core "
        f"{args.server_core}, client to core {args.client_core}; {args.threads} browsers; "
        f"{args.rounds} x {args.seconds:g} s per realm, ABBA")
    # User ids are unique across a Keycloak's realms: each realm has users of its own.
    users = {"stepped": KeycloakUsers("s", args.users), "builtin": KeycloakUsers("k", args.users)}
    world = start_world(args, users, out)
    try:
        drive = {"stepped": (stepped_login, users["stepped"]),
                 "builtin": (builtin_login, users["builtin"])}
        for realm, (login, users) in drive.items():  # warm up the JIT and both caches
            _check_pool(realm, run_phase(world, login, users, args.threads, WARM_UP), users,
                        args)
        slices: dict[str, list[LoginPhase]] = {realm: [] for realm in REALMS}
        for round_ in range(args.rounds):  # ABBA…: neither realm always goes first
            for realm in REALMS if round_ % 2 == 0 else reversed(REALMS):
                login, users = drive[realm]
                slices[realm].append(run_phase(world, login, users, args.threads,
                                               args.seconds))
        report(slices, out)
    finally:
        world.stop()
    out.write(args.out)


def report(slices: dict[str, list[LoginPhase]], out: Callable[[str], None]) -> None:
    for realm, phases in slices.items():
        count = sum(p.count for p in phases)
        seconds = sum(p.seconds for p in phases)
        errors = [e for p in phases for e in p.errors]
        kc_ms = 1000 * sum(p.server_cpu for p in phases) / max(count, 1)
        br_ms = 1000 * sum(p.bridge_cpu for p in phases) / max(count, 1)
        out(f"\n== {realm}: "
            f"{'password + the bridge' if realm == 'stepped' else 'password + Keycloak OTP'} ==")
        out(f"  logins/s {count / seconds:7.1f}   (slices "
            f"{', '.join(f'{p.rate:.1f}' for p in phases)}; {len(errors)} errors)")
        out(f"  server CPU per login: Keycloak {kc_ms:6.1f} ms, bridge {br_ms:5.1f} ms")
        merged = Recorder()
        merged.merge([p.recorder for p in phases])
        for label, values in sorted(merged.latencies.items()):
            out(f"    {label:<24} p50 {pct(values, 0.5):7.1f} ms   p99 {pct(values, 0.99):7.1f} ms"
                f"   (n={len(values)})")
        for error in sorted(set(errors))[:5]:
            out(f"  error: {error[:160]}")
    if any(p.errors for phases in slices.values() for p in phases):
        out("\n  SOME LOGINS FAILED (errors above): the rates count completed logins only.")
    ratios = [s.rate / b.rate for s, b in zip(slices["stepped"], slices["builtin"], strict=True)
              if b.rate] or [0.0]
    out("\n== summary ==")
    out(f"  Keycloak + bridge / Keycloak + built-in OTP, logins/s: "
        f"{statistics.median(ratios):.2f} (median of paired slices "
        f"{', '.join(f'{r:.2f}' for r in ratios)}; goal >= 0.8)")
    stepped = slices["stepped"]
    count = sum(p.count for p in stepped)
    total = sum(p.server_cpu + p.bridge_cpu for p in stepped)
    if total:
        out(f"  the bridge's share of a stepped login's server CPU: "
            f"{sum(p.bridge_cpu for p in stepped) / total:.0%} "
            f"({1000 * total / max(count, 1):.1f} ms in all)")


if __name__ == "__main__":
    sys.exit(main())
