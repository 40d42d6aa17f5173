"""Registered IdPs as OAuth clients, and how they authenticate (RFC 6749 §2.3, RFC 7523).

Secrets are kept only as HMAC-SHA-256 under the server pepper. ``private_key_jwt`` clients
are verified against the keys at their ``jwks_uri`` (fetched sparingly: :class:`ClientKeys`);
each assertion's ``jti`` is used once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

from authlib.oauth2.rfc6749 import ClientMixin, InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from stepup_handoff.deadline import Deadline, bounded_session

from ..keyring import ALGORITHMS
from ..settings import is_local_host
from ..store import Client, Store
from ..text import CLIENT_ID_LIMIT, URI_LIMIT, display_name, is_protocol_value

log = logging.getLogger("stepup")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
KEY_METHOD = "private_key_jwt"
AUTH_METHODS = (*SECRET_METHODS, KEY_METHOD)
#: Longest a client assertion may still be valid for when it arrives, in seconds.
ASSERTION_LIFETIME = 3600
#: The scope of the help-desk API; only clients registered with ``--admin`` get it.
ADMIN_SCOPE = "stepup:admin"


def secret_digest(pepper: bytes, secret: str) -> str:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


#: The parameters of the authorization response (RFC 6749 §4.1.2, §4.1.2.1; RFC 9207): a
#: redirect_uri that already carries one would reach the IdP with two values for it.
RESPONSE_PARAMETERS = frozenset({"code", "state", "iss", "error", "error_description",
                                 "error_uri"})


def _split(uri: str) -> SplitResult | None:
    """The URI's parts, or None where urlsplit cannot take it apart (an unclosed "[" of an
    IPv6 host): such text is no URL, never a 500."""
    try:
        return urlsplit(uri)
    except ValueError:
        return None


def carries_response_parameters(uri: str) -> bool:
    parts = _split(uri)
    return parts is not None and bool(RESPONSE_PARAMETERS.intersection(
        name for name, _ in parse_qsl(parts.query, keep_blank_values=True)))


def redirect_uri_allowed(client: Client, uri: str) -> bool:
    """Exact match against a registered URI, or — for the query only — a registered prefix.

    DESIGN rule 2: a prefix matches a URI with the same scheme, host, port and path; only the
    query may differ (Keycloak puts a per-login ``client_data`` in its callback URL).
    """
    parts = _split(uri)
    # RFC 6749 §3.1.2: no fragment, not even an empty one (urlsplit: ""); no user information,
    # even in a URI registered before `client add` refused it. No space either (RFC 3986 has
    # none; urlsplit would strip a leading one, and the callback would start with it).
    if (parts is None or "#" in uri or " " in uri
            or parts.username is not None or parts.password is not None):
        return False
    if uri in client.redirect_uris:
        return True
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
        # A client with no redirect URI (a help-desk tool) can never receive a code: RFC 6749
        # §5.2's unauthorized_client says so, where a missing URI would blame the request.
        if grant_type == "authorization_code":
            return bool(self.record.redirect_uris or self.record.redirect_uri_prefixes)
        return grant_type == "client_credentials" and self.record.admin


class ClientKeys:
    """Each client's JWKS, fetched from its ``jwks_uri`` and cached for ``ttl`` seconds.

    Anyone can send an assertion naming a ``private_key_jwt`` client, and its keys are
    fetched before its signature can be checked, so the fetches are rationed per jwks_uri:

    - a fetch, from the connection to the last byte, takes at most ``timeout`` seconds and
      ``limit`` bytes (a :class:`~stepup_handoff.deadline.Deadline`, not a socket timeout that
      restarts with every byte);
    - a failed fetch is remembered for ``interval`` seconds: meanwhile the client's assertions
      fail at once (``invalid_client``) with no network call;
    - an assertion whose ``kid`` is not in the cached set (the client rotated its key) refetches
      the set at once (OpenID Connect Core §10.1.1), at most once per ``interval`` seconds;
    - one fetch at a time per jwks_uri: requests arriving meanwhile wait for its outcome.

    ``interval`` is 30 s by default, a tenth of the TTL: however many assertions flood in, an
    endpoint that hangs holds a worker for one 5 s fetch (and a second of grace) per 30 s, and
    a client whose endpoint recovers, or whose new key was refused, waits at most 30 s.
    The cache is per process (each gunicorn worker has its own).
    """

    def __init__(self, ttl: float = 300, timeout: float = 5, interval: float = 30,
                 limit: int = 64 * 1024, clock: Callable[[], float] = time.monotonic):
        if ttl <= 0 or timeout <= 0 or interval < 0 or limit <= 0:
            raise ValueError("ttl, timeout and limit must be positive, interval not negative")
        self.ttl, self.timeout, self.interval, self.limit = ttl, timeout, interval, limit
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, jwks_uri: str, kid: str | None = None) -> KeySet:
        """The keys at ``jwks_uri``, for an assertion signed with ``kid`` (None: not named);
        raises :class:`KeysUnavailable` (401) when they cannot be had."""
        with self._lock:
            entry = self._entries.setdefault(jwks_uri, _Entry())
        with entry.lock:
            now = self._clock()
            fresh = entry.keys is not None and now < entry.expires
            if fresh and (kid is None or kid in entry.kids):
                return entry.keys
            if now < entry.failed_until:  # failed lately: no network call
                raise KeysUnavailable(status_code=401)
            if fresh:  # an unknown kid
                if now < entry.refetch_after:
                    return entry.keys  # refetched lately: the signature check refuses it
                entry.refetch_after = now + self.interval
            try:
                keys = self._fetch(jwks_uri)
            except KeysUnavailable:
                entry.failed_until = self._clock() + self.interval
                raise
            entry.keys, entry.expires = keys, self._clock() + self.ttl
            entry.kids = frozenset(key.kid for key in keys.keys if key.kid)
            return keys

    def _fetch(self, jwks_uri: str) -> KeySet:
        import requests  # only private_key_jwt clients need it: not loaded in every worker

        try:
            with Deadline(self.timeout) as deadline, bounded_session() as session:
                body = deadline.run(lambda: self._download(session, jwks_uri))
            return KeySet.import_key_set(json.loads(body))
        except Exception as e:  # whatever the answer does (JSON nested past the recursion
            # limit, a key joserfc refuses, a thread that cannot start): no keys, a 401
            late = deadline.expired or isinstance(e, requests.Timeout)
            log.warning("cannot use the JWKS of a private_key_jwt client: %s",
                        f"no whole answer within {self.timeout:g} s" if late
                        else type(e).__name__)
            raise KeysUnavailable(status_code=401) from e

    def _download(self, session: Any, jwks_uri: str) -> bytes:
        with session.get(jwks_uri, timeout=self.timeout, allow_redirects=False,
                         stream=True) as response:
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_content(16 * 1024):
                body += chunk
                if len(body) > self.limit:
                    raise TooLarge(f"more than {self.limit} bytes")
            return bytes(body)


class NothingTried(InvalidClientError):
    """An assertion refused before any key checked its signature (an algorithm discovery does
    not name, a client without keys): it fails like any other (one uniform ``invalid_client``),
    but no credential was tried, so it is no guess for the caller's failure window
    (``throttle.ClientAuthWindow``); unsigned junk must not close an IdP's back channel."""


