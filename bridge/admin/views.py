"""``/admin/api/…``: thin JSON views; the rules are in :mod:`bridge.helpdesk`."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter

from .. import helpdesk
from ..oidc.clients import ADMIN_SCOPE
from ..security import client_ip, csrf, secure_transport
from ..store import Tx
from ..text import is_protocol_value

bp = Blueprint("admin", __name__, url_prefix="/admin/api")
OPENAPI = json.loads((Path(__file__).parent / "openapi.json").read_text())
MAX_PAGE = 200


class _Subject(PathConverter):
    """A subject in a path, slashes and line breaks and all: one with a line break reaches
    :func:`_subject` (400) rather than matching no route (404)."""

    regex = r"(?s:[^/].*?)"


class _LookedUp(_Subject):
    """A subject looked up, never an action's URL (``…/reset``, ``…/unlock``): a GET of one is
    not a look-up of subject "ann/reset", and a 405 there offers only POST."""

    regex = _Subject.regex + r"(?<!/reset)(?<!/unlock)"


def init_app(app: Flask) -> None:
    csrf.exempt(bp)  # bearer tokens, no browser session
    # Before the blueprint's rules are bound.
    app.url_map.converters.update(subject=_Subject, looked_up=_LookedUp)
    app.register_blueprint(bp)


class ApiError(Exception):
    def __init__(self, status: int, error: str, description: str):
        self.status, self.error, self.description = status, error, description


@bp.errorhandler(ApiError)
def _api_error(e: ApiError):
    response = jsonify(error=e.error, error_description=e.description)
    response.status_code = e.status
    if e.status == 401 and e.error == "invalid_token":
        # RFC 6750 §3.1: the error code for a bearer token that was sent; none when there was
        # none, nor for another scheme ("attempted using an unsupported authentication method").
        scheme = request.headers.get("Authorization", "").partition(" ")[0]
        response.headers["WWW-Authenticate"] = (
            'Bearer realm="stepup-admin", error="invalid_token"'
            if scheme.lower() == "bearer" else 'Bearer realm="stepup-admin"')
    elif e.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="stepup-admin"'
    elif e.status == 403:
        response.headers["WWW-Authenticate"] = (
            f'Bearer realm="stepup-admin", error="insufficient_scope", scope="{ADMIN_SCOPE}"')
    return response


@bp.errorhandler(HTTPException)
def http_error(e: HTTPException) -> Response:
    """werkzeug's refusals as the API's JSON. Also answers the app's routing refusals under
    the API's prefix (no such path, wrong method), which no blueprint's handler sees."""
    response = _api_error(ApiError(e.code or 400, "not_found" if e.code == 404 else
                                   "invalid_request", e.description or e.name))
    if e.code == 405 and getattr(e, "valid_methods", None):
        response.headers["Allow"] = ", ".join(sorted(e.valid_methods))
    return response


def owns(path: str) -> bool:
    return path == bp.url_prefix or path.startswith(f"{bp.url_prefix}/")


def authorized(view):
    """Over https (RFC 6750 §5.3: a token that can reset anyone's factors never crosses the
    network in clear; plain http only from this machine, as at /token), a valid, unexpired
    bearer token with scope ``stepup:admin`` of a client that is still registered with the
    admin flag: 401 without one (its client removed or no longer an admin makes it invalid:
    RFC 6750 §3.1), 403 with the wrong scope."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not secure_transport():
            raise ApiError(400, "invalid_request",
                           "The help-desk API needs https (plain http only on this machine).")
        bridge = current_app.extensions["stepup"]
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not is_protocol_value(token.strip(), 512):
            raise ApiError(401, "invalid_token", "A bearer token is required.")
        with bridge.store.autocommit() as tx:  # reads: no write lock
            found = tx.find_access_token(token.strip(), bridge.clock())
            client = tx.find_client(found["client_id"]) if found else None
        if found is None or client is None or not client.admin:
            raise _invalid_token()
        if ADMIN_SCOPE not in found["scope"].split():
            raise ApiError(403, "insufficient_scope", "The token does not allow this.")
        g.admin_client, g.admin_token = found["client_id"], token.strip()
        _query()
        _json_body()
        return view(*args, **kwargs)
    return wrapper


def _invalid_token() -> ApiError:
    return ApiError(401, "invalid_token", "The token is unknown or expired.")


def _hold_admin(tx: Tx) -> None:
    """The token checked again in the transaction that acts, its client's row held: checked
    only before, a call that came while the operator removed the client (or registered it
    anew) would act after "Removed client" was printed (SQLite reads took no lock; on
    PostgreSQL the removal waits for the held row)."""
    client = tx.find_client(g.admin_client, hold=True)
    now = current_app.extensions["stepup"].clock()
    if client is None or not client.admin or tx.find_access_token(g.admin_token, now) is None:
        raise _invalid_token()


