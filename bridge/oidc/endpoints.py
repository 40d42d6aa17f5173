"""Back-channel and metadata endpoints: discovery, JWKS, PAR, token. Thin Flask views.

Errors here are OAuth JSON (RFC 6749 §5.2): ``{"error": ..., "error_description": ...}``.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import time
from urllib.parse import parse_qsl

import sqlalchemy as sa
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    InsecureTransportError,
    InvalidClientError,
    InvalidRequestError,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..admin import grant as admin_grant
from ..keyring import JWKS_MAX_AGE
from ..security import FORWARDING_HEADERS, client_ip, csrf, secure_transport
from ..text import CLIENT_ID_LIMIT, is_protocol_value
from . import assertion, discovery, par
from .clients import (
    ADMIN_SCOPE,
    AUTH_METHODS,
    ClientKeys,
    ClientModel,
    NothingTried,
    PrivateKeyJWT,
)

log = logging.getLogger("stepup")

bp = Blueprint("oidc", __name__)


def init_app(app: Flask) -> AuthorizationServer:
    bridge = app.extensions["stepup"]
    settings, store = bridge.settings, bridge.store

    def query_client(client_id: str) -> ClientModel | None:
        """authlib asks only while authenticating a client at /par or /token, just before it
        checks a credential: a caller past its failure window for the client is refused here,
        in the same read as the client (``throttle.ClientAuthWindow``)."""
        with store.autocommit() as tx:
            record = is_protocol_value(client_id, CLIENT_ID_LIMIT) and tx.find_client(client_id)
            claimed = client_id if record else ""
            if bridge.client_auth.blocked(tx, client_ip(), claimed, bridge.clock()):
                raise _TooManyFailures(bridge.client_auth.window)
        g.claimed_client = claimed  # a credential is tried: a failure counts
        return ClientModel(record, bridge.secrets.pepper) if record else None

    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", {
        "authorization_code": 300, "client_credentials": settings.admin_token_ttl})
    # One read of the OS random source per token, not authlib's one per character (42).
    app.config.setdefault("OAUTH2_ACCESS_TOKEN_GENERATOR", _access_token)
    server = _Server(app, query_client=query_client, save_token=_no_resource)
    issuer = settings.issuer
    server.register_client_auth_method(
        PrivateKeyJWT.CLIENT_AUTH_METHOD,
        PrivateKeyJWT(store, ClientKeys(), [issuer, f"{issuer}/token", f"{issuer}/par"],
                      bridge.clock),
    )
    assertion.register(server, store, bridge.signing_keys, issuer, settings.id_token_ttl,
                       bridge.clock)
    admin_grant.register(server, store, bridge.clock)
    bridge.oauth = server
    # authlib logs at DEBUG the issued token response (access and id token), for both grants,
    # and each client authentication with the client id as sent: the secret itself when a
    # client sends it without its id (Basic credentials without a colon). Filters, not a
    # level, because someone debugging will turn the level up (and a filter on the parent
    # logger would not see its children's records).
    for grant in ("authorization_code", "client_credentials"):
        logging.getLogger(f"authlib.oauth2.rfc6749.grants.{grant}").addFilter(_no_token_logs)
    logging.getLogger("authlib.oauth2.rfc6749.authenticate_client").addFilter(_no_client_id)
    csrf.exempt(bp)  # back channel: clients authenticate; there is no browser session
    app.register_blueprint(bp)
    return server


class _Server(AuthorizationServer):
    def create_oauth2_request(self, request):
        """The request :func:`_back_channel_request` checked, as the views hand it over."""
        if isinstance(request, _BackChannelRequest):
            return request
        return super().create_oauth2_request(request)

    def authenticate_client(self, request, methods, endpoint="token") -> ClientModel:
        """authlib's, counting its failures in the caller's window (``query_client`` refuses a
        caller past it), and a ``client_id`` parameter must name the client that authenticated.

        RFC 6749 §3.2.1 lets a client name itself with ``client_id``; authlib reads it only for
        ``client_secret_post``, so Basic or an assertion for one client with ``client_id`` of
        another would pass. The credentials were good (not §5.2's invalid_client, which would
        tell the client its secret is wrong); the request contradicts itself: invalid_request,
        as /par answers it (RFC 9126 §2.1 checks client_id against the authenticated client).
        """
        try:
            client = super().authenticate_client(request, methods, endpoint)
        except NothingTried:
            raise  # no credential was tried
        except InvalidClientError:
            if (claimed := g.pop("claimed_client", None)) is not None:
                # Which client and address, for whoever answers the invalid_client alert: a
                # registered id or none (an unknown one is the caller's text, not logged).
                log.warning("client authentication refused at /%s from %s for %s", endpoint,
                            client_ip(), f"client {claimed!r}" if claimed else "an unknown client")
                _count_failure(claimed)
            raise
        named = request.payload.client_id
        if named is not None and named != client.get_client_id():
            raise InvalidRequestError("'client_id' does not match the authenticated client.")
        return client

    def generate_token(self, grant_type, client, user=None, scope=None, **options) -> dict:
        """RFC 6749 §3.3: a request without ``scope`` gets a pre-defined default. For the
        client-credentials grant (help-desk tools, docs/helpdesk.md) that is every admin scope
        the client may have — a token with no scope would be refused by every admin call. The
        code grant always has its code's scope (``openid``)."""
        if grant_type == "client_credentials" and not (scope or "").split():
            scope = client.get_allowed_scope(ADMIN_SCOPE)
        return super().generate_token(grant_type=grant_type, client=client, user=user,
                                      scope=scope, **options)

    def handle_error_response(self, request, error: OAuth2Error):
        return super().handle_error_response(request, _uniform(error))


