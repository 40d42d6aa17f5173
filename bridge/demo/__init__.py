"""A small demo identity provider that hands its users off to the bridge.

It plays the IdP's part so a newcomer can click through enrollment, a TOTP login and a
recovery-code login with rotation: a password check for a few demo users, then the
hand-off through :mod:`stepup_handoff`, the same client any Python IdP would use.
"""

from __future__ import annotations

import secrets

from flask import Flask, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFProtect

from stepup_handoff import HandoffClient, HandoffError, PendingHandoff

#: Demo users: stable id (the bridge's ``sub``) → (username, password).
DEMO_USERS = {
    "u-1001": ("alice", "alice-demo"),
    "u-1002": ("bob", "bob-demo"),
    "u-1003": ("carol", "carol-demo"),
}

#: Sign-ins started and not yet back that the demo remembers.
MAX_PENDING = 1000


def create_demo_idp(bridge_issuer: str, client_id: str, client_secret: str,
                    public_url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_bytes(32), SESSION_COOKIE_NAME="demo_idp",
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True)
    CSRFProtect(app)
    handoff = HandoffClient(bridge_issuer, client_id, client_secret=client_secret)
    callback = f"{public_url}/callback"
    # Pending hand-offs stay on the server, as docs/handoff-client.md asks of an IdP: the
    # cookie holds only a random key, and popping it here makes each one single use.
    pending_handoffs: dict[str, dict] = {}

    @app.get("/")
    def home():
        return render_template("demo_home.html", user=session.get("user"),
                               users=DEMO_USERS.values(), result=session.get("result"))

    @app.post("/login")
    def login():
        username = request.form.get("username", "").strip().lower()
        password = request.form.get("password", "")
        match = [uid for uid, (name, pw) in DEMO_USERS.items()
                 if name == username and secrets.compare_digest(pw, password)]
        if not match:
            return render_template("demo_home.html", users=DEMO_USERS.values(),
                                   error="Wrong username or password."), 401
        try:
            pending = handoff.start(match[0], callback, preferred_username=username)
        except HandoffError as e:
            return render_template("demo_home.html", users=DEMO_USERS.values(),
                                   error=f"The step-up service refused the hand-off ({e.error})."
                                   ), 502
        session.clear()
        session["pending"] = key = secrets.token_urlsafe(16)
        pending_handoffs[key] = pending.to_dict()
        while len(pending_handoffs) > MAX_PENDING:  # the oldest, abandoned sign-ins go first
            pending_handoffs.pop(next(iter(pending_handoffs)))
        return redirect(pending.authorize_url, 303)

    @app.get("/callback")
    def finish():
        data = pending_handoffs.pop(session.pop("pending", ""), None)
        if data is None:
            return redirect(url_for("home"))
        try:
            result = handoff.finish(PendingHandoff.from_dict(data), request.args)
        except HandoffError as e:
            return render_template("demo_home.html", users=DEMO_USERS.values(),
                                   error=f"Second factor not completed: {e.description or e.error}"
                                   ), 403
        session["user"] = DEMO_USERS[result.subject][0]
        session["result"] = {"sub": result.subject, "acr": result.acr, "amr": list(result.amr),
                             "auth_time": result.auth_time}
        return redirect(url_for("home"), 303)

    @app.post("/logout")
    def logout():
        session.clear()
        return redirect(url_for("home"), 303)

    return app
