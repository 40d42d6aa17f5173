"""A TOTP step-up's HTTP shape in bare Flask: the floor under what the bridge can cost.

    python -m bench.shape PORT

The same four requests as ``bench.flows.totp_stepup`` (PAR, /authorize answering with the code
page, the code's POST, /token), with the same bodies, cookie and headers, answered by Flask
doing only what any Flask app must do for requests of that shape: parse the form and the Basic
credentials, read and write the signed session cookie, issue and check Flask-WTF's CSRF token,
render a Jinja page of the code page's size, send JSON and a redirect, with the bridge's
security headers. Nothing of a step-up's own work: no database, no TOTP, no client
authentication, no signed ID token, no translations, no metrics. ``bench.instructions`` counts
it beside the bridge, and ``bench/run.sh`` serves it as it serves the trivial app (the same
gunicorn settings as ``stepup serve``), so the report can say how far the bridge sits above
Flask itself.
"""

from __future__ import annotations

import secrets
import sys
from urllib.parse import urlencode

from flask import Flask, jsonify, redirect, render_template, request, session
from flask_wtf.csrf import CSRFProtect

from bridge import logs
from bridge.app import CookieSessions
from bridge.security import HEADERS, with_headers
from bridge.server import run_gunicorn
from bridge.settings import load_settings

from .flows import CALLBACK

app = Flask(__name__)
app.config.update(SECRET_KEY=secrets.token_bytes(32), SESSION_COOKIE_NAME="stepup_session",
                  SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                  SESSION_REFRESH_EACH_REQUEST=False)
app.session_interface = CookieSessions()  # the bridge's: its serializer built once
csrf = CSRFProtect(app)

_ID_TOKEN = "e" * 560  # an ES256 ID token's length, unsigned: signing is the bridge's work
# The bridge's headers sent the bridge's way, and a request id's length.
app.wsgi_app = with_headers(app.wsgi_app, {**HEADERS, "X-Request-ID": "0" * 32})  # type: ignore[method-assign]


@app.get("/healthz")
def healthz():
    return "ok"


@app.post("/par")
@csrf.exempt
def par():
    assert request.authorization and request.form["login_hint"]
    return jsonify(request_uri="urn:ietf:params:oauth:request_uri:" + secrets.token_urlsafe(32),
                   expires_in=60), 201, {"Cache-Control": "no-store"}


@app.get("/authorize")
def authorize():
    assert request.args["request_uri"]
    flow = secrets.token_urlsafe(24)
    session.setdefault("binding", secrets.token_urlsafe(24))
    session.permanent = True
    session["flows"] = [*session.get("flows", []), flow][-5:]
    session["opened"] = [*session.get("opened", []), [secrets.token_hex(8), flow]][-5:]
    # The account line the bridge's page shows for the pushed preferred_username (its length).
    return (render_template("totp.html", flow=flow, account="u12345"), 200,
            {"Cache-Control": "no-store"})


@app.post("/flow/<flow_id>/totp")
def totp(flow_id: str):
    assert flow_id in session["flows"] and request.form["otp"]
    query = urlencode({"code": secrets.token_urlsafe(32), "state": "s",
                       "iss": "http://127.0.0.1:5999"})
    return redirect(f"{CALLBACK}?{query}", 303), {"Cache-Control": "no-store"}


@app.post("/token")
@csrf.exempt
def token():
    assert request.authorization and request.form["code"]
    return jsonify(access_token=secrets.token_urlsafe(32),
                   token_type="Bearer",  # noqa: S106 (not a password)
                   expires_in=300,
                   scope="openid", id_token=_ID_TOKEN), 200, {"Cache-Control": "no-store",
                                                              "Pragma": "no-cache"}


if __name__ == "__main__":
    settings = load_settings()
    logs.configure()
    run_gunicorn(app, "127.0.0.1", int(sys.argv[1]), settings.workers, settings.timeout)