class KeysUnavailable(NothingTried):
    """A ``private_key_jwt`` client's keys could not be had."""


class TooLarge(ValueError):
    """A JWKS over :attr:`ClientKeys.limit` bytes."""


@dataclass
class _Entry:
    """What :class:`ClientKeys` knows of one jwks_uri (times on its clock)."""

    keys: KeySet | None = None
    kids: frozenset[str] = frozenset()
    expires: float = -math.inf  # the keys' end
    failed_until: float = -math.inf  # no fetch before, after a failed one
    refetch_after: float = -math.inf  # no refetch for an unknown kid before
    lock: threading.Lock = field(default_factory=threading.Lock)  # one fetch at a time


class PrivateKeyJWT(JWTBearerClientAssertion):
    """``private_key_jwt`` (OpenID Connect Core §9, RFC 7523 §2.2) for the PAR and token
    endpoints: the audience may be the issuer or the endpoint URL.

    Stricter than authlib's, as anyone may send an assertion naming a client:
    - signed with an algorithm discovery names (joserfc's defaults take HS256 too, with which
      a symmetric key in the client's public JWKS would let anyone sign);
    - every ``aud`` one of the bridge's (RFC 7523 §3: an assertion also meant for another
      server could be replayed here by it);
    - ``exp`` at most :data:`ASSERTION_LIFETIME` ahead (RFC 7523 §3 lets a server refuse a
      far one; its ``jti`` is kept until then);
    - a refusal never carries joserfc's text: it quotes the assertion's header, and the
      answer is one uniform ``invalid_client`` anyway.
    """

    CLIENT_AUTH_METHOD = KEY_METHOD

    def __init__(self, store: Store, keys: ClientKeys, audiences: list[str],
                 clock: Callable[[], float] = time.time):
        super().__init__(validate_jti=True, leeway=30)
        self._store, self._keys, self._audiences, self._clock = store, keys, audiences, clock

    def get_audiences(self) -> list[str]:
        return self._audiences

    def extract_assertion(self, assertion: str):
        try:
            return super().extract_assertion(assertion)
        except RecursionError:  # a payload nested deeper than json can read
            raise InvalidClientError(status_code=401) from None

    def process_assertion_claims(self, assertion: str, resolve_key):
        # authlib's, which has no way to pass the algorithms, and keeps joserfc's text.
        tried = False

        def keys(token: Any) -> KeySet:  # joserfc asks only once the header passed
            nonlocal tried
            tried = True
            return resolve_key(token)
        try:
            token = jwt.decode(assertion, keys, algorithms=list(ALGORITHMS))
        except JoseError:
            raise (InvalidClientError if tried else NothingTried)(status_code=401) from None
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: dict) -> None:
        audiences = claims.get("aud")
        if not isinstance(audiences, list):
            audiences = [audiences]
        exp = claims.get("exp")
        if (not all(a in self._audiences for a in audiences)
                or not isinstance(exp, int | float) or isinstance(exp, bool)
                or exp > self._clock() + ASSERTION_LIFETIME):
            raise InvalidClientError(status_code=401)
        super().verify_claims(claims)

    def validate_jti(self, claims, jti: str) -> bool:
        with self._store.begin() as tx:
            return tx.use_assertion_id(claims["sub"], str(jti), float(claims["exp"]) + 60)

    def resolve_client_public_key(self, client: ClientModel) -> Callable[[Any], KeySet]:
        """A function of the assertion, which joserfc calls once it has checked the header
        and the algorithm: the keys are fetched only then, and the ``kid`` decides whether a
        cached set is refetched."""
        jwks_uri = client.record.jwks_uri
        if not jwks_uri:  # a client_secret client sent an assertion
            raise NothingTried(status_code=401)

        def keys(token: Any) -> KeySet:
            kid = token.headers().get("kid")
            return self._keys.get(jwks_uri, kid if isinstance(kid, str) else None)
        return keys


