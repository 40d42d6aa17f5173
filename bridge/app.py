"""The application factory: settings → keys → storage → challenge → Flask blueprints."""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.middleware.proxy_fix import ProxyFix

from . import edge, security
from .challenge import Challenge, Policy
from .keyring import (
    CLOCK_SKEW,
    ServerSecrets,
    SigningKeys,
    load_checked_secrets,
    refuse_sealed_keys,
)
from .logs import hide_outbound_targets, loggable_path
from .notify.notme import NotMe
from .secretbox import SecretBoxError
from .settings import ConfigError, Settings, load_settings, settings_warnings
from .store import Store, Tx, create_engine, migrate
from .throttle import ClientAuthWindow, DatabaseIpLimiter, IpLimiter, RedisIpLimiter

if TYPE_CHECKING:
    from .notify.sender import Sender

#: Expired pushed requests, flows and codes are swept at most this often per process.
HOUSEKEEPING_INTERVAL = 60
#: Seconds a sign-in that ran out is kept, without its secrets, for its way back to the IdP
#: (a page used or reloaded after it ran out; with JavaScript the page itself shows the way
#: back when it runs out). The browser's session cookie lasts as long, or the page could not
#: be told from another browser's.
ENDED_FLOWS_KEPT = 3600


#: The session cookie's name; behind TLS with the ``__Host-`` prefix (RFC 6265bis §4.1.3.2),
#: which a browser keeps only from this very host, Secure, for the whole path: a sibling
#: subdomain (or a plain-http parent domain under a network attacker) cannot plant one with
#: ``Domain=`` or a longer ``Path`` that the browser would send first, breaking every sign-in.
SESSION_COOKIE = "stepup_session"


def session_cookie_name(behind_tls: bool) -> str:
    return f"__Host-{SESSION_COOKIE}" if behind_tls else SESSION_COOKIE


class CookieSessions(SecureCookieSessionInterface):
    """Flask builds the cookie's signing serializer on every request, cookie or not; its keys
    are fixed for the life of the process, so this one is built once. A request with no
    cookie at all (the IdP's back channel, a first visit) gets a new session without parsing
    the header Flask would look the cookie up in."""

    _serializer: URLSafeTimedSerializer | None = None

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        cookies = request.cookies if "HTTP_COOKIE" in request.environ else {}
        value = cookies.get(self.get_cookie_name(app))
        if not value and request.path != "/authorize":
            # The unprefixed one: a sign-in begun on a node of a release before the prefix (a
            # rolling upgrade) goes on, under the new name from its next change. Not to open a
            # sign-in, where it serves no upgrade and could be one a sibling host planted (its
            # binding and flows would be carried into the new cookie). For one release only.
            value = cookies.get(SESSION_COOKIE)
        if not value:
            return self.session_class()
        try:
            return self.session_class(serializer.loads(
                value, max_age=int(app.permanent_session_lifetime.total_seconds())))
        except BadSignature:
            return self.session_class()

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if self._serializer is None:
            self._serializer = super().get_signing_serializer(app)
        return self._serializer


@dataclass
class Bridge:
    """Everything one bridge process holds, built once at start-up (no per-request loading)."""

    settings: Settings
    store: Store
    secrets: ServerSecrets
    signing_keys: SigningKeys
    challenge: Challenge
    sender: Sender
    not_me: NotMe
    client_auth: ClientAuthWindow
    clock: Callable[[], float] = time.time
    oauth: Any = None
    _swept_at: float = field(default=0.0)

    def housekeeping(self, tx: Tx, now: float) -> None:
        if now - self._swept_at >= HOUSEKEEPING_INTERVAL:
            # Flows that ran out since this process's last sweep lose their secrets (not every
            # row kept, each time), once no node's clock can be behind enough to still use them.
            last, self._swept_at = self._swept_at, now
            tx.purge_expired(now, ip_failures_before=now - self.settings.ip_window,
                             events_before=now - self.settings.not_me_ttl,
                             unsent_before=None if self.sender.configured
                             else now - self.settings.notify_give_up,
                             flows_before=now - ENDED_FLOWS_KEPT,
                             ran_out=(last - CLOCK_SKEW, now - CLOCK_SKEW))