def _count_failure(claimed: str) -> None:
    """One failed client authentication in the caller's window. If the database cannot take
    it, the caller still gets the same ``invalid_client`` (a 503 only for wrong credentials
    would tell them the guess was wrong); the error is logged."""
    # Imported here: prometheus_client must not be imported before `stepup serve` sets
    # PROMETHEUS_MULTIPROC_DIR (bridge.cli), and this module is imported before that.
    from ..ops import CLIENT_AUTH_CLOSED

    bridge = current_app.extensions["stepup"]
    try:
        if bridge.client_auth.hit(client_ip(), claimed, bridge.clock()):
            CLIENT_AUTH_CLOSED.inc()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as e:
        log.error("database unavailable: a failed client authentication was not counted (%s)",
                  type(e).__name__)


class _TooManyFailures(OAuth2Error):
    """The caller's address failed client authentication too often: 429 with Retry-After (RFC
    6585 §4), and the code the bridge answers an outage with, since the failure window is not
    the credentials' fault and §5.2 has no code of its own for it."""

    error = "temporarily_unavailable"
    status_code = 429
    description = ("Too many failed client authentications from this address; try again "
                   "later.")

    def __init__(self, retry_after: float):
        super().__init__()
        self.retry_after = retry_after

    def get_headers(self):
        return [*super().get_headers(), ("Retry-After", str(int(self.retry_after)))]


class _BackChannelRequest(FlaskOAuth2Request):
    """authlib's view of a /par or /token request: only the checked parameters, one value
    each, with the empty ones left out (:func:`bridge.oidc.par.single_values`)."""

    def __init__(self, flask_request, params: dict[str, str]):
        super().__init__(flask_request)
        self.payload = BasicOAuth2Payload(params)

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data

    @property
    def caller(self) -> str:
        return client_ip()


class _ClientAuthFailed(InvalidClientError):
    """RFC 6749 §5.2's 401, its Basic challenge with the realm RFC 7617 §2 requires."""

    def get_headers(self):
        return [(name, value.replace("Basic ", 'Basic realm="stepup", ', 1)
                 if name == "WWW-Authenticate" else value) for name, value in super().get_headers()]


def _uniform(error: OAuth2Error) -> OAuth2Error:
    """Every client-authentication failure looks the same: 401 and one message, so a caller
    cannot tell an unknown client id from a wrong secret or a bad assertion (RFC 6749 §5.2);
    and every refusal says why."""
    if error.error == "invalid_client":
        return _ClientAuthFailed(description="Client authentication failed.", status_code=401)
    elif error.error == "unsupported_grant_type":  # authlib's body has no description for it
        error.description = "This grant_type is not supported."
    return error


