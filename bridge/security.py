"""Browser-facing protections applied to every response (OWASP ASVS 5.0 V3, V14).

CSP allows no inline script (copy-to-clipboard is a static file) and no framing. It sets no
``form-action``: Chromium applies that directive to the whole redirect chain after a post —
bridge → IdP → *its* relying party — whose last hop the bridge cannot know, so any value
would break the return to the relying party (seen with Keycloak). Every form posts to the
bridge itself and all output is auto-escaped, so there is no injected form for it to stop.
"""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from .settings import Settings

csrf = CSRFProtect()

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; base-uri 'none'")
#: On every answer (the benchmark's bare-Flask shape sends them too).
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def init_app(app: Flask, settings: Settings) -> None:
    csrf.init_app(app)

    @app.after_request
    def _headers(response):
        response.headers.update(HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")
        if settings.behind_tls:
            response.headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        return response