class _Flask(Flask):
    def log_exception(self, exc_info) -> None:
        # Flask's own line names request.path: a "this wasn't me" link's token would be logged.
        self.logger.error("Exception on %s [%s]", loggable_path(request.path), request.method,
                          exc_info=exc_info)


def _address_checked(wsgi_app: Callable, hops: int) -> Callable:
    """Behind ``hops`` trusted proxies: the client address X-Forwarded-For names at the
    trusted hop, as an IP address (read here, not by ProxyFix: its parser drops a whole header
    over an unclosed quote a client sent first, which nginx passes on, and left the proxy's own
    address in place of the client's). A port some proxies add (``198.51.100.7:50123``,
    ``[2001:db8::1]:443``) is taken off; anything else (a name, junk, a long string) becomes
    ``unknown``: never the address the per-IP limit counts or the audit records as sent (nor
    past its column on PostgreSQL), and never the proxy's own, which on this machine is
    loopback and would pass for a local program (``secure_transport``).

    The same holds for a request that came through a proxy (it carries a forwarding header)
    whose X-Forwarded-For names nobody at the trusted hop: missing, empty, or fewer entries
    than the proxies. Only a request with no forwarding header at all keeps its peer's
    address: a program that called this node directly."""
    warned = False

    def checked(environ: dict, start_response: Callable):
        nonlocal warned
        named = environ.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if len(named) >= hops and named[-hops].strip():
            environ["REMOTE_ADDR"] = _ip_address(named[-hops].strip())
        elif any(key in environ for key in security.FORWARDING_ENVIRON):
            environ["REMOTE_ADDR"] = "unknown"
            if not warned:
                # Every user would share one address in the per-IP limit and the audit, and
                # plain http would be refused to all: said once per worker.
                warned = True
                logging.getLogger("stepup").warning(
                    "a request came through the proxy without the client's address in "
                    "X-Forwarded-For (none, empty, or fewer than STEPUP_TRUSTED_PROXIES "
                    "entries): every such user counts as one unknown address in the per-IP "
                    "limit and the audit; have the proxy send X-Forwarded-For")
        return wsgi_app(environ, start_response)
    return checked


def _ip_address(forwarded: str) -> str:
    host, port = forwarded, ""
    if forwarded.startswith("[") and "]" in forwarded:  # [v6] or [v6]:port
        host, _, rest = forwarded[1:].partition("]")
        port = rest.removeprefix(":") if rest else ""
        if rest and (not rest.startswith(":") or not port):
            return "unknown"
    elif forwarded.count(":") == 1:  # v4:port
        host, port = forwarded.split(":")
        if not port:
            return "unknown"
    if port and not (port.isascii() and port.isdigit() and len(port) <= 5):
        return "unknown"
    if len(host) > 64:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "unknown"
    # An IPv4 client in IPv6 spelling is the IPv4 one, as a direct one is (bridge/edge.py).
    return str(getattr(address, "ipv4_mapped", None) or address)


