"""Second factors, free of any web framework: TOTP (RFC 6238) and the recovery code."""

import unicodedata

#: The name of each factor, as a flow records it and the assertion's ``amr`` carries it
#: (RFC 8176). TOTP is "otp"; a recovery code is not an RFC 6238/4226 one-time password, so
#: it gets its own value and a relying party can tell the two apart.
OTP = "otp"
RECOVERY_CODE = "rc"


def as_typed(typed: str) -> str:
    """What the user typed, in the characters a code is written in: without what groups it
    (any space, and any dash — hyphen, en and em dash, minus sign — that a word processor, a
    phone or a pasted note may put in), full-width forms (an East Asian input method's)
    as their plain ones, and any script's decimal digits (an Arabic keyboard's "١٢٣") as
    ASCII ones."""
    return "".join(str(int(c)) if c.isdecimal() else c for c in typed.translate(_FULL_WIDTH)
                   if not (c.isspace() or c == "\u2212" or unicodedata.category(c) == "Pd"))


#: Full-width ASCII (U+FF01 to U+FF5E) to ASCII: only these, not every NFKC folding (a
#: superscript two is no digit anyone typed for one).
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
