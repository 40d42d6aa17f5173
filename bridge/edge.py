"""The edge: what arrives malformed from the network gets a clear 4xx, and nothing gets a bare
500. Every answer, even the last-resort one, goes through Flask, so it is logged as one JSON
line (``logs.py``); the security headers go on every answer below Flask (``security.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask, Response, render_template, request
from flask_babel import gettext as _
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError

log = logging.getLogger("stepup")


class GuardedInput:
    """``wsgi.input`` whose read errors are answered 400. A malformed chunked body (bad chunk
    size, extension or trailer) raises the server's own parse error while Flask reads the
    form, which is no HTTP error and would end as a 500."""

    def __init__(self, stream: Any):
        self._stream = stream

    def read(self, *args: Any) -> bytes:
        return self._guard(self._stream.read, *args)

    def readline(self, *args: Any) -> bytes:
        return self._guard(self._stream.readline, *args)

    def readlines(self, *args: Any) -> list[bytes]:
        return self._guard(self._stream.readlines, *args)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    @staticmethod
    def _guard(read: Callable[..., Any], *args: Any) -> Any:
        try:
            return read(*args)
        except HTTPException:
            raise
        except Exception as error:
            raise BadRequest("The request body is malformed.") from error


def _guard_input(wsgi_app: Callable) -> Callable:
    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if "wsgi.input" in environ:
            environ["wsgi.input"] = GuardedInput(environ["wsgi.input"])
        return wsgi_app(environ, start_response)

    return app


def init_app(app: Flask) -> None:
    app.wsgi_app = _guard_input(app.wsgi_app)  # type: ignore[method-assign]
    app.register_error_handler(InternalServerError, _server_error)

    @app.template_global()
    def static_url(filename: str) -> str:
        # Not url_for: a Host header werkzeug refuses leaves no URL adapter, and the error
        # page for that request must still render.
        return f"{request.script_root}{app.static_url_path}/{filename}"


def _server_error(error: InternalServerError) -> Response:
    """A bug, not the user's fault: a generic page (or OAuth JSON), never a traceback. Flask
    has already logged the exception; the formatter keeps that to one line."""
    try:
        if request.blueprint == "oidc":
            response = Response('{"error": "server_error", "error_description": '
                                '"The server could not answer this request."}',
                                500, mimetype="application/json")
        else:
            response = Response(render_template(
                "message.html", title=_("Something went wrong"),
                text=_("Nothing was changed. Go back to your sign-in page and start again.")), 500)
    except Exception:  # the page itself failed: still an answer with headers, not gunicorn's
        log.exception("error page failed")
        response = Response("Something went wrong. Go back to your sign-in page and start "
                            "again.\n", 500, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    return response