def build_bridge(settings: Settings, clock: Callable[[], float] = time.time,
                 serving: bool = False) -> Bridge:
    """The bridge on ``settings``; ``serving``: for a node that answers sign-ins, which is
    refused what only commands can repair (TOTP secrets no listed key opens)."""
    # Imported here: it counts deliveries with prometheus_client, which must not be imported
    # before `stepup serve` sets PROMETHEUS_MULTIPROC_DIR (see bridge.cli).
    from .notify.sender import Sender

    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A request waits for SQLite's lock half its worker's time at most: then a 503 that says
    # try again, not a worker killed mid-request.
    engine = create_engine(settings.database, lock_wait=settings.timeout / 2)
    if settings.database_url:
        migrate.check(engine)  # a shared database is migrated deliberately: `stepup db upgrade`
    else:
        migrate.upgrade(engine)  # the embedded SQLite file needs no set-up
    store = Store(engine)
    secrets = load_checked_secrets(settings, store, clock(), serving)
    not_me = NotMe(store, secrets.secret_key, settings.not_me_ttl, settings.issuer, clock)
    policy = Policy(issuer=settings.issuer, acr=settings.acr,
                    lockout_limit=settings.lockout_limit, flow_ttl=settings.flow_ttl,
                    code_ttl=settings.code_ttl, totp_issuer=settings.totp_issuer,
                    totp_search_window=settings.totp_search_window,
                    failure_burst=settings.failure_burst)
    in_database = DatabaseIpLimiter(settings.ip_limit, settings.ip_window)
    limiter: IpLimiter = in_database
    if settings.redis_url:
        try:
            limiter = RedisIpLimiter(settings.redis_url, settings.ip_limit, settings.ip_window,
                                     fallback=in_database)
        except ValueError:  # redis-py's text may quote the URL, password and all
            raise ConfigError("STEPUP_REDIS_URL: redis cannot use it (check its options in "
                              "the query)") from None
    try:
        signing_keys = SigningKeys(store, secrets.vault, settings.id_token_ttl, clock)
    except SecretBoxError as e:
        raise refuse_sealed_keys(e, secrets) from None
    return Bridge(
        settings=settings,
        store=store,
        secrets=secrets,
        signing_keys=signing_keys,
        challenge=Challenge(store, secrets, policy, limiter, clock),
        sender=Sender(store, settings, clock, link=not_me.link),
        not_me=not_me,
        client_auth=ClientAuthWindow(store, settings.ip_limit, settings.ip_window),
        clock=clock,
    )


def create_app(test_config: Mapping[str, object] | None = None, *,
               environ: Mapping[str, str] | None = None,
               clock: Callable[[], float] = time.time) -> Flask:
    """Build the bridge. ``test_config`` overrides settings (keys as in ``Settings``)."""
    from . import i18n, ops
    from .admin import views as admin_views
    from .flows import views
    from .notify import views as notify_views
    from .oidc import endpoints

    environ = os.environ if environ is None else environ
    settings = load_settings(environ, test_config)
    for warning in settings_warnings(environ):
        logging.getLogger("stepup").warning("%s", warning)
    hide_outbound_targets()
    app = _Flask(__name__)
    app.session_interface = CookieSessions()
    bridge = build_bridge(settings, clock, serving=True)
    app.extensions["stepup"] = bridge
    app.config.update(
        SECRET_KEY=bridge.secrets.secret_key,
        SESSION_COOKIE_NAME=session_cookie_name(settings.behind_tls),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.behind_tls,
        SESSION_COOKIE_SAMESITE="Lax",
        # It holds this browser's binding and flow ids, no flow's state: it outlives its
        # flows by ENDED_FLOWS_KEPT, so a page that ran out still shows its way back.
        PERMANENT_SESSION_LIFETIME=settings.flow_ttl + ENDED_FLOWS_KEPT,
        # The cookie is signed again only when the session changes (a new flow), not on every
        # page: flows expire on their own clock in the database.
        SESSION_REFRESH_EACH_REQUEST=False,
        WTF_CSRF_TIME_LIMIT=settings.flow_ttl,
        # Flask-WTF's strict mode wants a Referer on https, which Referrer-Policy: no-referrer
        # (required) stops browsers from sending; the token plus SameSite=Lax carry CSRF.
        WTF_CSRF_SSL_STRICT=False,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    # werkzeug answers a path with "//" in it by a 308 to the merged path on the request's
    # Host: a redirect to whatever host the request named, which a browser follows with its
    # form (a code) re-sent. No page links such a path: it is a 404 like any unknown one.
    app.url_map.merge_slashes = False
    app.jinja_env.globals["help_url"] = settings.help_url  # every page's footer
    if settings.trusted_proxies:
        # The per-IP limit must see the user's address, not the load balancer's.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(_address_checked(app.wsgi_app, n),  # type: ignore[method-assign]
                                x_for=0, x_proto=n, x_host=0)
    edge.init_app(app)
    ops.init_app(app)  # before CSRF's hook: a refused post still gets a request id, a latency
    security.init_app(app, settings)
    i18n.init_app(app)
    endpoints.init_app(app)
    views.init_app(app)
    notify_views.init_app(app)
    admin_views.init_app(app)
    ops.start_at_zero(app)
    return app
