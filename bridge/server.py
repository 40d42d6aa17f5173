"""gunicorn behind ``stepup serve``: the app is built once in the master and forked."""

from __future__ import annotations

import errno
import gc
import logging
import os
import queue
import re
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any

from flask import Flask
from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from .logs import JsonFormatter, loggable_path


class _Gunicorn(BaseApplication):
    def __init__(self, app: Flask, options: dict):
        self.application, self.options = app, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


class JsonLogger(glogging.Logger):
    """gunicorn's own lines (start-up, worker trouble, the access log) as one JSON object per
    line, like the bridge's: a log pipeline reads one format, and a traceback cannot spread
    over several lines."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
        for handler in self.access_log.handlers:
            handler.setFormatter(_AccessFormatter())
            # With the bridge's lines, on stderr: stdout has the start-up banner, no JSON.
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)
        self.error_log.addFilter(_no_request_targets)

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
              ) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["U"] = loggable_path(atoms["U"])
        return atoms


class _AccessFormatter(JsonFormatter):
    """The access line's parts as fields, and the request id the bridge answered with: gunicorn
    writes the line after the request's context has gone, so this is what joins it to the
    bridge's own lines of the same request."""

    def fields(self, record: logging.LogRecord) -> dict:
        atoms = record.args if isinstance(record.args, Mapping) else {}
        found = {"method": atoms.get("m"), "path": atoms.get("U"),
                 "status": _number(atoms.get("s"), int), "bytes": _number(atoms.get("B"), int),
                 "seconds": _number(atoms.get("L"), float),
                 "request_id": atoms.get("{x-request-id}o")}
        return {name: value for name, value in found.items() if value not in (None, "-")}


def _number(value: Any, kind: type) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def _no_request_targets(record: logging.LogRecord) -> bool:
    """gunicorn quotes what it could not handle: the request line it failed to parse, or the
    URI of a request that failed. Their query strings may carry an authorization code or a
    request_uri, so only the kind of error and the path reach the log."""
    if not isinstance(record.msg, str):
        return True
    if record.msg.startswith("Invalid request from ip="):
        where, _, error = record.msg.partition(": ")
        record.msg = f"{where}: {error.split(':', 1)[0]}"  # "Invalid HTTP request line"
    elif record.msg.startswith("Error handling request") and record.args:
        record.args = tuple(loggable_path(arg) if isinstance(arg, str) else arg
                            for arg in record.args)
    return True


#: A request target inside a message: an absolute URL or a path, up to a space or a quote.
_TARGET = re.compile(r"""(?:https?://|/)[^\s'"]*""")


def quiet_dev_server_log() -> None:
    """The development server (``stepup demo``) logs only warnings and errors, and its errors
    quote the request line it could not parse ("Bad request syntax ('GET /authorize?…')"):
    every target in them is cut as :func:`loggable_path` cuts the access log's."""
    logger = logging.getLogger("werkzeug")
    logger.setLevel(logging.WARNING)  # its request log would show every query string
    logger.addFilter(_dev_server_targets)


def _dev_server_targets(record: logging.LogRecord) -> bool:
    record.args = tuple(_TARGET.sub(lambda m: loggable_path(m.group()) or "", arg)
                        if isinstance(arg, str) else arg for arg in record.args or ())
    return True


def _pre_fork(server, worker) -> None:
    # The app was built in the master: move its objects out of the collector's reach. A
    # collection writes to every object it walks, which copies the page it sits on into the
    # worker; frozen, the app's pages stay shared with the master (about 10 MiB less memory of
    # its own per worker), and a full collection walks 9,000 objects instead of 111,000.
    gc.collect()  # what is garbage now is not kept for ever
    gc.freeze()


#: What the master sends a worker to stop it.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def _post_fork(server, worker) -> None:
    # A stop sent between the fork and the worker's own signal handlers (gunicorn installs
    # them in init_process) met the master's handler, copied into this process, which only
    # queues it: the worker served on until the graceful timeout's SIGKILL, 30 s (a
    # `systemctl stop` just as a worker was booting). Kept until the worker can act on it.
    def stop_early(signum, frame) -> None:
        worker.stop_early = True

    worker.stop_early = False
    for signum in _STOP_SIGNALS:
        signal.signal(signum, stop_early)
    while True:  # what already came: the master's queue, as copied into this process
        try:
            if server.SIG_QUEUE.get_nowait() in _STOP_SIGNALS:
                worker.stop_early = True
        except queue.Empty:
            break
    # Database connections must not be shared across fork: each worker opens its own.
    if bridge := worker.app.application.extensions.get("stepup"):
        bridge.store.engine.dispose(close=False)


