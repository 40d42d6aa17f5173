"""A small demo identity provider that hands its users off to the bridge.

It plays the IdP's part so a newcomer can click through enrollment, a TOTP login and a
recovery-code login with rotation: a password check for a few demo users, then the
hand-off through :mod:`stepup_handoff`, the same client any Python IdP would use.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

from flask import Flask, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFProtect

from stepup_handoff import HandoffClient, HandoffError, PendingHandoff, TokenError

from ..security import HEADERS, with_headers

#: Demo users: stable id (the bridge's ``sub``) → (username, password).
DEMO_USERS = {
    "u-1001": ("alice", "alice-demo"),
    "u-1002": ("bob", "bob-demo"),
    "u-1003": ("carol", "carol-demo"),
}

#: Sign-ins started and not yet back that the demo remembers.
MAX_PENDING = 1000
#: Of those, the ones one browser may have open at once (a sign-in per tab); older ones go.
MAX_PENDING_PER_BROWSER = 5

#: Shown for a callback no open sign-in of this browser is waiting for.
GONE = "This sign-in was finished, replaced or has expired; sign in again."
#: Shown when the bridge refuses the code: it is good for a minute (STEPUP_CODE_TTL).
TOO_LATE = "This sign-in took too long; sign in again."


def create_demo_idp(bridge_issuer: str, client_id: str, client_secret: str,
                    public_url: str, clock: Callable[[], float] = time.time) -> Flask:
    """``clock``: the hand-off client's, the bridge's own in tests (its checks of ``iat`` and
    ``auth_time`` against the push allow 30 s, and a test's clock may be that far behind)."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_bytes(32), SESSION_COOKIE_NAME="demo_idp",
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True)
    CSRFProtect(app)
    # The bridge's own headers (CSP, framing, no-store): a newcomer's first look at what an IdP
    # in front of the bridge should send, and its pages hold a sign-in's state too.
    app.wsgi_app = with_headers(app.wsgi_app, HEADERS)  # type: ignore[method-assign]
    handoff = HandoffClient(bridge_issuer, client_id, client_secret=client_secret, clock=clock)
    callback = f"{public_url}/callback"
    # Pending hand-offs stay on the server, as docs/handoff-client.md asks of an IdP: the
    # cookie holds only random keys (one per open sign-in: tabs), and popping one here makes
    # each single use.
    pending_handoffs: dict[str, dict] = {}
    lock = threading.Lock()  # the server is threaded

    def open_keys() -> list[str]:
        """This browser's open sign-ins, oldest first: those the server still holds."""
        keys = session.get("pending")
        return [k for k in keys if k in pending_handoffs] if isinstance(keys, list) else []

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
        # A new sign-in signs the user out here, but leaves the sign-ins of other tabs open:
        # each callback finds its own by its state.
        session.pop("user", None)
        session.pop("result", None)
        key = secrets.token_urlsafe(16)
        with lock:
            pending_handoffs[key] = pending.to_dict()
            keys = [*open_keys(), key]
            for old in keys[:-MAX_PENDING_PER_BROWSER]:
                pending_handoffs.pop(old, None)
            while len(pending_handoffs) > MAX_PENDING:  # the oldest, abandoned sign-ins first
                pending_handoffs.pop(next(iter(pending_handoffs)))
            session["pending"] = keys[-MAX_PENDING_PER_BROWSER:]
        return redirect(pending.authorize_url, 303)

    @app.get("/callback")
    def finish():
        # Only the sign-in this callback's state belongs to is used up: a forged or stale
        # callback leaves the others open. Compared in constant time, as the client does.
        state = request.args.get("state", "").encode()
        with lock:
            keys = open_keys()
            key = next((k for k in keys if secrets.compare_digest(
                pending_handoffs[k]["state"].encode(), state)), None)
            data = pending_handoffs.pop(key) if key else None
            session["pending"] = [k for k in keys if k != key]
        if data is None:
            if session.get("user"):  # back to a callback already used: still signed in
                return redirect(url_for("home"))
            return render_template("demo_home.html", users=DEMO_USERS.values(), error=GONE), 400
        try:
            result = handoff.finish(PendingHandoff.from_dict(data), request.args)
        except HandoffError as e:
            # invalid_grant: the code ran out; the bridge's words for it are authlib's,
            # "Invalid 'code' in request.", which tell a user nothing.
            late = isinstance(e, TokenError) and e.error == "invalid_grant"
            message = TOO_LATE if late else \
                f"Second factor not completed: {e.description or e.error}"
            return render_template("demo_home.html", users=DEMO_USERS.values(),
                                   error=message), 403
        session["user"] = DEMO_USERS[result.subject][0]
        session["result"] = {"sub": result.subject, "acr": result.acr, "amr": list(result.amr),
                             "auth_time": result.auth_time}
        return redirect(url_for("home"), 303)

    @app.post("/logout")
    def logout():
        session.clear()
        return redirect(url_for("home"), 303)

    return app
