"""The OpenID provider side: discovery, JWKS, PAR (RFC 9126), the token endpoint, assertions."""