def _back_channel_request() -> _BackChannelRequest:
    """What /par and /token ask of every request before authlib sees it; the request as
    authlib is to see it.

    - A form body, and nothing in the query string (RFC 6749 §3.2, RFC 9126 §2.1): authlib
      reads the query too, and its copy of a parameter would win over the body's.
    - UTF-8 text (:func:`_form`); each parameter once, and one sent empty counts as omitted
      (RFC 6749 §3.1, §3.2: :func:`bridge.oidc.par.single_values`) — for authlib too, and for
      the count of authentication methods below.
    - One client authentication method (RFC 6749 §2.3). With two (Basic credentials and a
      ``client_secret`` or an assertion in the body) authlib would try them in turn and accept
      either, so one that fails would not count: refused as §5.2's invalid_request.
    - Basic credentials authlib cannot read are a failed authentication, before its parser.
    - https (RFC 6749 §2.3.1, §3.2), or plain http between two processes of this machine.
      authlib exempts a loopback *URL*, whose host is the request's Host header: whoever
      names ``Host: localhost`` would pass. The connection's peer must be loopback too.
    """
    if not secure_transport():
        raise InsecureTransportError()
    if request.mimetype != "application/x-www-form-urlencoded":
        raise InvalidRequestError("The request must be form-encoded.")
    if request.args:
        raise InvalidRequestError("Parameters belong in the form body, not the query string.")
    params = par.single_values(_form())
    header = request.headers.get("Authorization", "")
    basic = " " in header and header.split(None, 1)[0].lower() == "basic"  # as authlib reads it
    if basic + ("client_secret" in params) + ("client_assertion" in params) > 1:
        raise InvalidRequestError("More than one client authentication method was used.")
    if not _basic_auth_readable():
        raise InvalidClientError()
    return _BackChannelRequest(request, params)


