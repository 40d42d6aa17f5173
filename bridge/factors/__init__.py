"""Second factors, free of any web framework: TOTP (RFC 6238) and the recovery code."""

#: The name of each factor, as a flow records it and the assertion's ``amr`` carries it
#: (RFC 8176). TOTP is "otp"; a recovery code is not an RFC 6238/4226 one-time password, so
#: it gets its own value and a relying party can tell the two apart.
OTP = "otp"
RECOVERY_CODE = "rc"