def _post_worker_init(worker) -> None:
    if getattr(worker, "stop_early", False):
        worker.alive = False  # its run loop ends at once; worker_exit runs as on any stop
        return
    # One sender thread per worker (threads do not survive the fork, so not in the master);
    # the database hands each event to one of them (bridge.notify).
    bridge = worker.app.application.extensions.get("stepup")  # absent: bench's trivial app
    if bridge and bridge.sender.configured:
        bridge.sender.start()


#: Seconds a stopping worker waits for its sender's delivery under way (gunicorn's graceful
#: timeout, 30 s, bounds the whole exit).
SENDER_GRACE = 10


def _worker_exit(server, worker) -> None:
    # A worker stopping (a restart, a deploy) starts no new delivery and lets the one under
    # way finish (bounded): one cut off half-way would be sent again by another sender once
    # its claim lapses. gunicorn also calls this in the master for a worker already gone: a
    # stop there would be inherited by every worker forked after it.
    if worker.pid != os.getpid():
        return
    if bridge := worker.app.application.extensions.get("stepup"):
        bridge.sender.stop(wait=SENDER_GRACE)


def _child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def cannot_listen(host: str, port: int, options: str = "--") -> str | None:
    """Why gunicorn could not listen on ``host:port`` (taken, not this machine's, a privileged
    port), None if it can: gunicorn would retry a taken port for five seconds and end in its
    own log lines. Bound as gunicorn binds (SO_REUSEADDR), then let go. The hints name the
    options ``{options}host`` and ``{options}port``."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        return (f"no such host ({getattr(e, 'strerror', None) or e}; choose one with "
                f"{options}host)")
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            hint = _LISTEN_HINTS.get(e.errno, "choose another with {o}host or {o}port")
            return f"{e.strerror or e} ({hint.format(o=options)})"
    return None


#: What to do about each reason a port cannot be listened on.
_LISTEN_HINTS = {errno.EADDRINUSE: "another server there? choose a port with {o}port",
                 errno.EADDRNOTAVAIL: "not an address of this host: choose one with {o}host",
                 errno.EACCES: "a port below 1024 needs privileges: choose another with {o}port"}


def listen_address(host: str, port: int) -> str:
    """``host:port`` as gunicorn's ``bind`` and a URL take it: an IPv6 address in brackets
    (``::1:8080`` is no address to either)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_gunicorn(app: Flask, host: str, port: int, workers: int, timeout: int,
                 metrics: tuple[str, int] | None = None) -> None:
    """Every gunicorn setting of ``stepup serve`` (the benchmark serves its Flask baseline
    through this too, so both run under exactly the same settings); ``metrics``: a listener
    of its own for ``/metrics`` and the probes (:func:`ops.listen_for_monitoring`)."""
    bind = [listen_address(host, port)]
    if metrics is not None:
        from .ops import listen_for_monitoring

        listen_for_monitoring(app, metrics[1])
        bind.append(listen_address(*metrics))
    _Gunicorn(app, {
        "bind": bind,
        "workers": workers,
        "timeout": timeout,
        "preload_app": True,
        "pre_fork": _pre_fork,
        "post_fork": _post_fork,
        "post_worker_init": _post_worker_init,
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
        # Forwarding headers (X-Forwarded-Proto, SCRIPT_NAME …) count only through the app's
        # ProxyFix, for STEPUP_TRUSTED_PROXIES hops; gunicorn would trust any local peer.
        "forwarded_allow_ips": "",
        # gunicorn 25+ opens a control socket by default (worker count, reload, shutdown for
        # whoever can reach $XDG_RUNTIME_DIR/gunicorn.ctl), one path for every instance on the
        # host: the bridge is managed by signals and its service manager instead.
        "control_socket_disable": True,
        "accesslog": "-",
        "logger_class": JsonLogger,
        # The access log must never show a query string: /authorize carries request_uri.
        "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss',
    }).run()
