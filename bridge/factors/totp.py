"""TOTP per RFC 6238 (SHA-1, 6 digits, 30 s steps), built on pyotp.

pyotp's ``verify`` is stateless; replay protection needs the matched time step, which
:func:`match_step` returns so the store can compare-and-set the user's last accepted step.
A code from a step a few minutes away is refused, but :func:`off_clock_step` recognises it so
the page can say the device's clock is off (docs/security.md explains why that is safe).
"""

from __future__ import annotations

import base64
import hmac
import secrets
from urllib.parse import quote

import pyotp
import segno

from . import as_typed

DIGITS = 6
PERIOD = 30
#: Steps accepted either side of now (RFC 6238 §5.2 recommends at most one).
WINDOW = 1
#: A user's remembered clock offset is at most this many steps either way (RFC 6238 §6), so
#: no step more than MAX_DRIFT + WINDOW from now is ever accepted for anyone.
MAX_DRIFT = 2
#: 160-bit secrets, as RFC 4226 §4 recommends.
SECRET_BYTES = 20


def new_secret() -> str:
    """A fresh 160-bit secret, unpadded Base32 (32 characters)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def normalize(code: str) -> str:
    """What the user typed, in ASCII digits where they typed digits (:func:`as_typed`)."""
    return as_typed(code)


def match_step(secret: str, code: str, now: float, drift: int = 0) -> int | None:
    """Return the time step whose code equals ``code`` within ±WINDOW of ``now`` — or of
    ``now`` shifted by the user's remembered ``drift`` in steps (RFC 6238 §6) — else None.

    Callers must still check the step against the last accepted one (replay).
    """
    if not well_formed(code):
        return None
    current = int(now // PERIOD)
    centre = current + max(-MAX_DRIFT, min(MAX_DRIFT, drift))
    steps = {*range(current - WINDOW, current + WINDOW + 1),
             *range(centre - WINDOW, centre + WINDOW + 1)}
    return _find(secret, code, sorted(steps, key=lambda s: (abs(s - centre), s)))


def oldest_acceptable_step(now: float) -> int:
    """No step below this is accepted at ``now`` or ever after, whatever a user's drift."""
    return int(now // PERIOD) - MAX_DRIFT - WINDOW


def drift_after(step: int, now: float) -> int:
    """The offset to remember after ``step`` was accepted at ``now``, bounded by MAX_DRIFT:
    a device drifting slowly is followed, one step at a time, never further."""
    return max(-MAX_DRIFT, min(MAX_DRIFT, step - int(now // PERIOD)))


def off_clock_step(secret: str, code: str, now: float, search: int) -> int | None:
    """The step within ±``search`` seconds of ``now`` (but outside ±WINDOW) whose code is
    ``code``: the device's clock is off by about ``(step - now's step) * PERIOD`` seconds.

    Only for telling the user; such a code is never accepted.
    """
    if not well_formed(code):
        return None
    current, reach = int(now // PERIOD), search // PERIOD
    offsets = sorted((d for d in range(-reach, reach + 1) if abs(d) > WINDOW),
                     key=lambda d: (abs(d), d))
    # Every step is looked at, found or not: a wrong code that is some nearby step's would
    # otherwise be answered sooner than one that is none, telling a guesser a code that may
    # still come (a review measured 30 µs against 310 µs).
    return _find(secret, code, [current + d for d in offsets], every=True)


def well_formed(code: str) -> bool:
    """``DIGITS`` ASCII digits: the only codes that can match."""
    return len(code) == DIGITS and code.isascii() and code.isdigit()  # not "١٢٣٤٥٦"


def _find(secret: str, code: str, steps: list[int], every: bool = False) -> int | None:
    """The first of ``steps`` whose code is ``code``; ``every``: all of them computed."""
    otp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    found = None
    for step in steps:
        if hmac.compare_digest(otp.generate_otp(step), code) and found is None:
            found = step
            if not every:
                break
    return found


def code_at(secret: str, now: float) -> str:
    """The code an authenticator app shows at ``now`` (the tests and the benchmark use it)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).at(now)


#: UTF-8 bytes of the account name an ``otpauth://`` label keeps: what an app's list shows
#: (64 letters, 21 CJK characters), and short enough that any label, percent-encoded, fits
#: a QR code a phone reads easily — 255 emoji would not fit in any QR code at all.
LABEL_ACCOUNT_BYTES = 64


def provisioning_uri(secret: str, issuer: str, account: str) -> str:
    """The ``otpauth://`` URI of Google's Key Uri Format.

    The label is ``issuer:account`` and ``issuer=`` is repeated as a parameter; spaces are
    ``%20`` (never ``+``), text is UTF-8 percent-encoded (RFC 3986), a colon inside either
    part is ``%3A`` (only the separator is literal), and the secret stays unpadded Base32.
    A longer account is cut to :data:`LABEL_ACCOUNT_BYTES`, between characters, and ends in
    "…".
    """
    label = f"{quote(issuer, safe='@')}:{quote(_label_account(account), safe='@')}"
    params = f"secret={secret}&issuer={quote(issuer, safe='')}"
    return f"otpauth://totp/{label}?{params}&algorithm=SHA1&digits={DIGITS}&period={PERIOD}"


#: The QR code's data mask (ISO/IEC 18004 §7.8.2), fixed rather than chosen by scoring all
#: eight: the scoring was 7 of the 9 ms an enrollment page spent in segno, and an otpauth
#: URI's bits (random Base32, Reed-Solomon bytes) look alike under every mask, so mask 4's
#: penalty is the best one's in the median and at worst about 15 % above it, and zxing reads
#: these codes back as often as scored ones (``python -m bench.qr``, bench/results/qr.txt).
QR_MASK = 4


def qr_code(uri: str) -> segno.QRCode:
    """The enrollment page's QR code of ``uri``: error correction M (15 % may be lost), or
    better where the size allows."""
    return segno.make(uri, error="m", mask=QR_MASK, micro=False)


def _label_account(account: str) -> str:
    if len(account.encode()) <= LABEL_ACCOUNT_BYTES:
        return account
    budget = LABEL_ACCOUNT_BYTES - len("…".encode())
    kept = account.encode()[:budget].decode(errors="ignore")  # drops a split character
    return kept.rstrip() + "…"
