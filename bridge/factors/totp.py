"""TOTP per RFC 6238 (SHA-1, 6 digits, 30 s steps), built on pyotp.

pyotp's ``verify`` is stateless; replay protection needs the matched time step, which
:func:`match_step` returns so the store can compare-and-set the user's last accepted step.
"""

from __future__ import annotations

import base64
import secrets
from urllib.parse import quote

import pyotp
from pyotp.exceptions import OTPVerificationError

DIGITS = 6
PERIOD = 30
#: Steps accepted either side of now (RFC 6238 §5.2 recommends at most one).
WINDOW = 1
#: 160-bit secrets, as RFC 4226 §4 recommends.
SECRET_BYTES = 20


def new_secret() -> str:
    """A fresh 160-bit secret, unpadded Base32 (32 characters)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def match_step(secret: str, code: str, now: float) -> int | None:
    """Return the time step whose code equals ``code`` within ±WINDOW of ``now``, else None.

    Callers must still check the step against the last accepted one (replay).
    """
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    try:
        return totp.verify_and_get_timecode(code, for_time=now, valid_window=WINDOW)
    except OTPVerificationError:
        return None


def code_at(secret: str, now: float) -> str:
    """The code an authenticator app shows at ``now`` (tests and the demo use it)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).at(now)


def provisioning_uri(secret: str, issuer: str, account: str) -> str:
    """The ``otpauth://`` URI of Google's Key Uri Format.

    The label is ``issuer:account`` and ``issuer=`` is repeated as a parameter; spaces are
    ``%20`` (never ``+``), and the secret stays unpadded Base32.
    """
    label = quote(f"{issuer}:{account}", safe=":@")
    params = f"secret={secret}&issuer={quote(issuer, safe='')}"
    return f"otpauth://totp/{label}?{params}&algorithm=SHA1&digits={DIGITS}&period={PERIOD}"