def _as_admin(action):
    """A help-desk action (:mod:`bridge.helpdesk`) that first holds the admin
    (:func:`_hold_admin`)."""
    @functools.wraps(action)
    def held(tx: Tx, *args, **kwargs):
        _hold_admin(tx)
        return action(tx, *args, **kwargs)
    return held


def _query() -> None:
    """Any call's query, read or not, as the OpenAPI description says: UTF-8, each parameter
    once (a tool that sends junk learns it, on every call alike)."""
    try:  # werkzeug keeps an escape that is not UTF-8 as its text: "%FF", never sent as such
        parse_qsl(request.query_string.decode(), errors="strict")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_request", "The query string is not UTF-8 text after "
                       "percent-decoding.") from None
    if any(len(values) > 1 for _, values in request.args.lists()):
        # Which copy counts would be a guess (werkzeug takes the first): /token refuses too.
        raise ApiError(400, "invalid_request", "A query parameter is given more than once.")


def _json_body() -> None:
    """The API takes no body; one that is sent must at least be a JSON object."""
    if request.get_data(cache=True):
        try:
            data = request.get_json(silent=True)
        except RecursionError:  # nested deeper than the parser goes ("silent" is ValueError)
            data = None
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_request", "The body must be a JSON object.")


def _subject(subject: str) -> str:
    if not helpdesk.is_subject(subject):
        raise ApiError(400, "invalid_request", "The subject is empty, too long or unprintable.")
    return subject


def _not_enrolled() -> ApiError:
    return ApiError(404, "not_enrolled", "This subject has no second factor.")


@bp.get("/openapi.json")
def openapi():
    document = dict(OPENAPI, servers=[{"url": current_app.extensions["stepup"].settings.issuer}])
    return jsonify(document)


@bp.get("/users/<looked_up:subject>")
@authorized
def show_user(subject: str):
    bridge = current_app.extensions["stepup"]
    subject = _subject(subject)
    with bridge.store.begin() as tx:
        _hold_admin(tx)
        user = helpdesk.show(tx, subject, bridge.clock(), g.admin_client, client_ip())
    if user is None:
        raise _not_enrolled()
    return jsonify(user)


@bp.post("/users/<subject:subject>/unlock")
@authorized
def unlock_user(subject: str):
    try:
        _change(helpdesk.unlock, subject)
    except helpdesk.NotLocked:
        raise ApiError(409, "not_locked", "This user is not locked.") from None
    except helpdesk.FactorsDisowned:
        raise ApiError(409, "factors_disowned", "The user locked this from a security notice: "
                       "a use or change of their factors was not them. Reset the user instead, "
                       "so they set up new factors.") from None
    return jsonify(subject=subject, unlocked=True)


@bp.post("/users/<subject:subject>/reset")
@authorized
def reset_user(subject: str):
    _change(helpdesk.reset, subject)
    return jsonify(subject=subject, reset=True)


def _change(action, subject: str) -> None:
    """One help-desk change (``helpdesk.unlock``, ``helpdesk.reset``), recorded as this admin
    client's, from its address (:func:`helpdesk.change`)."""
    bridge = current_app.extensions["stepup"]
    try:
        helpdesk.change(bridge.store, _as_admin(action), _subject(subject), bridge.clock(),
                        actor=g.admin_client, ip=client_ip())
    except helpdesk.NotEnrolled:
        raise _not_enrolled() from None


@bp.get("/events")
@authorized
def list_events():
    bridge = current_app.extensions["stepup"]
    args = request.args
    subject = _subject(args["subject"]) if "subject" in args else None
    event = args.get("event")
    if event is not None and (len(event) > 40 or not helpdesk.is_printable(event)):
        raise ApiError(400, "invalid_request", "'event' is not an event name.")
    limit = _integer("limit", 50, 1, MAX_PAGE)
    before = _integer("before", None, 1, 2**62)
    since = _integer("since", None, 0, 2**40)
    # A tool that polls would otherwise read back its own look-ups, one more each time.
    lookups = args.get("lookups", "true")
    if lookups not in ("true", "false"):
        raise ApiError(400, "invalid_request", "'lookups' must be true or false.")
    with bridge.store.begin() as tx:
        _hold_admin(tx)
        rows = tx.audit_events(subject=subject, event=event, before=before, since=since,
                               limit=limit,
                               leave_out=helpdesk.LOOK_UPS if lookups == "false" else ())
        tx.audit("helpdesk_events", bridge.clock(), subject=subject,
                 client_id=g.admin_client, ip=client_ip())
    events = [{"id": r["id"], "at": r["at"], "event": r["event"], "subject": r["subject"],
               "client_id": r["client_id"], "ip": r["ip"], "detail": r["detail"]} for r in rows]
    return jsonify(events=events,
                   next_before=events[-1]["id"] if len(events) == limit else None)


def _integer(name: str, default: int | None, low: int, high: int) -> int | None:
    value = request.args.get(name)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 20 or not (
            low <= int(value) <= high):
        raise ApiError(400, "invalid_request", f"'{name}' must be a whole number from {low} "
                                               f"to {high}.")
    return int(value)
