"""Registered IdPs as OAuth clients, and how they authenticate (RFC 6749 §2.3, RFC 7523).

Secrets are kept only as HMAC-SHA-256 under the server pepper. ``private_key_jwt`` clients
are verified against the keys at their ``jwks_uri``; each assertion's ``jti`` is used once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin, InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..store import Client, Store
from ..text import CLIENT_ID_LIMIT, is_protocol_value

log = logging.getLogger("stepup")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
KEY_METHOD = "private_key_jwt"
AUTH_METHODS = (*SECRET_METHODS, KEY_METHOD)
#: The scope of the help-desk API; only clients registered with ``--admin`` get it.
ADMIN_SCOPE = "stepup:admin"


def secret_digest(pepper: bytes, secret: str) -> str:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def redirect_uri_allowed(client: Client, uri: str) -> bool:
    """Exact match against a registered URI, or — for the query only — a registered prefix.

    DESIGN rule 2: a prefix matches a URI with the same scheme, host, port and path; only the
    query may differ (Keycloak puts a per-login ``client_data`` in its callback URL).
    """
    if uri in client.redirect_uris:
        return True
    parts = urlsplit(uri)
    if parts.fragment or parts.username or parts.password:
        return False
    for prefix in client.redirect_uri_prefixes:
        base = urlsplit(prefix)
        if (parts.scheme, parts.netloc.lower(), parts.path) == (
            base.scheme, base.netloc.lower(), base.path
        ):
            return True
    return False


class ClientModel(ClientMixin):
    """authlib's view of a registered client."""

    def __init__(self, record: Client, pepper: bytes):
        self.record = record
        self._pepper = pepper

    @property
    def id_token_signed_response_alg(self) -> str:
        return self.record.id_token_alg

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # PAR always names the redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        allowed = {"openid", ADMIN_SCOPE} if self.record.admin else {"openid"}
        return " ".join(s for s in dict.fromkeys((scope or "").split()) if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri_allowed(self.record, redirect_uri)

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.record.secret_digest or not isinstance(client_secret, str):
            return False
        candidate = secret_digest(self._pepper, client_secret)
        return hmac.compare_digest(candidate, self.record.secret_digest)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.record.jwks_uri:
            return method == KEY_METHOD
        return method in SECRET_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code" or (
            grant_type == "client_credentials" and self.record.admin)


class ClientKeys:
    """Caches each client's JWKS for ``ttl`` seconds; a failed fetch is an auth failure."""

    def __init__(self, ttl: float = 300, timeout: float = 5):
        self.ttl, self.timeout = ttl, timeout
        self._cache: dict[str, tuple[float, KeySet]] = {}
        self._lock = threading.Lock()

    def get(self, jwks_uri: str) -> KeySet:
        with self._lock:
            hit = self._cache.get(jwks_uri)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        import requests  # only private_key_jwt clients need it: not loaded in every worker

        try:
            response = requests.get(jwks_uri, timeout=self.timeout, allow_redirects=False)
            response.raise_for_status()
            keys = KeySet.import_key_set(response.json())
        except (requests.RequestException, ValueError, TypeError, KeyError, JoseError) as e:
            # Not cached: the next assertion tries again.
            log.warning("cannot use the JWKS of a private_key_jwt client: %s", type(e).__name__)
            raise InvalidClientError(status_code=401) from e
        with self._lock:
            self._cache[jwks_uri] = (time.monotonic() + self.ttl, keys)
        return keys


class PrivateKeyJWT(JWTBearerClientAssertion):
    """``private_key_jwt`` (OpenID Connect Core §9, RFC 7523 §2.2) for the PAR and token
    endpoints: the audience may be the issuer or the endpoint URL."""

    CLIENT_AUTH_METHOD = KEY_METHOD

    def __init__(self, store: Store, keys: ClientKeys, audiences: list[str]):
        super().__init__(validate_jti=True, leeway=30)
        self._store, self._keys, self._audiences = store, keys, audiences

    def get_audiences(self) -> list[str]:
        return self._audiences

    def validate_jti(self, claims, jti: str) -> bool:
        with self._store.begin() as tx:
            return tx.use_assertion_id(claims["sub"], str(jti), float(claims["exp"]) + 60)

    def resolve_client_public_key(self, client: ClientModel) -> KeySet:
        if not client.record.jwks_uri:  # a client_secret client sent an assertion
            raise InvalidClientError(status_code=401)
        return self._keys.get(client.record.jwks_uri)


def new_client(pepper: bytes, client_id: str, *, secret: str | None, jwks_uri: str | None,
               redirect_uris: list[str], redirect_uri_prefixes: list[str],
               id_token_alg: str = "ES256", allow_enrollment: bool = True,
               admin: bool = False) -> Client:
    """Check a registration and build its record; raises ValueError with a one-line reason."""
    if not is_protocol_value(client_id, CLIENT_ID_LIMIT):
        raise ValueError(f"the client id must be 1 to {CLIENT_ID_LIMIT} printable ASCII "
                         "characters")
    if bool(secret) == bool(jwks_uri):
        raise ValueError("give exactly one of --client-secret or --jwks-uri")
    if secret is not None and len(secret) < 16:
        raise ValueError("the client secret must be at least 16 characters")
    if jwks_uri and not _is_http_url(jwks_uri):
        raise ValueError(f"the JWKS URI is not an http(s) URL: {jwks_uri}")
    if not redirect_uris and not redirect_uri_prefixes and not admin:
        raise ValueError("give at least one --redirect-uri or --redirect-uri-prefix")
    for uri in [*redirect_uris, *redirect_uri_prefixes]:
        if not _is_http_url(uri) or urlsplit(uri).fragment:
            raise ValueError(f"not an http(s) URL without fragment: {uri}")
    if id_token_alg not in ("ES256", "RS256"):
        raise ValueError("the id_token algorithm must be ES256 or RS256")
    return Client(
        client_id=client_id,
        secret_digest=secret_digest(pepper, secret) if secret else None,
        jwks_uri=jwks_uri,
        redirect_uris=list(redirect_uris),
        redirect_uri_prefixes=list(redirect_uri_prefixes),
        id_token_alg=id_token_alg,
        allow_enrollment=allow_enrollment,
        created_at=time.time(),
        admin=admin,
    )


def _is_http_url(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
