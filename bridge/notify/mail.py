"""The e-mail a user gets about an event: short, plain text, in their language where the IdP
told us it (``ui_locales``), never with a code or a secret in it."""

from __future__ import annotations

import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote, urlsplit

from babel.dates import format_datetime
from babel.support import NullTranslations, Translations

from stepup_handoff.deadline import Deadline

from ..challenge.errors import N_
from ..i18n import TRANSLATIONS, negotiate
from ..settings import SMTP_SCHEMES, Settings

SUBJECT = N_("Security notice for your account")
#: What happened, one sentence per event.
WHAT = {
    "enrollment": N_("Two-step verification was set up for your account."),
    "recovery_code_used": N_("Your recovery code was used to sign in."),
    "rotation": N_("Your recovery code was replaced by a new one."),
    "reenrollment": N_("A new authenticator app was set up for your account. The old one no "
                       "longer works."),
    "failure_burst": N_("Several wrong codes were entered for your account."),
    "lockout": N_("Two-step verification was locked for your account after too many wrong codes."),
    "helpdesk_unlock": N_("Your help desk unlocked two-step verification for your account."),
    "helpdesk_reset": N_("Your help desk reset two-step verification for your account. You "
                         "will set it up again at your next sign-in."),
    "not_me": N_("Two-step verification was locked for your account from the link in a security "
                 "notice. Your help desk can unlock it."),
    "contact_changed": N_("From now on, security notices for your account go to another "
                          "e-mail address. Your sign-in provider sent it with a sign-in that "
                          "passed two-step verification."),
}
WHEN = N_("When: %(when)s")
ACCOUNT = N_("Account: %(account)s")
APPLICATION = N_("Sign-in for: %(client)s")
IF_NOT_YOU = N_("If this wasn't you, lock two-step verification for your account at once, then "
                "contact your help desk:")
#: Where two-step verification is locked already, locking it is no way out. After wrong codes the
#: link still says the tries were not the user's (someone may know their password); after the
#: link itself was used, another link would say nothing.
CLOSING = {
    "lockout": N_("If these codes weren't yours, someone may know your password: say so here, "
                  "then contact your help desk:"),
    "not_me": N_("If you need help, contact your help desk."),
}


def carries_link(event: dict[str, Any]) -> bool:
    """Whether the notice of ``event`` ends with its "this wasn't me" link: all but the notice
    of a "this wasn't me" lock itself, whose link would only disown the lock."""
    return event["event"] != "not_me"


def compose(event: dict[str, Any], sender: str, domain: str,
            not_me_link: str | None) -> EmailMessage:
    """The message for ``event`` (its ``email`` is the recipient), ending with the event's
    "this wasn't me" link."""
    lang = negotiate(event.get("locale"), None)
    texts = Translations.load(str(TRANSLATIONS), [lang])
    what, *facts = describe(event, texts, lang)
    lines = [what, "", *facts, "", texts.gettext(CLOSING.get(event["event"], IF_NOT_YOU))]
    if not_me_link and carries_link(event):
        lines.append(not_me_link)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = event["email"]
    message["Subject"] = texts.gettext(SUBJECT)
    message["Date"] = formatdate(event["at"], usegmt=True)
    # The stable event id: a retried mail is recognisably the same message.
    message["Message-ID"] = f"<{event['id']}@{domain}>"
    message.set_content("\n".join(lines) + "\n")
    message["Content-Language"] = lang  # after set_content, which clears Content-* headers
    return message


def describe(event: dict[str, Any], texts: NullTranslations, lang: str) -> list[str]:
    """What a notice says happened, in ``lang``: the event, when, the account (the name the
    IdP gave the user, for whoever has several) and for a sign-in the application (by its
    registered name, else its id). The "this wasn't me" page repeats it, so the user knows
    which notice it is."""
    lines = [texts.gettext(WHAT[event["event"]]),
             texts.gettext(WHEN) % {"when": moment(event["at"], lang)}]
    if event.get("account"):
        lines.append(texts.gettext(ACCOUNT) % {"account": _isolated(event["account"])})
    # A help-desk action's client is the help desk's own tool, and a "this wasn't me" lock
    # carries the disowned event's: neither is a sign-in.
    if event.get("client_id") and not event["event"].startswith(("helpdesk_", "not_me")):
        client = event.get("client_name") or event["client_id"]
        lines.append(texts.gettext(APPLICATION) % {"client": _isolated(client)})
    return lines


def moment(at: float, lang: str) -> str:
    """A time as notices and their pages show it: in ``lang``'s words, in UTC, which the
    bridge can name without knowing where the user is."""
    return format_datetime(datetime.fromtimestamp(at, UTC), "medium", tzinfo=UTC,
                           locale=lang) + " UTC"


def _isolated(name: str) -> str:
    """A name set apart from the sentence around it (Unicode bidi isolates, UAX #9): in an
    Arabic notice "Acme Inc." showed in Chromium as ".Acme Inc", its full stop taken by the
    right-to-left sentence. Names never hold isolates of their own (``text.display_name``
    refuses format characters)."""
    return f"\u2068{name}\u2069"


def send(settings: Settings, message: EmailMessage) -> None:
    """Hand one message to the SMTP server of ``STEPUP_SMTP_URL``, the whole session (from the
    connection to the end of QUIT) within ``STEPUP_SMTP_TIMEOUT``."""
    url = urlsplit(settings.smtp_url)
    port = url.port or SMTP_SCHEMES[url.scheme]
    context = ssl.create_default_context()
    timeout = settings.smtp_timeout

    def session(deadline: Deadline) -> None:
        # Built here, within the deadline: the constructor looks this host's own name up (for
        # EHLO). Connected here rather than by the constructor, so that the deadline covers the
        # greeting too; the constructor is also what records the name TLS verifies against.
        smtp = (_SMTPS(timeout=timeout, context=context) if url.scheme == "smtps" else
                _SMTP(timeout=timeout))
        smtp.deadline, smtp._host = deadline, url.hostname or ""
        with smtp:
            code, greeting = smtp.connect(smtp._host, port)
            if code != 220:  # what smtplib's constructor checks when it connects itself
                raise smtplib.SMTPConnectError(code, greeting)
            if url.scheme == "smtp+starttls":
                smtp.starttls(context=context)
            if url.username:
                smtp.login(unquote(url.username), unquote(url.password or ""))
            smtp.send_message(message)

    with Deadline(timeout) as deadline:
        deadline.run(lambda: session(deadline))


class _SMTP(smtplib.SMTP):
    """smtplib's client, its connection watched by ``deadline`` from the socket's creation
    (STARTTLS later wraps the same connection) and opened within the time left."""

    deadline: Deadline

    def _get_socket(self, host: str, port: int, timeout: float) -> Any:
        sock = super()._get_socket(host, port, self.deadline.left(timeout))
        self.deadline.watch(sock)
        return sock


class _SMTPS(smtplib.SMTP_SSL, _SMTP):
    """TLS from the start: SMTP_SSL wraps the socket that :class:`_SMTP` opened and watches."""
