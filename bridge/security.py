"""Browser-facing protections applied to every response (OWASP ASVS 5.0 V3, V14).

CSP allows no inline script (copy-to-clipboard is a static file), no framing, and form posts
only to the bridge itself and — because Chromium applies ``form-action`` to the redirect
after a post — to the origin of the IdP the current flow returns to.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, g
from flask_wtf.csrf import CSRFProtect

from .settings import Settings

csrf = CSRFProtect()


def allow_form_target(redirect_uri: str) -> None:
    """Let this response's forms lead (via a redirect) to the IdP's origin."""
    parts = urlsplit(redirect_uri)
    g.form_targets = [f"{parts.scheme}://{parts.netloc}"]


def init_app(app: Flask, settings: Settings) -> None:
    csrf.init_app(app)

    @app.after_request
    def _headers(response):
        targets = " ".join(["'self'", *g.get("form_targets", [])])
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"form-action {targets}; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        if settings.behind_tls:
            response.headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        return response