def _form() -> dict[str, list[str]]:
    """The form body, each name with all its values, as UTF-8 text (RFC 6749 Appendix B).

    Werkzeug's ``request.form`` keeps a byte that is not UTF-8 after percent-decoding as its
    escape: ``preferred_username=Jos%E9`` would become the text "Jos%E9", a value the client
    never sent. Parsed here as werkzeug does (``parse_qsl`` on the body that
    ``MAX_CONTENT_LENGTH`` bounds), but strictly.
    """
    try:
        pairs = parse_qsl(request.get_data().decode(), keep_blank_values=True,
                          errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequestError("The form body is not UTF-8 text after percent-decoding "
                                  "(RFC 6749 Appendix B).") from None
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


def _basic_auth_readable() -> bool:
    """False for HTTP Basic credentials that are not one strict token68 (RFC 7617 §2) of
    UTF-8: authlib's parser (``rfc6749.util.extract_basic_authorization``) splits the header on
    any whitespace and decodes lenient base64, which skips characters outside the alphabet and
    whatever follows the padding. So junk after the credentials, or a second Authorization
    header (joined to the first with a comma, RFC 9110 §5.3), would pass unseen behind a good
    credential; and text that is not UTF-8 would crash it (a 500)."""
    header = request.headers.get("Authorization", "")
    if " " not in header:
        return True  # authlib ignores it
    parts = header.split(None, 1)
    if len(parts) != 2:
        return False
    if parts[0].lower() != "basic":
        return True
    try:
        base64.b64decode(parts[1], validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text
        return False
    return True


def _no_token_logs(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Issue token")


#: Up to the last ' via "': the id as sent may hold those words too.
_AUTHENTICATED_AS = re.compile(r'^Authenticate .* via "', re.DOTALL)


def _no_client_id(record: logging.LogRecord) -> bool:
    """Keeps authlib's "Authenticate <id> via <method> failed" (the method and the outcome
    help whoever debugs a client), without the id."""
    record.msg = _AUTHENTICATED_AS.sub('Authenticate a client via "', str(record.msg))
    return True


def _access_token(**_context) -> str:
    return secrets.token_urlsafe(32)  # 256 bits, as authlib's 42 letters and digits (250)


def _no_resource(token: dict, request) -> None:
    """The bridge protects no resource, so its access tokens are never looked up again."""


@bp.get("/.well-known/openid-configuration")
def openid_configuration():
    bridge = current_app.extensions["stepup"]
    return jsonify(discovery.metadata(bridge.settings.issuer, bridge.settings.acr))


@bp.get("/jwks")
def jwks():
    bridge = current_app.extensions["stepup"]
    keys = bridge.signing_keys.public_jwks(bridge.clock())
    response = jsonify(keys)
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    return response


@bp.post("/par", provide_automatic_options=False)
def pushed_authorization_request():
    """RFC 9126 §2: authenticate the client, check the request, answer a ``request_uri``."""
    bridge = current_app.extensions["stepup"]
    server: AuthorizationServer = bridge.oauth
    try:
        pushed = _back_channel_request()
        client = server.authenticate_client(pushed, list(AUTH_METHODS), endpoint="par")
        params = par.validate(pushed.payload.datalist, client, bridge.settings.acr)
    except OAuth2Error as error:
        return _oauth_error(error)
    now = bridge.clock()
    request_uri = par.new_request_uri()
    # One INSERT (and, once a minute, independent sweeps). Not synced to disk: a request lost
    # to a power cut is only unknown at /authorize, and the IdP starts again.
    # With the registration that authenticated it: one replaced meanwhile (`client add
    # --replace` between the check above and this save) opens no sign-in (Challenge.begin).
    params["registered_at"] = client.record.created_at
    with bridge.store.autocommit(durable=False) as tx:
        tx.save_pushed(request_uri, client.get_client_id(), params,
                       now + bridge.settings.request_uri_ttl)
        bridge.housekeeping(tx, now)
    response = jsonify({"request_uri": request_uri, "expires_in": bridge.settings.request_uri_ttl})
    response.status_code = 201
    return response


@bp.post("/token", provide_automatic_options=False)
def token():
    try:
        asked = _back_channel_request()
        # RFC 6749 §5.2: a missing grant_type is invalid_request (authlib:
        # unsupported_grant_type).
        if "grant_type" not in asked.form:
            raise InvalidRequestError("Missing 'grant_type'.")
        return current_app.extensions["stepup"].oauth.create_token_response(asked)
    except OAuth2Error as error:  # also authlib's own before its handling: insecure_transport
        return _oauth_error(error)


@bp.route("/par", methods=["OPTIONS"], provide_automatic_options=False)
@bp.route("/token", methods=["OPTIONS"], provide_automatic_options=False)
def options():
    """What the endpoint allows; Flask's own answer would list the refused methods below."""
    response = current_app.response_class(status=204, headers={"Allow": "OPTIONS, POST"})
    del response.headers["Content-Type"]  # no body to type
    return response


#: Paths a machine calls: every refusal there is OAuth JSON, werkzeug's routing ones too (a
#: method or a path that no view has, which no blueprint's handler sees).
_BACK_CHANNEL = re.compile(r"/(?:par|token|jwks)(?:/.*)?|/\.well-known/.*", re.DOTALL)


def owns(path: str) -> bool:
    return _BACK_CHANNEL.fullmatch(path) is not None


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    """Werkzeug's refusals (a wrong method, a malformed or too large body) as OAuth JSON,
    keeping the status and the Allow header."""
    allowed = sorted(error.valid_methods or ()) if isinstance(error, MethodNotAllowed) else []
    description = error.description
    if allowed:
        description = "Use " + " or ".join(
            m for m in allowed if m not in ("HEAD", "OPTIONS")) + "."
    response = _oauth_error(InvalidRequestError(description))
    response.status_code = error.code or 400
    if allowed:
        response.headers["Allow"] = ", ".join(allowed)  # sorted: werkzeug's is a set's order
    return response


#: Seconds between two log lines about back-channel requests over plain http: anyone may
#: send them, and the operator needs one line, not a flood.
TRANSPORT_HINT_EVERY = 60.0
_last_transport_hint = float("-inf")


def _hint_transport() -> None:
    """A back-channel request over plain http: tell the operator why, at most once a minute
    per process. Most often a proxy ended TLS and the bridge does not trust it (or it sent
    no ``X-Forwarded-Proto``); the caller itself only learns that https is required."""
    global _last_transport_hint
    now = time.monotonic()
    if now - _last_transport_hint < TRANSPORT_HINT_EVERY:
        return
    _last_transport_hint = now
    if current_app.extensions["stepup"].settings.trusted_proxies:
        why = ("the trusted proxy in front did not send X-Forwarded-Proto: https; have it "
               "send X-Forwarded-Proto and X-Forwarded-For")
    elif any(name in request.headers for name in FORWARDING_HEADERS):
        why = ("it names a forwarding proxy but STEPUP_TRUSTED_PROXIES is 0; set it to the "
               "number of proxies in front of the bridge")
    else:
        why = "serve the bridge behind TLS (https)"
    log.warning("%s %s refused: it came over plain http; %s", request.method, request.path, why)


def _oauth_error(error: OAuth2Error):
    if error.error == "insecure_transport":
        _hint_transport()
    status, body, headers = _uniform(error)()
    response = jsonify(dict(body))
    response.status_code = status
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response
