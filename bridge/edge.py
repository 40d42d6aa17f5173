"""The edge: what arrives malformed from the network gets a clear 4xx, and nothing gets a bare
500. Every answer, even the last-resort one, goes through Flask, so it is logged as one JSON
line (``logs.py``); the security headers go on every answer below Flask (``security.py``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, render_template, request, send_file
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    NotFound,
    RequestEntityTooLarge,
)
from werkzeug.security import safe_join

from .admin import views as admin_views
from .oidc import endpoints as oidc_endpoints

log = logging.getLogger("stepup")


class GuardedInput:
    """``wsgi.input`` whose read errors are answered 400. A malformed chunked body (bad chunk
    size, extension or trailer) raises the server's own parse error while Flask reads the
    form, which is no HTTP error and would end as a 500.

    With ``limit`` (a body of unknown length: chunked), a body longer than ``limit`` is
    answered 413. werkzeug reads such a stream only up to ``MAX_CONTENT_LENGTH`` and stops
    there without looking further, so the form would be parsed cut short, its last
    parameters silently gone; this looks one byte further once the limit is reached."""

    def __init__(self, stream: Any, limit: int | None = None):
        self._stream = stream
        self._left = limit

    def read(self, *args: Any) -> bytes:
        return self._counted(self._guard(self._stream.read, *args))

    def readline(self, *args: Any) -> bytes:
        return self._counted(self._guard(self._stream.readline, *args))

    def readlines(self, *args: Any) -> list[bytes]:
        return [self._counted(line) for line in self._guard(self._stream.readlines, *args)]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _counted(self, data: bytes) -> bytes:
        if self._left is not None:
            self._left -= len(data)
            if self._left <= 0 and self._guard(self._stream.read, 1):
                raise RequestEntityTooLarge()
        return data

    @staticmethod
    def _guard(read: Callable[..., Any], *args: Any) -> Any:
        try:
            return read(*args)
        except HTTPException:
            raise
        except Exception as error:
            raise BadRequest("The request body is malformed.") from error


def _guard_request(wsgi_app: Callable, limit: int | None) -> Callable:
    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        address = environ.get("REMOTE_ADDR", "")
        if address.startswith("::ffff:") and "." in address:
            # An IPv4 client of a dual-stack socket (or proxy): one spelling of its address,
            # so its per-IP window, its audit lines and `stepup ip unblock` agree.
            environ["REMOTE_ADDR"] = address[7:]
        query = environ.get("QUERY_STRING", "")
        if not query.isascii():
            # Raw bytes a request line should have percent-encoded (RFC 3986 §2.1; gunicorn
            # refuses them, other servers pass them on): werkzeug's query parser, which every
            # page reads for its language, fails on one that is not UTF-8, and the error page
            # with it. Read as if encoded, as a browser sends them; a bad value is then refused
            # as any other. (WSGI strings are bytes decoded as latin-1: one char, one byte.)
            environ["QUERY_STRING"] = "".join(
                c if c.isascii() else f"%{ord(c):02X}" for c in query)
        if "wsgi.input" in environ:
            # A declared length werkzeug checks against the limit before reading.
            unknown = not environ.get("CONTENT_LENGTH")
            environ["wsgi.input"] = GuardedInput(environ["wsgi.input"],
                                                 limit if unknown else None)
        return wsgi_app(environ, start_response)

    return app


def init_app(app: Flask) -> None:
    app.wsgi_app = _guard_request(  # type: ignore[method-assign]
        app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])
    app.register_error_handler(InternalServerError, _server_error)

    static = StaticFiles(app.static_folder or "")
    app.view_functions["static"] = static.answer

    @app.template_global()
    def static_url(filename: str) -> str:
        # Not url_for: a Host header werkzeug refuses leaves no URL adapter, and the error
        # page for that request must still render.
        return (f"{request.script_root}{app.static_url_path}/{filename}"
                f"?v={static.version(filename)}")

    @app.template_global()
    def form_keys() -> Markup:
        """The hidden fields of every form: its CSRF token, and the language of the page, so
        that a post the sign-in no longer knows (the page expired, the sign-in ended) is
        answered in the language the user was reading, not the browser's. The same for every
        form of a page: made once."""
        if (keys := g.get("stepup_form_keys")) is None:
            keys = g.stepup_form_keys = Markup(
                '<input type="hidden" name="csrf_token" value="%s">'
                '<input type="hidden" name="lang" value="%s">') % (
                generate_csrf(), get_locale().language)
        return keys


class StaticFiles:
    """The stylesheet and script, named in pages by their content's digest (``?v=``) and then
    kept by the browser: answered with ``no-cache`` (Flask's default), every page cost two
    conditional requests, doubling a step-up's browser requests. Only the URL naming what is
    served now is kept, for a year (RFC 9111's usual "never expires") and ``immutable``
    (RFC 8246: a reload does not ask again). Any other version or none is revalidated each
    time: a page from a node of another release during a rolling upgrade, or files replaced
    under a running node, never leave a browser keeping a file under a URL naming other
    content. The digest is the ETag too, so a revalidation never confirms other content
    (werkzeug's ETag is the file's time and size)."""

    MAX_AGE = 365 * 24 * 3600

    def __init__(self, folder: str):
        self.folder = folder
        self._versions: dict[str, str] = {}  # what pages name, from each file's first read

    def version(self, filename: str) -> str:
        if (found := self._versions.get(filename)) is None:
            found = self._versions[filename] = _digest(self._read(filename))
        return found

    def answer(self, filename: str) -> Response:
        """The static route's view: the bytes whose digest is checked are the bytes sent."""
        body = self._read(filename)
        digest = _digest(body)
        kept = request.args.get("v") == digest
        response = send_file(io.BytesIO(body), download_name=filename, etag=digest,
                             max_age=self.MAX_AGE if kept else None, conditional=True)
        if kept:
            response.cache_control.immutable = True
        return response

    def _read(self, filename: str) -> bytes:
        path = safe_join(self.folder, filename)
        if path is None or not os.path.isfile(path):
            raise NotFound()
        return Path(path).read_bytes()


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


def for_programs(path: str) -> bool:
    """The back channel and the help-desk API: their callers are programs, so every error
    there is JSON (``{"error", "error_description"}``); elsewhere a browser gets a page."""
    return oidc_endpoints.owns(path) or admin_views.owns(path)


def server_error_json() -> Response:
    """OAuth JSON for a failure of the server's own (RFC 6749 §5.2 has no code for it; authlib
    and others answer ``server_error``)."""
    return Response('{"error": "server_error", "error_description": '
                    '"The server could not answer this request."}',
                    500, mimetype="application/json")


def _server_error(error: InternalServerError) -> Response:
    """A bug, not the user's fault: a generic page (or OAuth JSON), never a traceback. Flask
    has already logged the exception; the formatter keeps that to one line."""
    try:
        if for_programs(request.path):
            response = server_error_json()
        else:
            response = Response(render_template(
                "message.html", title=_("Something went wrong"),
                text=_("Nothing was changed. Go back to your sign-in page and start again.")), 500)
    except Exception:  # the page itself failed: still an answer with headers, not gunicorn's
        log.exception("error page failed")
        response = Response("Something went wrong. Go back to your sign-in page and start "
                            "again.\n", 500, mimetype="text/plain")
    return response
