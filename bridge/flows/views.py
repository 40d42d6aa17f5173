"""Challenge pages. Each view loads the flow, calls one :class:`~bridge.challenge.Challenge`
step and renders or redirects; all rules live in the challenge and the store.

Automation contract (DESIGN.md): ``otp`` / ``recovery_code`` inputs, ``#use-recovery-code``,
``#recovery-code``, ``#totp-secret``, the ``saved`` checkbox, errors in ``role="alert"``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
import unicodedata
from datetime import UTC, datetime

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, generate_csrf
from markupsafe import Markup
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..admin import views as admin_views
from ..challenge import Challenge
from ..challenge.errors import (
    FLOW_EXPIRED,
    N_,
    STEP_DONE,
    WAIT_MESSAGE,
    AuthenticateAgain,
    ChallengeError,
    FlowGone,
    LinkExpired,
    Locked,
    MovedOn,
    TooSoon,
    WrongCode,
)
from ..challenge.stages import (
    DONE,
    ENROLL,
    ENROLL_SAVED,
    LOCKED,
    NOT_ENROLLED,
    REENROLL,
    ROTATE,
    TOTP,
)
from ..edge import for_programs, server_error_json
from ..factors import totp
from ..i18n import error_text, use_ui_locales
from ..keyring import UnreadableValue
from ..oidc import endpoints as oidc_endpoints
from ..secretbox import SecretBoxError
from ..security import client_ip, csrf
from ..store import Flow

log = logging.getLogger("stepup")
bp = Blueprint("flows", __name__)

#: How many sign-ins one browser may have open at once (tabs); the oldest is forgotten.
MAX_FLOWS_PER_SESSION = 5


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(SecretBoxError, _unreadable)
    app.register_error_handler(HTTPException, _http_error)


def _challenge() -> Challenge:
    return current_app.extensions["stepup"].challenge


def _binding() -> str:
    """A random value tying flows to this browser's session cookie."""
    if "binding" not in session:
        session["binding"] = secrets.token_urlsafe(24)
        session.permanent = True
        generate_csrf()  # its session half now too: the flow's page need not set the cookie again
    return session["binding"]


@bp.get("/", strict_slashes=False)  # mounted under a path, its bare prefix: no redirect
def home():
    """Whoever opens the bridge's own address (a shared link, the demo's banner) learns what it
    is and where a sign-in starts, rather than "Page not found"."""
    return render_template("message.html", title=_("Two-step verification"), text=_(
        "This service checks the second step of your organisation's sign-in. There is nothing "
        "to do here: a sign-in starts at your sign-in page."), done=True)


@bp.get("/authorize")
def authorize():
    """RFC 9126 §4: only a pushed request, by its ``request_uri``, can start a sign-in. The
    answer is the flow's first page itself, not a redirect to it: one round trip less at the
    login screen. The request_uri is spent, but reloading this page (or coming back to it)
    shows the same sign-in again, as §4 allows for a reloading user agent. HEAD (a link
    checker's or previewer's, RFC 9110 §9.3.2: safe) spends nothing and shows nothing."""
    if request.method == "HEAD":
        return "", 200, {"Content-Type": "text/html; charset=utf-8"}
    if refused := _refuse_link(request.args):
        return refused
    client_id, request_uri = request.args["client_id"], request.args["request_uri"]
    tag = hashlib.sha256(f"{client_id}\n{request_uri}".encode()).hexdigest()[:16]
    if flow_id := dict(session.get("opened", [])).get(tag):
        return _reopen(flow_id)
    try:
        flow = _challenge().begin(client_id, request_uri, _binding())
    except LinkExpired as error:
        return _message(_("This sign-in link has expired"), error_text(error), error.status)
    # This browser's flows (``flows``, as every release has kept them, so nodes of the last
    # release and this one accept each other's sessions), and the link that opened each
    # (``opened``: pairs in a list, oldest first — the session's JSON sorts a dict's keys).
    session["flows"] = [*session.get("flows", []), flow.flow_id][-MAX_FLOWS_PER_SESSION:]
    session["opened"] = [*session.get("opened", []), [tag, flow.flow_id]][-MAX_FLOWS_PER_SESSION:]
    use_ui_locales(flow.params.get("ui_locales"))
    return _render_stage(flow)