#: Longest client name: what a notice calls the client's sign-ins, a name to recognise.
CLIENT_NAME_LIMIT = 100
SECRET_LIMIT = 1024


def new_client(pepper: bytes, client_id: str, *, secret: str | None, jwks_uri: str | None,
               redirect_uris: list[str], redirect_uri_prefixes: list[str],
               id_token_alg: str = "ES256", allow_enrollment: bool = True,
               admin: bool = False, name: str | None = None,
               kept_digest: str | None = None) -> Client:
    """Check a registration and build its record; raises ValueError with a one-line reason.
    ``kept_digest``: the client keeps the secret of its registration before (the realm's
    install run again, where Keycloak shows the secret only masked)."""
    check_names(client_id, redirect_uris, redirect_uri_prefixes)
    name = None if name is None else client_name(name)
    if bool(secret or kept_digest) == bool(jwks_uri):
        raise ValueError("give exactly one of --client-secret (or STEPUP_CLIENT_SECRET) or "
                         "--jwks-uri")
    if secret is not None and not 16 <= len(secret) <= SECRET_LIMIT:
        raise ValueError(f"the client secret must be 16 to {SECRET_LIMIT} characters")
    if secret is not None and not (is_protocol_value(secret, SECRET_LIMIT)
                                   and _basic_safe(secret)):
        raise ValueError("the client secret must be printable ASCII without spaces or '%'")
    if jwks_uri and not _is_http_url(jwks_uri):
        raise ValueError(f"the JWKS URI is not an http(s) URL: {jwks_uri!r}")
    if jwks_uri and in_clear(jwks_uri):
        # Whoever is on the way could hand over keys of their own and be this client
        # (RFC 8414 §2 and OpenID Connect Discovery ask https of a jwks_uri).
        raise ValueError("the JWKS URI must use https (plain http only to this machine: "
                         f"127.0.0.1, ::1 or localhost): {jwks_uri!r}")
    if not redirect_uris and not redirect_uri_prefixes and not admin:
        raise ValueError("give at least one --redirect-uri or --redirect-uri-prefix")
    if admin and (redirect_uris or redirect_uri_prefixes):
        # Least privilege: a leaked help-desk secret must not also start sign-ins, nor an
        # IdP's reset anyone's factors. Register the two as two clients.
        raise ValueError("an --admin client is a help-desk tool, not an IdP: give it no "
                         "--redirect-uri or --redirect-uri-prefix")
    if id_token_alg not in ("ES256", "RS256"):
        raise ValueError("the id_token algorithm must be ES256 or RS256")
    return Client(
        client_id=client_id,
        secret_digest=secret_digest(pepper, secret) if secret else kept_digest,
        jwks_uri=jwks_uri,
        redirect_uris=list(redirect_uris),
        redirect_uri_prefixes=list(redirect_uri_prefixes),
        id_token_alg=id_token_alg,
        allow_enrollment=allow_enrollment,
        created_at=time.time(),
        admin=admin,
        client_name=name,
    )


