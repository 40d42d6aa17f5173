"""Verifying the bridge's ``id_token`` (OpenID Connect Core §3.1.3.7) against its JWKS.

The JWKS (RFC 7517) is cached. An unknown ``kid`` means the bridge rotated its signing key:
the set is fetched again once, and such refetches are rate-limited so that a stream of
forged tokens cannot turn the client into a JWKS download loop.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import (
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key, KeySet
from joserfc.jwt import JWTClaimsRegistry

from .cached import Cached
from .errors import DiscoveryError, InvalidAssertion

#: Signature algorithms accepted in the id_token header; everything else (none, HS*) is refused.
ALLOWED_ALGS = ("ES256", "RS256")
#: Clock skew tolerated on ``exp``, ``iat`` and ``auth_time``, in seconds.
LEEWAY = 30
#: Longest life of the bridge's id_tokens (DESIGN.md: ``exp`` at most 5 minutes after ``iat``).
MAX_LIFETIME = 300
#: The key each accepted algorithm verifies with (RFC 7518 §3.1): type and, for EC, curve.
KEY_FOR_ALG = {"ES256": ("EC", "P-256"), "RS256": ("RSA", None)}


@dataclass(frozen=True)
class StepupResult:
    """A verified step-up: who (``subject`` = the login_hint), how (``acr``, ``amr``), when."""

    subject: str
    acr: str
    amr: tuple[str, ...]
    auth_time: int
    claims: dict[str, Any] = field(default_factory=dict, hash=False)


class JwksCache:
    """The bridge's signing keys, fetched lazily through ``fetch`` and kept ``max_age`` seconds.

    ``fetch`` returns the JWKS document (a dict with ``keys``). A ``kid`` not in the cached
    set triggers at most one refetch per ``refetch_interval`` seconds, which callers meeting
    an unknown ``kid`` meanwhile wait for. Fetches happen outside any lock; a failed one is
    remembered a short while and the last good keys are still used for a grace period
    (:class:`~.cached.Cached`).
    """

    def __init__(
        self,
        fetch: Callable[[], Mapping[str, Any]],
        *,
        clock: Callable[[], float],
        max_age: float = 300.0,  # the bridge's JWKS max-age: keys published ahead arrive
        refetch_interval: float = 60.0,
        wait: float = 10.0,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._refetch_interval = refetch_interval
        self._keys = Cached(self._load, what="JWKS", clock=clock, max_age=max_age, wait=wait)
        self._wait = wait
        self._refetched_at: float | None = None
        self._refetch: threading.Event | None = None  # set when the last refetch ended
        self._lock = threading.Lock()  # guards the two above only

    def key_for(self, kid: str, alg: str) -> Key:
        """The signing key with this ``kid`` usable with ``alg``; refetch once if it is unknown."""
        keys, fetched = self._keys.get()
        key = _find(keys, kid, alg)
        if key is None and not fetched:
            key = _find(self._refetched(), kid, alg)
        if key is None:
            raise InvalidAssertion("no key in the bridge's JWKS matches the id_token's kid")
        return key

    def _refetched(self) -> KeySet:
        """The keys after a refetch for an unknown kid: this caller's own (at most one per
        ``refetch_interval``), or the one in flight, which it waits for. Logins meeting a
        newly rotated key together would otherwise all but one fail while that one's
        refetch runs."""
        with self._lock:
            now = self._clock()
            flight, mine = self._refetch, False
            if flight is None or flight.is_set():
                last = self._refetched_at
                if last is None or now - last >= self._refetch_interval:
                    self._refetched_at, mine = now, True
                    flight = self._refetch = threading.Event()
                else:
                    flight = None  # refetched a moment ago: the cached keys are its result
        if mine:
            try:
                return self._keys.get(refresh=True)[0]
            finally:
                flight.set()
        if flight is not None:
            flight.wait(self._wait)
        return self._keys.get()[0]

    def _load(self) -> KeySet:
        document = self._fetch()
        keys = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(keys, list):
            raise DiscoveryError("the JWKS document has no 'keys' list", error="invalid_jwks")
        usable: list[Key] = []
        for entry in keys:  # RFC 7517 §5: a key this client cannot use is ignored, not fatal
            try:
                usable += KeySet.import_key_set({"keys": [entry]}).keys
            except (JoseError, ValueError, TypeError, KeyError, AttributeError):
                continue
        if not usable:
            raise DiscoveryError("the JWKS holds no usable key", error="invalid_jwks")
        return KeySet(usable)


def _find(keys: KeySet, kid: str, alg: str) -> Key | None:
    """The key with ``kid`` that can verify ``alg``: of its type and curve, and not marked for
    another algorithm or for encryption."""
    kty, crv = KEY_FOR_ALG[alg]
    for key in keys.keys:
        if (key.kid == kid and key.key_type == kty and (crv is None or key.get("crv") == crv)
                and key.get("alg") in (None, alg) and key.get("use") in (None, "sig")):
            return key
    return None


def verify_id_token(
    id_token: str,
    *,
    keys: JwksCache,
    issuer: str,
    client_id: str,
    nonce: str,
    subject: str,
    now: float,
    max_age: int | None = None,
    pushed_at: float | None = None,
    acr_values: Sequence[str] = (),
) -> StepupResult:
    """Verify signature and claims of an id_token (OpenID Connect Core §3.1.3.7, §2).

    Checks, in order: ``alg`` in :data:`ALLOWED_ALGS`, ``typ`` absent or ``JWT``, no ``crit``;
    a ``kid`` found in the JWKS; the signature; ``iss``; ``aud`` is exactly ``client_id`` and
    an ``azp``, if any, names it; ``exp`` and ``iat`` (with :data:`LEEWAY`; ``iat`` no older
    and ``exp - iat`` no longer than :data:`MAX_LIFETIME`); ``nonce`` is the string sent;
    ``sub`` equals ``subject``; ``acr``, ``amr`` and ``auth_time`` present and well-typed,
    ``auth_time`` not in the future, not before the request was pushed (``pushed_at``: the
    factor was used for this hand-off) and within ``max_age`` when one was requested; ``acr``
    one of ``acr_values`` when any were requested.
    """
    alg, kid = _read_header(id_token)
    key = keys.key_for(kid, alg)
    try:
        claims = jwt.decode(id_token, key, algorithms=[alg]).claims
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidAssertion("id_token signature does not verify") from exc
    _check_claims(claims, issuer=issuer, client_id=client_id, nonce=nonce, subject=subject, now=now)
    _check_lifetime(claims, now)
    result = _step_up_facts(claims)
    if result.auth_time > now + LEEWAY:
        raise InvalidAssertion("id_token auth_time lies in the future")
    if max_age is not None and result.auth_time + max_age < now - LEEWAY:
        raise InvalidAssertion("auth_time is older than the requested max_age")
    if pushed_at is not None and result.auth_time < pushed_at - LEEWAY:
        raise InvalidAssertion("id_token auth_time lies before this hand-off began")
    if isinstance(acr_values, str):  # one space-separated string, not its letters
        acr_values = acr_values.split()
    if acr_values and result.acr not in acr_values:
        raise InvalidAssertion("id_token acr is not one of the acr_values asked for")
    return result


def _read_header(id_token: str) -> tuple[str, str]:
    """The ``alg`` and ``kid`` of a compact JWS (RFC 7515 §7.1), before trusting anything else.

    ``typ``, when present, must be ``JWT`` (RFC 7519 §5.1; what the bridge sets): another
    type (``at+jwt``, ``logout+jwt``…) is some other token signed by the same keys. ``crit``
    is refused: the bridge never sets it and this client understands no extension.
    """
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        raise InvalidAssertion("id_token is not a compact JWS")
    try:
        header = jws.extract_compact(id_token.encode("ascii")).headers()
    except (JoseError, ValueError, TypeError, UnicodeError) as exc:
        raise InvalidAssertion("id_token header cannot be decoded") from exc
    alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ", "JWT")
    if alg not in ALLOWED_ALGS:
        raise InvalidAssertion(f"id_token alg must be one of {', '.join(ALLOWED_ALGS)}")
    if not isinstance(typ, str) or typ.upper() != "JWT":
        raise InvalidAssertion("id_token typ must be JWT")
    if "crit" in header:
        raise InvalidAssertion("id_token header has crit")
    if not isinstance(kid, str) or not kid:
        raise InvalidAssertion("id_token header has no kid")
    return alg, kid


def _check_claims(
    claims: dict[str, Any], *, issuer: str, client_id: str, nonce: str, subject: str, now: float
) -> None:
    """The standard claims, through joserfc's registry (RFC 7519 §4.1, OIDC Core §2), then
    compared exactly: the registry accepts a list that merely contains the expected value."""
    registry = JWTClaimsRegistry(
        now=int(now),
        leeway=LEEWAY,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True, "value": subject},
        nonce={"essential": True, "value": nonce},
        exp={"essential": True},
        iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError as exc:
        raise InvalidAssertion("id_token has expired") from exc
    except MissingClaimError as exc:
        raise InvalidAssertion(f"id_token lacks claim(s): {exc.claim}") from exc
    except JoseError as exc:
        claim = getattr(exc, "claim", "?")
        raise InvalidAssertion(f"id_token claim '{claim}' is not what was expected") from exc
    for name, expected in (("iss", issuer), ("sub", subject), ("nonce", nonce)):
        if not isinstance(claims[name], str) or claims[name] != expected:
            raise InvalidAssertion(f"id_token claim '{name}' is not what was expected")
    if claims["aud"] not in (client_id, [client_id]):
        raise InvalidAssertion("id_token claim 'aud' is not this client alone")
    if "azp" in claims and claims["azp"] != client_id:
        raise InvalidAssertion("id_token azp is not this client")


def _check_lifetime(claims: dict[str, Any], now: float) -> None:
    """The bridge's id_tokens live at most :data:`MAX_LIFETIME`: one issued longer ago, or
    meant to live longer, is not a fresh answer to this hand-off."""
    iat, exp = claims["iat"], claims["exp"]
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in (iat, exp)):
        raise InvalidAssertion("id_token iat and exp must be numbers")
    if iat < now - MAX_LIFETIME - LEEWAY:
        raise InvalidAssertion("id_token was issued too long ago ('iat')")
    if exp - iat > MAX_LIFETIME + LEEWAY:
        raise InvalidAssertion("id_token lives longer than the bridge issues them ('exp')")


def _step_up_facts(claims: dict[str, Any]) -> StepupResult:
    """``acr``, ``amr`` (RFC 8176 values, kept opaque) and ``auth_time`` (OIDC Core §2)."""
    acr, amr, auth_time = claims.get("acr"), claims.get("amr"), claims.get("auth_time")
    if not isinstance(acr, str) or not acr:
        raise InvalidAssertion("id_token has no acr")
    if not isinstance(amr, list) or not amr or not all(isinstance(m, str) for m in amr):
        raise InvalidAssertion("id_token has no amr list")
    if isinstance(auth_time, bool) or not isinstance(auth_time, int | float):
        raise InvalidAssertion("id_token has no numeric auth_time")
    try:
        finite = math.isfinite(auth_time)
    except OverflowError:  # an int past any float: 10**400
        finite = False
    if not finite:
        raise InvalidAssertion("id_token has no numeric auth_time")
    return StepupResult(
        subject=claims["sub"],
        acr=acr,
        amr=tuple(amr),
        auth_time=int(auth_time),
        claims=dict(claims),
    )
