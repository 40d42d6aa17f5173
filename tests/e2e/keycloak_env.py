"""A real Keycloak 26 with the authenticator, the bridge behind a small proxy, and an
authlib relying party — everything on 127.0.0.1, started once per test run.

The proxy plays the bridge's load balancer (its URL is the bridge's issuer). It can also turn
rogue — rewrite ``login_hint`` in the pushed request so the bridge asserts *another* user —
or go down, which is how the tests show that Keycloak binds ``sub`` and fails closed.

Realm ``acme`` has every door a realm can have: "Forgot password?" with a real SMTP server
(aiosmtpd) receiving the reset e-mails, and an external OpenID Connect identity provider — the
realm ``upstream`` of the same Keycloak. ``stepup keycloak install`` puts the step on all of them.
"""

from __future__ import annotations

import email
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import requests
from aiosmtpd.controller import Controller
from authlib.integrations.flask_client import OAuth
from flask import Flask, jsonify, redirect, request, url_for
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from .browser import REPO, free_port, stepup_process

KEYCLOAK = REPO / "scripts" / "keycloak.sh"
_HOP = {"connection", "content-length", "content-encoding", "transfer-encoding", "keep-alive",
        "host"}


class BridgeProxy:
    """A pass-through WSGI proxy in front of the bridge, with a rogue mode."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.rewrite_login_hint: str | None = None

    def __call__(self, environ, start_response):
        request = Request(environ)
        body = request.get_data()
        if self.rewrite_login_hint and request.path == "/par":
            form = [(k, self.rewrite_login_hint if k == "login_hint" else v)
                    for k, v in parse_qsl(body.decode())]
            body = urlencode(form).encode()
        upstream = requests.request(
            request.method, self.upstream + request.full_path.rstrip("?"), data=body,
            headers={k: v for k, v in request.headers.items() if k.lower() not in _HOP},
            allow_redirects=False, timeout=30)
        headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP]
        return Response(upstream.content, upstream.status_code, headers)(environ, start_response)


class Served:
    """A WSGI app on a port in a thread; can be stopped and started again on the same port."""

    def __init__(self, app, port: int):
        self.app, self.port, self.server = app, port, None

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no query strings in logs
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def relying_party(keycloak_url: str, realm: str, client_id: str, secret: str,
                  public_url: str) -> Flask:
    """An ordinary OpenID Connect relying party of Keycloak, written with authlib."""
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(16)
    oauth = OAuth(app)
    oauth.register(
        "keycloak", client_id=client_id, client_secret=secret,
        server_metadata_url=f"{keycloak_url}/realms/{realm}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid"})

    @app.get("/login")
    def login():
        # acr_values / max_age / prompt pass through, as a relying party asking for a level would.
        extra = {k: v for k, v in request.args.items() if k in ("acr_values", "max_age", "prompt")}
        return oauth.keycloak.authorize_redirect(f"{public_url}/callback", **extra)

    @app.get("/callback")
    def callback():
        token = oauth.keycloak.authorize_access_token()
        return jsonify(id_token_claims=dict(token["userinfo"]))

    @app.get("/")
    def home():
        return redirect(url_for("login"))

    return app


class Mailbox:
    """What the SMTP server received, and the reset link in it."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd handler hook
        with self._arrived:
            self.messages.append(email.message_from_bytes(envelope.content))
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def link_for(self, address: str, timeout: float = 30) -> str:
        """The action-token link of the newest message to ``address`` (waits for it)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for message in reversed(self.messages):
                    if address in str(message["To"]):
                        return _action_link(message)
                left = deadline - time.monotonic()
                if left <= 0 or not self._arrived.wait(left):
                    raise AssertionError(f"no e-mail to {address} within {timeout}s")


def _action_link(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            text = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
            found = re.search(r"https?://\S+/login-actions/action-token\?\S+", text)
            if found:
                return found.group(0)
    raise AssertionError("the e-mail has no action-token link")


@dataclass
class RealmHandle:
    """One more realm on the shared Keycloak, with a relying party of its own."""

    name: str
    admin: object
    rp: str


@dataclass
class KeycloakWorld:
    keycloak: str
    realm: str
    bridge: str  # the issuer: the proxy
    rp: str
    proxy: BridgeProxy
    proxy_server: Served
    admin: object
    data_dir: Path
    env: dict
    master: object
    upstream: object  # admin of the realm ``upstream``, acme's external identity provider
    mail: Mailbox
    users: dict[str, str] = field(default_factory=dict)  # username -> Keycloak user id
    servers: list[Served] = field(default_factory=list)

    def add_user(self, username: str, admin=None) -> str:
        """A user with password ``<username>-pw`` in acme (or the realm of ``admin``)."""
        admin = admin or self.admin
        admin.create_user({
            "username": username, "enabled": True, "emailVerified": True,
            "email": f"{username}@example.org", "firstName": username.title(),
            "lastName": "Tester",
            "credentials": [{"type": "password", "value": f"{username}-pw", "temporary": False}],
        })
        user_id = admin.get_user_id(username)
        if admin is self.admin:
            self.users[username] = user_id
        return user_id

    def stepup(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``stepup ARGS`` against the bridge's data folder; output and status returned."""
        done = subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=REPO,
                              env={**os.environ, **self.env}, text=True, capture_output=True,
                              timeout=180)
        if check and done.returncode != 0:
            raise AssertionError(f"stepup {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def keycloak_args(self, realm: str) -> list[str]:
        return ["--server-url", self.keycloak, "--realm", realm,
                "--admin-user", "admin", "--admin-password", "admin"]

    def open_realm(self, name: str) -> RealmHandle:
        """A fresh realm with an RP client ``rp`` served on a port of its own."""
        self.master.create_realm({"realm": name, "enabled": True}, skip_exists=True)
        admin = realm_admin(self.keycloak, name)
        port = free_port()
        rp_url = f"http://127.0.0.1:{port}"
        secret = secrets.token_urlsafe(24)
        admin.create_client({
            "clientId": "rp", "secret": secret, "publicClient": False,
            "standardFlowEnabled": True, "directAccessGrantsEnabled": False,
            "redirectUris": [f"{rp_url}/callback"], "protocol": "openid-connect"})
        server = Served(relying_party(self.keycloak, name, "rp", secret, rp_url), port)
        server.start()
        self.servers.append(server)
        return RealmHandle(name, admin, rp_url)


def run(*args: str, env: dict | None = None, timeout: int = 600) -> str:
    done = subprocess.run(args, cwd=REPO, env={**os.environ, **(env or {})}, text=True,
                          capture_output=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")
    return done.stdout


def realm_admin(keycloak_url: str, realm: str):
    from keycloak import KeycloakAdmin, KeycloakOpenIDConnection

    return KeycloakAdmin(connection=KeycloakOpenIDConnection(
        server_url=keycloak_url, username="admin", password="admin", realm_name=realm,
        user_realm_name="master", verify=True))


def add_upstream_idp(keycloak_url: str, upstream, admin, alias: str = "upstream",
                     post_login: bool = True) -> None:
    """Realm ``upstream`` as OpenID Connect identity provider ``alias`` of ``admin``'s realm."""
    realm = admin.connection.realm_name
    secret = secrets.token_urlsafe(24)
    upstream.create_client({
        "clientId": f"{realm}-{alias}", "secret": secret, "publicClient": False,
        "standardFlowEnabled": True, "protocol": "openid-connect",
        "redirectUris": [f"{keycloak_url}/realms/{realm}/broker/{alias}/endpoint"]})
    base = f"{keycloak_url}/realms/upstream/protocol/openid-connect"
    admin.create_idp({
        "alias": alias, "displayName": "Upstream", "providerId": "oidc", "enabled": True,
        "trustEmail": True, "config": {
            "clientId": f"{realm}-{alias}", "clientSecret": secret,
            "clientAuthMethod": "client_secret_post", "authorizationUrl": f"{base}/auth",
            "tokenUrl": f"{base}/token", "userInfoUrl": f"{base}/userinfo",
            "jwksUrl": f"{base}/certs", "useJwksUrl": "true", "validateSignature": "true",
            "issuer": f"{keycloak_url}/realms/upstream", "defaultScope": "openid profile email",
            "syncMode": "IMPORT"}})


#: Preview features the test Keycloak runs, so that the audit's doors that need them can be
#: planted and walked through for real (legacy token exchange needs fine-grained admin
#: permissions v1, which replaces v2). With nothing configured in a realm they open no door.
FEATURES = "token-exchange,admin-fine-grained-authz:v1,jwt-authorization-grant"


def start_world(tmp: Path):
    """Generator: build and start everything, yield a KeycloakWorld, stop everything."""
    from keycloak import KeycloakAdmin, KeycloakOpenIDConnection

    kc_port, bridge_port, proxy_port, rp_port, smtp_port = (free_port() for _ in range(5))
    keycloak_url = f"http://127.0.0.1:{kc_port}"
    issuer = f"http://127.0.0.1:{proxy_port}"
    kc_env = {"KEYCLOAK_DB": "dev-mem", "KEYCLOAK_FEATURES": FEATURES}
    run(KEYCLOAK, "fetch")
    run(KEYCLOAK, "build")
    run(KEYCLOAK, "start", str(kc_port), env=kc_env, timeout=400)
    env = {"STEPUP_DATA_DIR": str(tmp / "bridge"), "STEPUP_ISSUER": issuer,
           "STEPUP_LOCKOUT_LIMIT": "3", "STEPUP_WORKERS": "2"}
    try:
        with stepup_process(["serve", "--port", str(bridge_port)], env,
                            f"http://127.0.0.1:{bridge_port}/readyz", tmp / "bridge.log"):
            proxy = BridgeProxy(f"http://127.0.0.1:{bridge_port}")
            proxy_server = Served(proxy, proxy_port)
            proxy_server.start()
            master = KeycloakAdmin(connection=KeycloakOpenIDConnection(
                server_url=keycloak_url, username="admin", password="admin",
                realm_name="master", verify=True))
            master.create_realm({"realm": "acme", "enabled": True}, skip_exists=True)
            master.create_realm({"realm": "upstream", "enabled": True}, skip_exists=True)
            upstream = realm_admin(keycloak_url, "upstream")
            add_upstream_idp(keycloak_url, upstream, realm_admin(keycloak_url, "acme"))
            mail = Mailbox()
            smtp = Controller(mail, hostname="127.0.0.1", port=smtp_port)
            smtp.start()
            master.update_realm("acme", {"resetPasswordAllowed": True, "smtpServer": {
                "host": "127.0.0.1", "port": str(smtp_port), "from": "sso@example.org"}})
            run(sys.executable, "-m", "bridge.cli", "keycloak", "install",
                "--server-url", keycloak_url, "--realm", "acme",
                "--admin-user", "admin", "--admin-password", "admin",
                env=env, timeout=120)
            admin = KeycloakAdmin(connection=KeycloakOpenIDConnection(
                server_url=keycloak_url, username="admin", password="admin", realm_name="acme",
                user_realm_name="master", verify=True))
            rp_url = f"http://127.0.0.1:{rp_port}"
            rp_secret = secrets.token_urlsafe(24)
            admin.create_client({
                "clientId": "rp", "secret": rp_secret, "publicClient": False,
                "standardFlowEnabled": True, "redirectUris": [f"{rp_url}/callback"],
                "protocol": "openid-connect"})
            rp = Served(relying_party(keycloak_url, "acme", "rp", rp_secret, rp_url), rp_port)
            rp.start()
            world = KeycloakWorld(keycloak_url, "acme", issuer, rp_url, proxy, proxy_server,
                                  admin, tmp / "bridge", env, master, upstream, mail)
            try:
                yield world
            finally:
                for server in [rp, *world.servers]:
                    server.stop()
                proxy_server.stop()
                smtp.stop()
    finally:
        subprocess.run([KEYCLOAK, "stop", str(kc_port)], cwd=REPO, check=False,
                       capture_output=True, env={**os.environ, **kc_env})
