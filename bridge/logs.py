"""Structured JSON logs, one object per line, with the request id. Never a secret: the
bridge logs event names and identifiers only, and the access log omits query strings."""

from __future__ import annotations

import json
import logging
import sys
import time

from flask import g, has_request_context

#: Paths whose last segment is a capability: the "this wasn't me" link's signed token, which
#: locks the user's factor for whoever posts it.
_CAPABILITY_PATHS = ("/not-me/",)


def loggable_path(path: str | None) -> str | None:
    """The path as the logs may show it: no query string, no capability token."""
    if path is None:
        return None
    path = path.split("?", 1)[0]
    for prefix in _CAPABILITY_PATHS:  # "in": gunicorn quotes absolute-form targets whole
        head, found, _token = path.partition(prefix)
        if found:
            return head + found + "<token>"
    return path


def hide_outbound_targets() -> None:
    """urllib3 logs the target of each request the bridge makes (a webhook, a client's
    ``jwks_uri``) at DEBUG, and a retried one at WARNING: a path or query that may be the
    token itself (hooks of the Slack kind). A filter, not a level, as for authlib's logs: it
    holds when someone debugging turns the level up. Host and port stay."""
    for name in _URLLIB3_LOGGERS:
        logging.getLogger(name).addFilter(_no_target)


#: Each urllib3 logger that names a request's URL or target (a filter on a logger does not
#: see its children's records, so each is named).
_URLLIB3_LOGGERS = ("urllib3.connection", "urllib3.connectionpool", "urllib3.poolmanager",
                    "urllib3.response", "urllib3.util.retry")


def _no_target(record: logging.LogRecord) -> bool:
    """A target ("/path?query") or a URL ("http://host/path") argument becomes ``<target>``;
    a protocol version ("HTTP/1.1") stays."""
    if isinstance(record.args, tuple):
        record.args = tuple(
            "<target>" if isinstance(arg, str) and (arg.startswith("/") or "://" in arg)
            else arg for arg in record.args)
    return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context() and "request_id" in g:
            entry["request_id"] = g.request_id
        if audit := getattr(record, "audit", None):
            entry["audit"] = audit
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info).splitlines()[-1]
        entry.update(self.fields(record))
        return json.dumps(entry, default=str)

    def fields(self, record: logging.LogRecord) -> dict:
        """More of the record's parts as fields of their own."""
        return {}


class StderrHandler(logging.StreamHandler):
    """JSON lines to whatever ``sys.stderr`` is when a record comes (a redirected shell, a
    test's capture), not the one there when the handler was made."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def audit_to_stderr() -> None:
    """A command's audit events as JSON lines on stderr, as the server logs them: a log
    pipeline sees the help desk's reset from the shell as it sees one from the API."""
    audit = logging.getLogger("stepup.audit")
    if not any(isinstance(h, StderrHandler) for h in audit.handlers):
        audit.addHandler(StderrHandler())
    audit.setLevel(logging.INFO)


def configure() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # "Context impl …" on every start