@bp.post("/authorize")
@csrf.exempt  # the IdP's page posts it, cross-site; it changes nothing (below)
def authorize_posted():
    """OpenID Connect Core §3.1.2.1: the authorization endpoint takes POST as well as GET. The
    form's two parameters go on to ``GET /authorize`` (303), which the browser follows with its
    ``SameSite=Lax`` cookie, so the sign-in opens, and reopens on a reload, as a link's does."""
    if refused := _refuse_link(request.form):
        return refused
    return redirect(url_for("flows.authorize", client_id=request.form["client_id"],
                            request_uri=request.form["request_uri"]), 303)


def _refuse_link(values: MultiDict[str, str]) -> tuple[str, int] | None:
    """The page refusing a sign-in link without exactly one ``client_id`` and ``request_uri``;
    None for a link to go on with."""
    if not values.get("client_id") or not values.get("request_uri"):
        return _message(_("This sign-in link is incomplete"),
                        _("Go back to your sign-in page and start again."), 400)
    if any(len(values.getlist(name)) > 1 for name in ("client_id", "request_uri")):
        # RFC 6749 §3.1: no parameter twice; which copy counts would be a guess.
        return _message(_("This sign-in link is not valid"),
                        _("Go back to your sign-in page and start again."), 400)
    return None


def _reopen(flow_id: str):
    """This browser's own sign-in, opened from this link before: its current page."""
    try:
        flow = _bound(flow_id)
    except ChallengeError as error:
        return _not_open(flow_id, error)
    return _show(flow)


@bp.get("/flow/<flow_id>")
def page(flow_id: str):
    return _show(_flow(flow_id))


def _show(flow: Flow, error: str | None = None, status: int = 200, **context):
    """The flow's current page, on a reload or after a step; a new user's setup, or a new
    recovery code, that another tab made useless ends here, saying so
    (Challenge.setup_still_open)."""
    try:
        _challenge().setup_still_open(flow, client_ip())
    except ChallengeError as ended:
        return _ended(ended, flow)
    return _render_stage(flow, error, status, **context)


@bp.get("/flow/<flow_id>/<any(totp, enroll, reenroll, saved, 'keep-code', 'skip-reenroll',"
        " extend, cancel):_action>")
def posted_address(flow_id: str, _action: str):
    """A form's address opened again (after a refused code without JavaScript, the address
    bar keeps it; Enter sends a GET): the sign-in's current page, in its language, not a
    405 that would tell a user whose sign-in is still open to start again."""
    return redirect(url_for(".page", flow_id=flow_id), 303)


@bp.get("/flow/<flow_id>/recovery")
def recovery_form(flow_id: str):
    flow = _flow(flow_id)
    if flow.stage != TOTP:
        return redirect(url_for(".page", flow_id=flow_id), 303)
    return _page("recovery.html", flow)


@bp.post("/flow/<flow_id>/totp")
def submit_totp(flow_id: str):
    return _attempt(flow_id, lambda flow: _challenge().verify_totp(
        flow, request.form.get("otp", ""), client_ip(),
        new_recovery_code=request.form.get("new_recovery_code") == "yes"))


@bp.post("/flow/<flow_id>/recovery")
def submit_recovery(flow_id: str):
    return _attempt(flow_id, lambda flow: _challenge().verify_recovery(
        flow, request.form.get("recovery_code", ""), client_ip()), error_page="recovery.html")


@bp.post("/flow/<flow_id>/enroll")
def submit_enrollment(flow_id: str):
    return _attempt(flow_id, lambda flow: _challenge().verify_enrollment(
        flow, request.form.get("otp", ""), client_ip()))


@bp.post("/flow/<flow_id>/reenroll")
def submit_reenrollment(flow_id: str):
    return _attempt(flow_id, lambda flow: _challenge().verify_reenrollment(
        flow, request.form.get("otp", ""), client_ip()))


@bp.post("/flow/<flow_id>/saved")
def submit_saved(flow_id: str):
    return _attempt(flow_id, lambda flow: _challenge().confirm_saved(
        flow, client_ip(), saved=request.form.get("saved") == "yes",
        reenroll=request.form.get("next") == "reenroll"))


@bp.post("/flow/<flow_id>/keep-code")
def keep_code(flow_id: str):
    return _attempt(flow_id, lambda flow: _challenge().keep_current_code(flow))


@bp.post("/flow/<flow_id>/skip-reenroll")
def skip_reenrollment(flow_id: str):
    return _attempt(flow_id, lambda flow: _challenge().skip_reenrollment(flow))