def client_name(value: str) -> str:
    """``value`` as a client's name (a display name); raises ValueError with the rule."""
    if (name := display_name(value, CLIENT_NAME_LIMIT)) is None:
        raise ValueError(f"the client name must be 1 to {CLIENT_NAME_LIMIT} printable "
                         "characters")
    return name


def check_names(client_id: str, redirect_uris: list[str], redirect_uri_prefixes: list[str]
                ) -> None:
    """The client id and the redirect URIs of a registration; `keycloak install` checks them
    before it changes the realm."""
    if not (is_protocol_value(client_id, CLIENT_ID_LIMIT) and _basic_safe(client_id)
            and ":" not in client_id):  # HTTP Basic ends the user-id at its first ":"
        raise ValueError(f"the client id must be 1 to {CLIENT_ID_LIMIT} printable ASCII "
                         "characters, without spaces, '%' or ':'")
    for uri in [*redirect_uris, *redirect_uri_prefixes]:
        if not _is_http_url(uri) or "#" in uri:
            raise ValueError(f"not an http(s) URL without fragment: {uri!r}")
        if "@" in urlsplit(uri).netloc:  # no redirect_uri with user information is ever taken
            raise ValueError(f"a redirect URI cannot carry user information: {uri!r}")
        if in_clear(uri):
            # The authorization code would cross the network in clear (RFC 9700 §2.6, RFC 6749
            # §3.1.2.1); the bridge's own back channel is https for the same reason.
            raise ValueError("a redirect URI must use https (plain http only to this machine: "
                             f"127.0.0.1, ::1 or localhost): {uri!r}")
    for uri in redirect_uris:  # /par refuses such a redirect_uri: it could never be used
        if carries_response_parameters(uri):
            raise ValueError("a redirect URI's query cannot hold the response's own parameters "
                             f"(code, state, iss, error, error_description, error_uri): {uri!r}")


def in_clear(uri: str) -> bool:
    """Plain http to another machine: a code sent there crosses the network in clear."""
    parts = urlsplit(uri)
    return parts.scheme != "https" and not is_local_host(parts.hostname)


def _basic_safe(value: str) -> bool:
    """Read alike in HTTP Basic from a client that form-encodes its credentials (RFC 6749
    §2.3.1: a space becomes "+", "%" becomes "%25") and from one that sends them raw, as most
    do: authlib percent-decodes them and keeps "+". Only a space or a "%" reads differently."""
    return " " not in value and "%" not in value


def _is_http_url(uri: str) -> bool:
    """An http(s) URL of printable ASCII without spaces (RFC 3986): a redirect URI is compared
    as the IdP sends it, and /par takes only such text, so one with a control character could
    never match (urlsplit drops tabs and newlines unseen), and would reach `client list`."""
    if not is_protocol_value(uri, URI_LIMIT) or " " in uri:
        return False
    parts = _split(uri)
    return parts is not None and parts.scheme in ("http", "https") and bool(parts.netloc)
