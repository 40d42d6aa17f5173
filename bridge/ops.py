"""Operability: health, readiness, Prometheus metrics, request ids, and the database-outage answer.

Metrics of challenges, lockouts and rotations are counted from the audit events (a logging
handler on ``stepup.audit``), so the domain code knows nothing about Prometheus. Under
gunicorn, ``stepup serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` so every worker's numbers add up.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
import uuid
from importlib.metadata import PackageNotFoundError, version

import sqlalchemy as sa
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    render_template,
    request,
)
from flask_babel import gettext as _
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from .edge import for_programs
from .oidc import endpoints as oidc_endpoints
from .secretbox import SecretBoxError
from .throttle import RedisIpLimiter

bp = Blueprint("ops", __name__)
log = logging.getLogger("stepup")

CHALLENGES = Counter("stepup_challenges_total", "Factor checks by factor and outcome.",
                     ["factor", "outcome"])
LOCKOUTS = Counter("stepup_lockouts_total", "Users locked after too many failures.")
ROTATIONS = Counter("stepup_recovery_rotations_total", "Recovery codes replaced.")
ENROLLMENTS = Counter("stepup_enrollments_total", "New and replaced authenticators.", ["kind"])
PROTOCOL_ERRORS = Counter("stepup_protocol_errors_total", "OAuth errors answered.",
                          ["endpoint", "error"])
#: From 1 ms: a step-up's requests take 1-5 ms each (docs/operations.md, Sizing).
LATENCY = Histogram("stepup_request_seconds", "Request latency by endpoint.", ["endpoint"],
                    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                             1, 2.5, 5))
RESPONSES = Counter("stepup_responses_total", "Answers by endpoint and status class.",
                    ["endpoint", "status"])
DB_ERRORS = Counter("stepup_database_errors_total", "Requests failed by the database.")
#: The notified events no other metric counts: each one a thing to alert on.
USER_EVENTS = ("failure_burst", "not_me", "contact_changed", "helpdesk_unlock", "helpdesk_reset")
USER_EVENTS_TOTAL = Counter("stepup_user_events_total",
                            "Security events told to users, by kind (those counted nowhere else).",
                            ["event"])
IP_WINDOWS_CLOSED = Counter(
    "stepup_ip_windows_closed_total",
    "Times an address reached the limit of wrong codes (STEPUP_IP_LIMIT).")
CODES_REUSED = Counter(
    "stepup_codes_reused_total",
    "Authorization codes presented again after they were redeemed (a stolen code, or an IdP "
    "that retries).")
CLIENT_AUTH_CLOSED = Counter(
    "stepup_client_auth_windows_closed_total",
    "Times an address reached the limit of failed authentications for a client.")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
try:
    VERSION = version("stepup-bridge")
except PackageNotFoundError:  # a checkout run without installing it
    VERSION = "unknown"


class AuditMetrics(logging.Handler):
    """Counts audit events: challenges by factor/outcome, lockouts, rotations, enrollments."""

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "audit", {})
        name = event.get("event")
        if name in ("success", "failure", "replay"):
            CHALLENGES.labels(event.get("factor", "unknown"), name).inc()
        elif name == "recovery_code_used":
            CHALLENGES.labels("rc", "success").inc()
        elif name == "lockout":
            LOCKOUTS.inc()
        elif name == "rotation":
            ROTATIONS.inc()
        elif name in ("enrollment", "reenrollment"):
            ENROLLMENTS.labels(name).inc()
        elif name == "ip_window_closed":
            IP_WINDOWS_CLOSED.inc()
        elif name == "code_reused":
            CODES_REUSED.inc()
        elif name in USER_EVENTS:
            USER_EVENTS_TOTAL.labels(name).inc()


_audit_metrics = AuditMetrics()


def init_app(app: Flask) -> None:
    audit_log = logging.getLogger("stepup.audit")
    if _audit_metrics not in audit_log.handlers:
        audit_log.addHandler(_audit_metrics)
    audit_log.setLevel(logging.INFO)
    app.register_blueprint(bp)
    app.register_error_handler(sa.exc.OperationalError, _database_down)
    app.register_error_handler(sa.exc.InterfaceError, _database_down)

    @app.before_request
    def _start():
        g.started = time.perf_counter()
        incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex

    @app.after_request
    def _finish(response):
        rule = request.url_rule
        endpoint = rule.rule if rule else "unmatched"
        if "started" in g:
            _latency(endpoint).observe(time.perf_counter() - g.started)
        _responses(endpoint, response.status_code // 100).inc()
        if response.status_code >= 400 and oidc_endpoints.owns(request.path) and \
                response.is_json:
            error = (response.get_json(silent=True) or {}).get("error", "unknown")
            PROTOCOL_ERRORS.labels(endpoint, str(error)[:40]).inc()
        # add, not set: nothing else names the header, and set scans the list first.
        response.headers.add("X-Request-ID", g.get("request_id", ""))
        return response


def start_at_zero(app: Flask) -> None:
    """Every known series from the start, at 0 (in the master, before the fork): one that
    first appears at 1 has no increase() to alert on, and the first replay, or the first 5xx
    of an endpoint after a start, would go unseen. Called once every route is registered."""
    for factor in ("otp", "rc"):
        for outcome in ("success", "failure", "replay"):
            CHALLENGES.labels(factor, outcome)
    CHALLENGES.labels("enrollment", "failure")  # a wrong setup code (a setup done: ENROLLMENTS)
    for kind in ("enrollment", "reenrollment"):
        ENROLLMENTS.labels(kind)
    for event in USER_EVENTS:
        USER_EVENTS_TOTAL.labels(event)
    for endpoint in sorted({rule.rule for rule in app.url_map.iter_rules()} | {"unmatched"}):
        for status_class in (4, 5):
            _responses(endpoint, status_class)


@functools.cache
def _latency(endpoint: str) -> Histogram:
    """The histogram of one endpoint (bounded: the app's rules and "unmatched"); prometheus'
    ``labels`` validates and locks on every call."""
    return LATENCY.labels(endpoint)


@functools.cache
def _responses(endpoint: str, status_class: int) -> Counter:
    return RESPONSES.labels(endpoint, f"{status_class}xx")


def _database_down(error: Exception):
    """The database went away: say "try again", never 500; the transaction rolled back."""
    DB_ERRORS.inc()
    # The driver's own first line (refused, authentication failed, too many connections): never
    # SQLAlchemy's text, which quotes the statement and its parameters.
    cause = str(getattr(error, "orig", None) or "").splitlines()[:1]
    log.error("database unavailable: %s%s", type(error).__name__,
              f": {cause[0][:200]}" if cause else "")
    if for_programs(request.path):
        response = jsonify(error="temporarily_unavailable",
                           error_description="The service is temporarily unavailable.")
    else:  # in the browser's language: the flow, which would name one, is out of reach
        response = current_app.make_response((render_template(
            "message.html", title=_("Please try again in a moment"),
            text=_("The sign-in service is briefly unavailable. Nothing was changed: go back "
                   "and try again.")), 503))
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response


@bp.get("/healthz")
def healthz():
    """The process is up (no dependencies checked)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready to serve: the database answers and signing keys are loaded (and how Redis is,
    when one is set: not a condition)."""
    bridge = current_app.extensions["stepup"]
    checks = {}
    try:
        bridge.store.ping()
        checks["database"] = "ok"
    except sa.exc.SQLAlchemyError as e:
        checks["database"] = f"unavailable ({type(e).__name__})"
    try:
        bridge.signing_keys.active("ES256")
        checks["signing_keys"] = "ok"
    except (LookupError, sa.exc.SQLAlchemyError):
        checks["signing_keys"] = "unavailable"
    except SecretBoxError as e:  # sealed with an encryption key this node lacks; the
        # requests that need the keys log it (probes come too often for a line each)
        checks["signing_keys"] = f"unreadable ({e})"
    ready = all(v == "ok" for v in checks.values())
    # Redis only holds the per-IP window, which falls back to the database: shown, so a wrong
    # STEPUP_REDIS_URL is seen, but the node stays ready.
    if isinstance(limiter := bridge.challenge.attempts.limiter, RedisIpLimiter):
        checks["redis"] = limiter.health()
    response = jsonify(status="ready" if ready else "not ready", checks=checks)
    response.status_code = 200 if ready else 503
    return response


#: What a metrics listener (``stepup serve --metrics-port``) answers: the metrics and the probes.
MONITORING_ENDPOINTS = frozenset({"ops.metrics", "ops.healthz", "ops.readyz"})


def listen_for_monitoring(app: Flask, port: int) -> None:
    """With a listener of its own for monitoring, ``/metrics`` is answered there alone, and
    that listener answers nothing else but the probes: the public port stops showing the
    telemetry however a proxy is set up, and the monitoring network reaches no sign-in page.

    Decided by the endpoint the URL routes to, so by every spelling werkzeug routes there
    (``//metrics``, ``/%2Fmetrics``); and by the listener the request came in on, which
    gunicorn names from the socket (``SERVER_PORT``), never from the request. First of the
    request's hooks: nothing else runs for a request refused here. Only nodes started so pay
    for the check."""
    monitoring = str(port)

    def on_its_listener() -> None:
        if request.environ.get("SERVER_PORT") == monitoring:
            if request.endpoint not in MONITORING_ENDPOINTS:
                abort(404)
        elif request.endpoint == "ops.metrics":
            abort(404)

    app.before_request_funcs.setdefault(None, []).insert(0, on_its_listener)


@bp.get("/metrics")
def metrics():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    state = CollectorRegistry()
    state.register(_State(current_app.extensions["stepup"]))
    return Response(generate_latest(registry) + generate_latest(state),
                    content_type=CONTENT_TYPE_LATEST)


class _State:
    """What a scrape reads when it is made, not from counters: the version, and the outbox's
    backlog (a notice channel down shows as a growing number, while the node is fine)."""

    def __init__(self, bridge):
        self.bridge = bridge

    def collect(self):
        build = GaugeMetricFamily("stepup_build_info", "The running version.",
                                  labels=["version"])
        build.add_metric([VERSION], 1)
        yield build
        if self.bridge.sender.configured:
            try:
                with self.bridge.store.autocommit() as tx:
                    pending = tx.count_pending_events()
            except (sa.exc.OperationalError, sa.exc.InterfaceError):
                return  # the database's own metric and /readyz say so; the counters still go
            yield GaugeMetricFamily("stepup_outbox_pending_events",
                                    "Events not yet delivered or given up.", value=pending)
