"""The one-time recovery code.

125 bits from :mod:`secrets` (NIST SP 800-63B §5.1.2 asks for at least 112), written in
Crockford's Base32 alphabet (no I, L, O, U) as five groups of five. Users may type it in any
case, with spaces or dashes, with O/I/L for 0/1/1, in full-width forms or other scripts'
digits. It is stored only as HMAC-SHA-256 under a server pepper: at this entropy a fast keyed
hash is enough (SP 800-63B §5.1.2.2), and a slow password hash would only cost time on the
hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from . import as_typed

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUPS = 5
GROUP_LEN = 5
LENGTH = GROUPS * GROUP_LEN  # 25 symbols x 5 bits = 125 bits
_TYPOS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def generate() -> str:
    """A new code in display form, e.g. ``7K2QM-X9D4T-...``."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return display(raw)


def display(code: str) -> str:
    return "-".join(code[i : i + GROUP_LEN] for i in range(0, LENGTH, GROUP_LEN))


def normalize(text: str) -> str | None:
    """Canonical form of what a user typed, or None if it cannot be a recovery code."""
    cleaned = as_typed(text).upper().translate(_TYPOS)
    if len(cleaned) != LENGTH or any(c not in ALPHABET for c in cleaned):
        return None
    return cleaned


def keyed_digest(pepper: bytes, code: str) -> str:
    """HMAC-SHA-256 of the canonical code under the server pepper, hex; ``code`` may be in
    display form. Keyed, so a stolen database alone cannot test guesses."""
    canonical = normalize(code)
    if canonical is None:
        raise ValueError("not a recovery code")
    return hmac.new(pepper, canonical.encode("ascii"), hashlib.sha256).hexdigest()
