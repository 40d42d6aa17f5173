"""Errors raised by the hand-off client.

Every failure of a hand-off is a :class:`HandoffError`; catch that one class to show the user
"step-up failed". Each error has an ``error`` code (the OAuth error code where the bridge sent
one, RFC 6749 §4.1.2.1 / §5.2, RFC 9126 §2.3) and a ``description``.

Messages never carry the authorization code, tokens, client secrets or the PKCE verifier.
"""

from __future__ import annotations

import unicodedata

#: Longest error_description copied from a bridge response into an exception.
MAX_DESCRIPTION = 200


class HandoffError(Exception):
    """Base class: the hand-off failed. ``error`` is a short code, ``description`` a sentence."""

    default_error = "handoff_failed"

    def __init__(self, description: str = "", *, error: str | None = None) -> None:
        self.error = error or self.default_error
        self.description = description
        super().__init__(f"{self.error}: {description}" if description else self.error)


class DiscoveryError(HandoffError):
    """Discovery or JWKS could not be fetched, or disagrees with the configured issuer."""

    default_error = "discovery_failed"


class PushError(HandoffError):
    """The pushed authorization request was refused (RFC 9126 §2.3)."""

    default_error = "par_failed"


class StateMismatch(HandoffError):
    """The callback's ``state`` is missing or not this hand-off's (RFC 6749 §10.12)."""

    default_error = "state_mismatch"


class AccessDenied(HandoffError):
    """The bridge answered ``error=access_denied``: the user cancelled or is locked out."""

    default_error = "access_denied"


class TokenError(HandoffError):
    """The token endpoint refused the code or answered badly (RFC 6749 §5.2)."""

    default_error = "token_failed"


class InvalidAssertion(HandoffError):
    """The ``id_token`` failed verification (OpenID Connect Core §3.1.3.7)."""

    default_error = "invalid_id_token"


def clip(text: object) -> str:
    """A bridge-supplied description, made safe to put in a message: a string, one line, short,
    without control or format characters (no terminal escapes, no bidi overrides or
    zero-width characters to disguise a log line)."""
    if not isinstance(text, str):
        return ""
    shown = "".join(
        ch if unicodedata.category(ch)[0] != "C" else " " for ch in text[: 4 * MAX_DESCRIPTION]
    )
    line = " ".join(shown.split())
    return line if len(line) <= MAX_DESCRIPTION else line[: MAX_DESCRIPTION - 1] + "…"


def error_code(value: object, fallback: str) -> str:
    """An OAuth ``error`` value (RFC 6749 §5.2: printable ASCII, no quote or backslash), else
    ``fallback``. Anything odd is dropped rather than echoed into logs."""
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return fallback
    if value.isascii() and value.isprintable() and not set(value) & {'"', "\\", " "}:
        return value
    return fallback