@bp.post("/flow/<flow_id>/extend")
def extend(flow_id: str):
    """The warning's "More time": the flow, and this browser's session with it, live another
    ``flow_ttl``; back to the page the user was on (a fresh form token in it)."""
    flow = _flow(flow_id)
    try:
        _challenge().extend(flow)
    except ChallengeError as error:
        return _ended(error, flow)
    session.modified = True  # the cookie is sent again, its lifetime counted from now
    back = request.form.get("back", "")
    target = url_for(".recovery_form", flow_id=flow_id) if back == "recovery" else None
    return redirect(target or url_for(".page", flow_id=flow_id), 303)


@bp.post("/flow/<flow_id>/cancel")
def cancel(flow_id: str):
    return _attempt(flow_id, lambda flow: _challenge().cancel(flow, client_ip()))


@bp.get("/flow/<flow_id>/recovery-code.txt")
def download_code(flow_id: str):
    flow = _flow(flow_id)
    if flow.stage not in (ENROLL_SAVED, ROTATE):
        abort(404)
    try:
        _challenge().setup_still_open(flow, client_ip())
        code = _challenge().staged_code(flow)
    except ChallengeError as gone:
        return _ended(gone, flow)
    text = render_template("recovery-code.txt", code=code,
                           rotation=flow.stage == ROTATE,
                           account=flow.params.get("preferred_username"), **_code_label(flow))
    return Response(text, mimetype="text/plain", headers={
        "Content-Disposition": f'attachment; filename="{_file_name(flow)}"'})


def _file_name(flow: Flow) -> str:
    """The saved file's name: for which service and from which day, so a second one does not
    become "recovery-code (1).txt" beside the first. ASCII letters, digits and dashes only:
    any name is safe in a header and on any file system."""
    bridge = current_app.extensions["stepup"]
    plain = unicodedata.normalize("NFKD", bridge.settings.totp_issuer).encode("ascii", "ignore")
    service = re.sub(r"[^A-Za-z0-9]+", "-", plain.decode()).strip("-")  # "Société" → "Societe"
    day = _made(flow).strftime("%Y-%m-%d")
    return "-".join(filter(None, [service, "recovery-code", day])) + ".txt"


# -- helpers ------------------------------------------------------------------------------
def _code_label(flow: Flow) -> dict[str, str]:
    """What a saved code says beside it, in the file and on paper: for which service, made
    when (a user with a drawer of them tells the current one by its date, and two of one day
    by their time), the same on every showing."""
    # "long": with its time zone (UTC), in the page's language's words.
    return {"issuer": current_app.extensions["stepup"].settings.totp_issuer,
            "date": format_datetime(_made(flow), "long")}


def _made(flow: Flow) -> datetime:
    """When the code a page shows was made: as the factor before it was checked."""
    return datetime.fromtimestamp(flow.auth_time or _challenge().clock(), UTC)


def _flow(flow_id: str) -> Flow:
    if len(flow_id) > 64 or flow_id not in session.get("flows", []):
        abort(404)
    try:
        return _bound(flow_id)
    except ChallengeError as error:  # this browser's own sign-in, ended or expired (Back)
        abort(make_response(_not_open(flow_id, error)))


def _not_open(flow_id: str, error: ChallengeError, flow: Flow | None = None):
    """This browser's own sign-in that is no longer open: what became of it while it is kept,
    else why it cannot go on (with the way back when this request still knows it)."""
    return _ran_out(flow_id) or _ended(error, flow)


def _ran_out(flow_id: str):
    """The page of this browser's sign-in that is over, while it is kept, in its language.
    Finished (Back from the IdP, or a form sent twice without JavaScript): said, rather than
    "start again". Ran out (a tab in the background, a laptop that slept): with its way back
    to the IdP rather than "your sign-in page", which a user who came from an app may not
    know how to find. None for any other."""
    binding = session.get("binding")
    over = _challenge().find_ended(flow_id, binding) if binding else None
    if over is None:
        return None
    use_ui_locales(over.params.get("ui_locales"))
    if over.stage == DONE:
        # A post to it is refused all the same (409): nothing was done. Sent twice without
        # JavaScript, the browser dropped the first answer and the IdP never got the code:
        # the way back, which brings the user to their sign-in page (access_denied).
        posted = request.method == "POST"
        return render_template(
            "message.html", title=_("This sign-in is complete"), text=_(
                "You can close this page. If you did not get where you were going, go back to "
                "your sign-in page and start again."), done=True,
            way_back=_challenge().way_back(over) if posted else None), 409 if posted else 200
    return _ended(FlowGone(FLOW_EXPIRED), over)


