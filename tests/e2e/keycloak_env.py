"""A real Keycloak 26 with the authenticator, the bridge behind a small proxy, and an
authlib relying party — everything on 127.0.0.1, started once per test run.

The proxy plays the bridge's load balancer (its URL is the bridge's issuer). It can also turn
rogue — rewrite ``login_hint`` in the pushed request so the bridge asserts *another* user —
or go down, which is how the tests show that Keycloak binds ``sub`` and fails closed.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import requests
from authlib.integrations.flask_client import OAuth
from flask import Flask, jsonify, redirect, url_for
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
        return oauth.keycloak.authorize_redirect(f"{public_url}/callback")

    @app.get("/callback")
    def callback():
        token = oauth.keycloak.authorize_access_token()
        return jsonify(id_token_claims=dict(token["userinfo"]))

    @app.get("/")
    def home():
        return redirect(url_for("login"))

    return app


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
    users: dict[str, str] = field(default_factory=dict)  # username -> Keycloak user id

    def add_user(self, username: str) -> str:
        self.admin.create_user({
            "username": username, "enabled": True, "emailVerified": True,
            "email": f"{username}@example.org", "firstName": username.title(),
            "lastName": "Tester",
            "credentials": [{"type": "password", "value": f"{username}-pw", "temporary": False}],
        })
        self.users[username] = self.admin.get_user_id(username)
        return self.users[username]


def run(*args: str, env: dict | None = None, timeout: int = 600) -> str:
    done = subprocess.run(args, cwd=REPO, env={**os.environ, **(env or {})}, text=True,
                          capture_output=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")
    return done.stdout


def start_world(tmp: Path):
    """Generator: build and start everything, yield a KeycloakWorld, stop everything."""
    from keycloak import KeycloakAdmin, KeycloakOpenIDConnection

    kc_port, bridge_port, proxy_port, rp_port = (free_port() for _ in range(4))
    keycloak_url = f"http://127.0.0.1:{kc_port}"
    issuer = f"http://127.0.0.1:{proxy_port}"
    kc_env = {"KEYCLOAK_DB": "dev-mem"}
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
            try:
                yield KeycloakWorld(keycloak_url, "acme", issuer, rp_url, proxy, proxy_server,
                                    admin, tmp / "bridge", env)
            finally:
                rp.stop()
                proxy_server.stop()
    finally:
        subprocess.run([KEYCLOAK, "stop", str(kc_port)], cwd=REPO, check=False,
                       capture_output=True, env={**os.environ, **kc_env})
