"""Second factors, free of any web framework: TOTP (RFC 6238) and the recovery code."""

import unicodedata

#: The name of each factor, as a flow records it and the assertion's ``amr`` carries it
#: (RFC 8176). TOTP is "otp"; a recovery code is not an RFC 6238/4226 one-time password, so
#: it gets its own value and a relying party can tell the two apart.
OTP = "otp"
RECOVERY_CODE = "rc"


def without_separators(typed: str) -> str:
    """What the user typed without what groups a code: any space, and any dash — hyphen, en
    and em dash, minus sign — that a word processor, a phone or a pasted note may put in."""
    return "".join(c for c in typed
                   if not (c.isspace() or c == "\u2212" or unicodedata.category(c) == "Pd"))