def _bound(flow_id: str) -> Flow:
    """The flow if it is bound to this browser (else ChallengeError), its language chosen."""
    flow = _challenge().find(flow_id, _binding())
    use_ui_locales(flow.params.get("ui_locales"))
    return flow


def _attempt(flow_id: str, step, error_page: str | None = None):
    """Run one challenge step: redirect on success, the same page with the error otherwise."""
    flow = _flow(flow_id)
    try:
        target = step(flow)
    except Locked as error:
        return _render_stage(_reload(flow), error_text(error), error.status)
    except MovedOn as error:
        # Another tab, a double click, or Back and a re-post took the sign-in past this step.
        # Still open: its current page, saying that step is done (409), not "already complete"
        # with a 404. Ended: the message.
        if (fresh := _reload(flow)) is None:
            return _not_open(flow.flow_id, error, flow)
        if fresh.stage == LOCKED:  # locked meanwhile: why it is locked, not "step done"
            return _render_stage(fresh)
        return _show(fresh, _(STEP_DONE), 409, moved_on=True)
    except ChallengeError as error:
        fresh = _reload(flow)
        if fresh is None:
            return _not_open(flow.flow_id, error, flow)
        if wait := _wait(error):  # kept for this page's Reload and the other factor's page
            session["wait"] = [flow_id, _challenge().clock() + wait]
        # A code refused for the wait alone is no wrong code (nor the field's fault): it
        # stays, to be sent once the wait has passed.
        context = {"wait": wait, "waiting": isinstance(error, TooSoon)}
        if error_page and fresh.stage == TOTP:
            return _page(error_page, fresh, error=error_text(error), status=error.status,
                         **context)
        # Asked for a code again: no fault of the field's (as a step done elsewhere). Through
        # _show: a code another tab made useless is not shown again with the error.
        return _show(fresh, error_text(error), error.status,
                     moved_on=isinstance(error, AuthenticateAgain), **context)
    return redirect(target or url_for(".page", flow_id=flow_id), 303)


def _wait(error: ChallengeError) -> int:
    """Seconds before the next code is looked at (the growing delay), for the page's button."""
    if isinstance(error, WrongCode):
        return error.wait
    if isinstance(error, TooSoon):
        return error.count or 0  # none: the address's window, which lasts longer
    return 0


def _still_waiting(flow: Flow) -> int:
    """Seconds left of the wait a refusal in this browser named for this sign-in, if any: the
    refusal's page knew it; a page shown afresh knows it from the session."""
    held = session.get("wait")
    if not held or held[0] != flow.flow_id:
        return 0
    return max(0, math.ceil(held[1] - _challenge().clock()))


def _reload(flow: Flow) -> Flow | None:
    try:
        return _challenge().find(flow.flow_id, _binding())
    except ChallengeError:
        return None


def _render_stage(flow: Flow | None, error: str | None = None, status: int = 200, **context):
    if flow is None:
        return _message(_("This sign-in cannot continue"), error or "", status)
    try:
        return _stage_page(flow, error, status, **context)
    except ChallengeError as gone:  # what the page shows is gone from the flow: no 500
        return _ended(gone, flow)


def _stage_page(flow: Flow, error: str | None, status: int, **context):
    challenge = _challenge()
    if flow.stage in (ENROLL, REENROLL):
        enrollment = challenge.enrollment(flow)
        # A viewBox and no fixed size (omitsize), so CSS scales the whole code instead of
        # cropping it; the standard 4-module quiet zone, so every scanner finds it.
        qr = totp.qr_code(enrollment.uri).svg_inline(
            scale=5, border=4, omitsize=True, title=_("QR code for your authenticator app")
        ).replace("<svg ", '<svg role="img" ', 1)  # named by its <title> (text alternative)
        return _page("enroll.html", flow, error=error, status=status, enrollment=enrollment,
                     qr=Markup(qr), reenroll=flow.stage == REENROLL, **context)  # noqa: S704 segno SVG
    if flow.stage in (ENROLL_SAVED, ROTATE):
        return _page("new_code.html", flow, error=error, status=status,
                     code=challenge.staged_code(flow), rotation=flow.stage == ROTATE,
                     after_recovery=challenge.offers_reenrollment(flow), **_code_label(flow),
                     **context)
    if flow.stage == TOTP:
        return _page("totp.html", flow, error=error, status=status, **context)
    if flow.stage == LOCKED:
        return _page("locked.html", flow, error=error, status=403,
                     reason=None if error else challenge.lock_reason(flow))
    if flow.stage == NOT_ENROLLED:
        return _page("not_enrolled.html", flow, status=403)
    abort(404)


