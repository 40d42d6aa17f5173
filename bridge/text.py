"""The two kinds of text the bridge takes from outside, and the one check for each.

*Protocol values* (client ids, ``state``, ``nonce``, ``login_hint``, URIs, flow ids) are
ASCII visible characters and space — RFC 6749 Appendix A's ``VSCHAR`` — of bounded length.
*Display names* (``preferred_username``) are people's names in any script: NFC-normalised
Unicode with no control, format or bidirectional-override characters (those can disguise
what a page or an authenticator app shows, CVE-2021-42574), except the zero-width (non-)
joiners some scripts need in names.
"""

from __future__ import annotations

import re
import unicodedata

#: Longest client id (RFC 6749 leaves it open; the clients table's column) and request_uri
#: (``urn:ietf:params:oauth:request_uri:`` and 43 random characters, with room to spare).
CLIENT_ID_LIMIT = 255
REQUEST_URI_LIMIT = 200
#: Longest redirect URI (and registered prefix or JWKS URI) taken.
URI_LIMIT = 2000

_VSCHAR = re.compile(r"[\x20-\x7e]+")
#: What an OAuth ``error_description`` may hold (RFC 6749 §5.2: VSCHAR but ``"`` and ``\``);
#: authlib raises ValueError when building an error with any other character.
_NQSCHAR = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")
#: Zero-width non-joiner and joiner: part of correct spelling in Persian, Indic scripts, emoji.
_JOINERS = frozenset("\u200c\u200d")
_SPACES = re.compile(" {2,}")


def is_protocol_value(value: object, limit: int) -> bool:
    """``value`` is a non-empty string of at most ``limit`` VSCHAR characters."""
    return (isinstance(value, str) and 0 < len(value) <= limit
            and _VSCHAR.fullmatch(value) is not None)


def fits_error_text(value: str, limit: int = 64) -> bool:
    """``value`` (a name taken from a request) may be quoted in an ``error_description``."""
    return len(value) <= limit and _NQSCHAR.fullmatch(value) is not None


def display_name(value: str, limit: int) -> str | None:
    """``value`` as a display name (NFC; every kind of space — no-break, ideographic — one
    plain space; trimmed), or None if it is empty, longer than ``limit`` characters, or holds
    a character that is not printable."""
    name = "".join(" " if unicodedata.category(c) == "Zs" else c
                   for c in unicodedata.normalize("NFC", value))
    name = _SPACES.sub(" ", name).strip(" \u200c\u200d")  # a joiner joins two letters
    if not 0 < len(name) <= limit:
        return None
    if all(c.isprintable() or c in _JOINERS for c in name):
        return name
    return None
