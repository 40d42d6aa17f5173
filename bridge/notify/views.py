"""The "this wasn't me" pages: GET shows a confirmation, only the POST (CSRF-checked) locks."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, render_template
from flask_babel import get_locale, get_translations
from flask_babel import gettext as _

from ..i18n import use_ui_locales
from ..security import client_ip
from .mail import describe, moment
from .notme import NotMe, Outcome

bp = Blueprint("notify", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _not_me() -> NotMe:
    return current_app.extensions["stepup"].not_me


def _invalid():
    return render_template("message.html", title=_("This link doesn't work"), text=_(
        "It is too old or incomplete. If you need help, contact your help desk.")), 400


@bp.get("/not-me/<token>")
def not_me(token: str):
    event = _not_me().find(token)
    use_ui_locales(event and event["locale"])
    if event is None:
        return _invalid()
    if event["disowned_at"] is not None:  # said once already: no second confirmation page
        return _reported(event)
    # What the notice said: the user may have had several, and locks only for this one.
    facts = describe(event, get_translations(), get_locale().language)
    return render_template("not_me.html", token=token, facts=facts)


@bp.post("/not-me/<token>")
def confirm_not_me(token: str):
    event = _not_me().find(token)
    use_ui_locales(event and event["locale"])
    outcome = _not_me().confirm(token, client_ip())
    if outcome is Outcome.INVALID:
        return _invalid()
    if outcome is Outcome.USED:  # a second click, or a second tab, reaching here after the first
        return _reported(_not_me().find(token), 409)
    sender = current_app.extensions["stepup"].sender
    if sender.urls and "not_me" in sender.webhook_events:  # the help desk's receivers hear it
        text = _("Your open sign-ins have ended and your help desk has been told. They can "
                 "unlock it after checking it's you.")
    else:
        text = _("Your open sign-ins have ended. Contact your help desk: they can unlock it "
                 "after checking it's you.")
    return render_template("message.html", title=_("Two-step verification is locked"), text=text,
                           done=True)


def _reported(event: dict | None, status: int = 200):
    """The link's answer once it has locked: what happened and when, as news, not as an alarm
    (whoever comes back to it is, most often, the user who clicked it)."""
    if event is None:  # ran out between the two reads
        return _invalid()
    when = moment(event["disowned_at"], get_locale().language)
    return render_template("message.html", title=_("You already reported this"), text=_(
        "Two-step verification was locked from this link on %(when)s. Nothing more to do "
        "here. If you need help, contact your help desk.", when=when), done=True), status
