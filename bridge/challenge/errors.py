"""What the challenge tells the user: its texts (marked for translation, English here; no
Flask) and one error class per outcome, which the pages render."""

from __future__ import annotations


def N_(message: str) -> str:
    """Mark a text for extraction (babel.cfg); the pages translate it (bridge.i18n)."""
    return message


def NP_(singular: str, plural: str) -> tuple[str, str]:
    """Mark a text with a plural form (``%(num)s`` is the count) for extraction."""
    return singular, plural


LOCKED_MESSAGE = N_("Two-step verification is locked for your account. Contact your help desk to "
                    "unlock it.")
LOCKED_AFTER_FAILURES = N_("Too many wrong codes. Two-step verification is locked for your "
                           "account. Contact your help desk to unlock it.")
ALREADY_COMPLETE = N_("This sign-in is already complete.")
WAIT_MESSAGE = NP_("Too many wrong codes. Wait %(num)s second, then try again.",
                   "Too many wrong codes. Wait %(num)s seconds, then try again.")
FLOW_ENDED = N_("This sign-in has expired or is already complete. Go back to your sign-in page "
                "and start again.")
STEP_DONE = N_("That step was already done, in another tab or by sending the form twice. This "
               "page shows where your sign-in is now.")
FLOW_EXPIRED = N_("This sign-in has expired. Use “Return to sign-in” to start again.")
FACTOR_RESET = N_("Your second factor was reset. Go back to your sign-in page and start again.")


class ChallengeError(Exception):
    """Something the user must be told; ``message`` is safe to show (generic by design).

    ``message`` is English; ``msgid`` (and ``plural`` with ``count``) and ``params`` let the
    pages show it in the user's language with their number format.
    """

    status = 400

    def __init__(self, message: str | tuple[str, str], count: int | None = None,
                 **params: object):
        self.msgid, self.plural = message if isinstance(message, tuple) else (message, None)
        self.count = count
        self.params = params
        english = self.msgid if self.plural is None or count == 1 else self.plural
        variables = {**params, "num": count} if count is not None else params
        self.message = english % variables if variables else english
        super().__init__(self.message)


class WrongCode(ChallengeError):
    status = 400
    #: Wrong codes the user may still enter before the lock, when few are left (else None);
    #: in a new authenticator's setup, before the setup ends (``ends_setup``).
    tries_left: int | None = None
    ends_setup: bool = False
    #: Seconds before the next try is looked at (the growing delay), when there is one: said
    #: now, so the next try is not refused unannounced.
    wait: int = 0


class TooSoon(ChallengeError):
    status = 429


class FlowGone(ChallengeError):
    """Unknown, expired, finished, or another browser's flow."""

    status = 404


class MovedOn(FlowGone):
    """The step asked for is not this sign-in's current one: another tab, a double click, or
    Back and a re-post took it further (or to its end)."""


class LinkExpired(ChallengeError):
    """``/authorize`` with an unknown, used or expired ``request_uri`` (or client)."""


class EnrolledElsewhere(FlowGone):
    """Another flow enrolled this user first; this flow's factor and code must never work."""

    def __init__(self) -> None:
        super().__init__(N_("This account finished setting up in another sign-in. Go back to "
                            "your sign-in page and start again. If this sign-in gave you an "
                            "entry in your authenticator app or a recovery code, delete them: "
                            "they will not work."))


class Locked(ChallengeError):
    status = 403


class AuthenticateAgain(ChallengeError):
    """The IdP's ``max_age`` ran out between the factor's check and the sign-in's end (the
    user stayed on the new recovery code, or on a new authenticator's setup): what they
    confirmed is kept, and the sign-in asks for a code once more (OpenID Connect Core
    §3.1.2.1: the OP re-authenticates). Not an error of the user's."""

    status = 200

    def __init__(self, code_saved: bool = True) -> None:
        super().__init__(
            N_("This sign-in took longer than your organization allows. To finish, enter a "
               "code from your authenticator app, or the new recovery code you just saved.")
            if code_saved else
            N_("This sign-in took longer than your organization allows. To finish, enter a "
               "code from your authenticator app."))


class ClockDrift(WrongCode):
    """A code from the wrong time: the device's clock is off by about ``offset`` seconds
    (positive: fast). Still a failed attempt; only the hint differs."""

    def __init__(self, offset: int, step: int):
        self.offset, self.step = offset, step
        # Half up: round() goes to even, and 90 s and 150 s both said "about 2 minutes".
        self.minutes = max(1, int(abs(offset) / 60 + 0.5))
        self.fast = offset > 0
        # English only here: bridge.i18n words the hint (with plurals) for the pages.
        super().__init__(f"That code didn't work: your device's clock looks about "
                         f"{self.minutes} min {'fast' if self.fast else 'slow'}.")