#: Pages with a form that the flow's end would cut off: they warn before it and offer more time.
TIMED = {"enroll.html", "totp.html", "recovery.html", "new_code.html"}


def _page(template: str, flow: Flow, *, error: str | None = None, status: int = 200, **context):
    name = flow.params.get("preferred_username")
    # The language switcher shows this page again, also when it answers a post.
    context["here"] = url_for(".recovery_form" if template == "recovery.html" else ".page",
                              flow_id=flow.flow_id)
    if error is None and template in ("totp.html", "recovery.html") and (
            wait := _still_waiting(flow)):
        # Shown afresh (Reload, the other factor's page) while a wait runs: said, and the
        # button held, rather than a code refused and wiped when sent.
        error, context["wait"] = error_text(TooSoon(WAIT_MESSAGE, count=wait)), wait
        context["waiting"] = True
    if template in TIMED:
        context["expires_in"] = _challenge().seconds_left(flow)
        context["more_time"] = _challenge().more_time_left(flow)
        context["page_name"] = template.removesuffix(".html")
        context["way_back"] = _challenge().way_back(flow)
    return render_template(template, flow=flow, error=error, account=name, **context), status


def _message(title: str, text: str, status: int, way_back: str | None = None):
    return render_template("message.html", title=title, text=text, way_back=way_back), status


def _ended(error: ChallengeError, flow: Flow | None = None):
    """The sign-in cannot go on. When this request still knows it (it ended during this very
    step: the last setup try, a setup or a recovery code another sign-in finished), a way
    back to the IdP with ``error=access_denied``, so the user is not left on a dead end."""
    return _message(_("This sign-in cannot continue"), error_text(error), error.status,
                    way_back=_challenge().way_back(flow) if flow else None)


def _unreadable(error: SecretBoxError):
    """A sealed value this node cannot open: its encryption key was removed too early, or the
    signing keys were sealed with a key it lacks (docs/operations.md, "Key rotation"). The
    operator must hear of it; a program gets JSON (the JWKS, the token endpoint)."""
    log.error("a sealed value cannot be opened: %s; see docs/operations.md, Key rotation", error)
    if for_programs(request.path):
        return server_error_json()
    # A sign-in's own value (a first setup's secret: no recovery code yet) is gone with it and
    # a new sign-in makes a new one; a user's stored secret is not: their recovery code still
    # works, so the page says so rather than "start again" for ever.
    if isinstance(error, UnreadableValue) and error.sign_ins_own:
        return _message(_("This sign-in cannot continue"),
                        _("Go back to your sign-in page and start again."), 400)
    return _message(_("This sign-in cannot continue"),
                    _("Go back to your sign-in page and start again. If this happens again, "
                      "use your recovery code instead, or contact your help desk."), 400)


def _csrf_error(error: CSRFError):
    if request.content_length and not request.form and not request.files:
        # A body with no form in it (not UTF-8, not a form, cut short): not an old page.
        return _message(_("This form could not be read"),
                        _("Go back to your sign-in page and start again."), 400)
    # Mostly a page left open past the sign-in's end (its form's token lasts as long): its way
    # back to the IdP while it is kept; every time: a browser that keeps no cookie for the
    # bridge.
    flow_id = request.view_args.get("flow_id") if request.view_args else None
    if flow_id in session.get("flows", []) and (way_back := _ran_out(flow_id)):
        return way_back
    return _message(_("This page expired"),
                    _("For your security the form timed out. Go back to your sign-in page and "
                      "start again. If this keeps happening, allow cookies for this site."),
                    400)


def _http_error(error: HTTPException):
    if admin_views.owns(request.path):  # a routing refusal under the help-desk API: JSON
        return admin_views.http_error(error)
    if oidc_endpoints.owns(request.path):  # or at a back-channel endpoint: OAuth JSON
        return oidc_endpoints.http_error(error)
    titles = {404: N_("Page not found"), 405: N_("Not allowed"), 413: N_("Request too large")}
    title = titles.get(error.code or 400, N_("Something is wrong with this request"))
    page, status = _message(_(title), _("Go back to your sign-in page and start again."),
                            error.code or 400)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        # RFC 9110 §15.5.6: a 405 names the methods that work (sorted: werkzeug's is a set's)
        return page, status, {"Allow": ", ".join(sorted(error.valid_methods))}
    return page, status
