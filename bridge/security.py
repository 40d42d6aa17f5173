"""Browser-facing protections applied to every response (OWASP ASVS 5.0 V3, V14).

CSP allows no inline script (copy-to-clipboard is a static file) and no framing; scripts may
fetch from the bridge itself ("More time" without leaving the page). It sets no
``form-action``: Chromium applies that directive to the whole redirect chain after a post —
bridge → IdP → *its* relying party — whose last hop the bridge cannot know, so any value
would break the return to the relying party (seen with Keycloak). Every form posts to the
bridge itself and all output is auto-escaped, so there is no injected form for it to stop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Flask, current_app, request
from flask_wtf.csrf import CSRFProtect

from .settings import Settings, is_local_host

csrf = CSRFProtect()

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
#: On every answer (the benchmark's bare-Flask shape sends them too).
#: Cross-Origin-Opener-Policy: a page that opened the bridge's in a window of its own gets no
#: handle on it (ASVS 5.0 V3.4.8).
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cross-Origin-Opener-Policy": "same-origin"}
_NO_STORE = ("Cache-Control", "no-store")  # unless the answer sets its own (JWKS, static files)


def init_app(app: Flask, settings: Settings) -> None:
    csrf.init_app(app)
    headers = dict(HEADERS)
    if settings.behind_tls:
        headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    app.wsgi_app = with_headers(app.wsgi_app, headers)  # type: ignore[method-assign]


def with_headers(wsgi_app: Callable, headers: dict[str, str]) -> Callable:
    """Send ``headers`` (their values win) and, unless the answer says otherwise,
    ``Cache-Control: no-store`` on every answer. Added to the WSGI header list rather than in an
    after-request hook: werkzeug's ``Headers.set`` scans and validates each one, about 0.1 M
    instructions an answer (callgrind), an eighth of a trivial Flask request."""
    added = list(headers.items())
    names = {name.lower() for name in headers}

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start(status: str, response_headers: list[tuple[str, str]], exc_info=None):
            kept = [h for h in response_headers if h[0].lower() not in names]
            if not any(h[0].lower() == "cache-control" for h in kept):
                kept.append(_NO_STORE)
            return start_response(status, kept + added, exc_info)

        return wsgi_app(environ, start)

    return app


#: Headers a forwarding proxy adds (RFC 7239, the de-facto X-Forwarded-* ones, nginx's usual
#: X-Real-IP, and Via, RFC 9110 §7.6.3).
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
                      "X-Real-IP", "Via")
#: The same as WSGI names them: looked up in the environ, on every /par and /token, and by
#: the proxy check on requests that name no client (bridge.app).
FORWARDING_ENVIRON = tuple(f"HTTP_{h.upper().replace('-', '_')}" for h in FORWARDING_HEADERS)


def client_ip() -> str:
    """The caller's address, after ``STEPUP_TRUSTED_PROXIES`` (``bridge.app`` names it
    "unknown" where proxies named nobody): what the per-IP windows count and the audit keeps."""
    return request.remote_addr or "unknown"


def secure_transport() -> bool:
    """https, or plain http between two processes of this machine (RFC 6749 §2.3.1, §3.2;
    RFC 6750 §5.3 for bearer tokens). The connection's peer must be loopback, after
    ``STEPUP_TRUSTED_PROXIES`` the user's address the proxies name: authlib exempts a loopback
    *URL*, whose host is the request's Host header, which anyone can name."""
    if request.is_secure:
        return True
    if not current_app.extensions["stepup"].settings.trusted_proxies and any(
            key in request.environ for key in FORWARDING_ENVIRON):
        # Relayed by a proxy on this machine that the bridge was not told of (an nginx in
        # front, STEPUP_TRUSTED_PROXIES left at 0): the caller is elsewhere, over who knows
        # what, and every user would share the proxy's address for the per-IP limit.
        return False
    return is_local_host(request.remote_addr)
