"""Client authentication at the bridge's PAR and token endpoints.

``client_secret_basic`` (RFC 6749 §2.3.1), ``client_secret_post`` (RFC 6749 §2.3.1) and
``private_key_jwt`` (OpenID Connect Core §9, a JWT client assertion per RFC 7523 §2.2 / §3).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, RSAKey, import_key
from requests.auth import AuthBase, HTTPBasicAuth

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
#: RFC 7523 §2.2 client_assertion_type.
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Lifetime of a client assertion, in seconds: long enough for one request.
ASSERTION_LIFETIME = 60


class ClientAuth:
    """How this client proves its identity; built once, bad parameters fail here."""

    def __init__(
        self,
        client_id: str,
        method: str,
        *,
        client_secret: str | None = None,
        private_key: Key | Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("client_id must be a non-empty string")
        if method not in AUTH_METHODS:
            raise ValueError(f"auth_method must be one of {', '.join(AUTH_METHODS)}")
        self.client_id = client_id
        self.method = method
        self._secret = client_secret
        self._key: Key | None = None
        self._alg = ""
        if method == "private_key_jwt":
            self._key, self._alg = _signing_key(private_key)
        elif not isinstance(client_secret, str) or not client_secret:
            raise ValueError(f"{method} needs a client_secret")

    def __repr__(self) -> str:
        return f"ClientAuth(client_id={self.client_id!r}, method={self.method!r})"

    def apply(
        self, *, issuer: str, endpoint: str, now: float
    ) -> tuple[dict[str, str], AuthBase | None]:
        """Form fields and ``requests`` auth for one request to ``endpoint``."""
        if self.method == "client_secret_basic":
            assert self._secret is not None
            # RFC 6749 §2.3.1: form-encode both parts before Basic encoding.
            user, password = quote(self.client_id, safe=""), quote(self._secret, safe="")
            return {}, HTTPBasicAuth(user, password)
        if self.method == "client_secret_post":
            assert self._secret is not None
            return {"client_id": self.client_id, "client_secret": self._secret}, None
        return {
            "client_id": self.client_id,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": self.client_assertion(issuer=issuer, endpoint=endpoint, now=now),
        }, None

    def client_assertion(self, *, issuer: str, endpoint: str, now: float) -> str:
        """A fresh signed JWT (RFC 7523 §3): iss = sub = client_id, aud = [issuer, endpoint],
        a random ``jti`` and an ``exp`` :data:`ASSERTION_LIFETIME` seconds ahead."""
        assert self._key is not None
        issued = int(now)
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": [issuer, endpoint] if endpoint != issuer else issuer,
            "jti": secrets.token_urlsafe(24),
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
        }
        header = {"alg": self._alg, "kid": self._key.kid}
        return jwt.encode(header, claims, self._key, algorithms=[self._alg])


def _signing_key(private_key: Key | Mapping[str, Any] | None) -> tuple[Key, str]:
    """Import the private key and pick its algorithm: ES256 for EC P-256, RS256 for RSA."""
    if private_key is None:
        raise ValueError("private_key_jwt needs a private_key")
    if isinstance(private_key, Key) and not private_key.is_private:
        raise ValueError("private_key must hold the private part of the key")
    try:
        data = private_key.as_dict(private=True) if isinstance(private_key, Key) else private_key
        key = import_key(dict(data))  # a copy: the caller's key object is left untouched
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValueError("private_key is not a usable JWK") from exc
    if isinstance(key, ECKey) and key.curve_name == "P-256":
        alg = "ES256"
    elif isinstance(key, RSAKey):
        alg = "RS256"
    else:
        raise ValueError("private_key must be an EC P-256 or an RSA key")
    if not key.is_private:
        raise ValueError("private_key must hold the private part of the key")
    try:  # a JWK may say what it is for ("alg", "use", "key_ops"): else every login would fail
        key.check_use("sig")
        key.check_alg(alg)
        key.check_key_op("sign")
    except JoseError as exc:
        raise ValueError(f"private_key is marked for another use than signing with {alg} "
                         "(its 'alg', 'use' or 'key_ops')") from exc
    key.ensure_kid()  # RFC 7638 thumbprint when the key has no kid of its own
    return key, alg
