"""Second factors, free of any web framework: TOTP (RFC 6238) and the recovery code."""
