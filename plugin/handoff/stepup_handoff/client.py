"""The IdP side of the hand-off: push the request, send the browser, redeem and verify.

One login is :meth:`HandoffClient.start` (RFC 9126 pushed authorization request with PKCE,
RFC 7636) then, when the browser comes back, :meth:`HandoffClient.finish` (RFC 9207 ``iss``
check, code redemption per RFC 6749 §4.1.3, id_token verification per OIDC Core §3.1.3.7).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import numbers
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NoReturn
from urllib.parse import unquote, urlencode

import requests
from joserfc.jwk import Key
from requests.auth import HTTPBasicAuth

from .assertion import JwksCache, StepupResult, verify_id_token
from .cached import Cached
from .client_auth import ClientAuth
from .deadline import bounded_session
from .discovery import ProviderMetadata, check_issuer, discover, get_json
from .errors import (
    AccessDenied,
    HandoffError,
    PushError,
    StateMismatch,
    TokenError,
    clip,
    error_code,
)
from .http_json import exchange

#: The longest ``timeout``: a user at a login screen waits no longer for one answer.
MAX_TIMEOUT = 600
#: Seconds the discovery document is trusted before it is fetched again.
METADATA_MAX_AGE = 3600.0
#: Largest answer read from the PAR and token endpoints, and the largest JWKS, in bytes.
ANSWER_LIMIT = 64 * 1024
JWKS_LIMIT = 256 * 1024
#: Longest ``expires_in`` a PAR answer may name, in seconds (RFC 9126 §2.2: a short lifetime;
#: the bridge's is at most 600 s). Beyond it the answer is broken, not generous.
MAX_REQUEST_URI_LIFETIME = 3600


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier (RFC 7636 §4.1, 86 characters) and its S256 challenge (§4.2)."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


_TEXT = (
    "state",
    "nonce",
    "code_verifier",
    "login_hint",
    "redirect_uri",
    "authorize_url",
    "issuer",
    "client_id",
)


@dataclass(frozen=True)
class PendingHandoff:
    """What the IdP keeps (server-side) between :meth:`~HandoffClient.start` and ``finish``."""

    state: str
    nonce: str
    code_verifier: str = field(repr=False)
    login_hint: str
    redirect_uri: str
    authorize_url: str
    expires_at: float = 0.0  # when the pushed request_uri stops working (RFC 9126 §2.2)
    max_age: int | None = None  # checked against auth_time by finish()
    issuer: str = ""  # the bridge it was started with: finish() refuses another (RFC 9207 §2.4)
    client_id: str = ""
    #: When the request was pushed: finish() refuses an auth_time before it (0: not known, a
    #: record kept by an older version). Last, so positional construction keeps its meaning.
    pushed_at: float = 0.0
    #: The ``acr_values`` asked for: finish() refuses an assertion of any other ``acr`` (OIDC
    #: Core §3.1.2.1 makes them voluntary, so the client checks). Empty: none asked for.
    acr_values: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; keep it where the user cannot read it (it holds the verifier)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingHandoff:
        """Rebuild from :meth:`to_dict`; a damaged record raises :class:`HandoffError`."""
        try:
            values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
            if any(not isinstance(values[name], str) or not values[name] for name in _TEXT):
                raise TypeError
            for name in _TEXT:
                values[name].encode()  # a lone surrogate cannot be sent: UnicodeEncodeError
            for name in ("expires_at", "pushed_at"):
                if isinstance(values.get(name), bool):  # float(True) is 1.0: no time at all
                    raise TypeError(name)
                values[name] = float(values.get(name, 0.0))
                if not math.isfinite(values[name]):
                    raise ValueError(name)
            if values.get("max_age") is not None:
                values["max_age"] = _whole_seconds(values["max_age"])
            values["acr_values"] = _words(values.get("acr_values", ()))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise HandoffError("stored hand-off is malformed", error="invalid_pending") from exc
        return cls(**values)


def _words(value: Any) -> tuple[str, ...]:
    """Stored ``acr_values``: a list of non-empty strings (JSON has no tuple)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError("acr_values")
    if not all(isinstance(word, str) and word for word in value):
        raise TypeError("acr_values")
    return tuple(value)


def _whole_seconds(value: Any) -> int:
    """A stored ``max_age``: a whole, non-negative number of seconds, however the store gives
    it back (``300``, ``300.0``, ``Decimal("300")``, ``"300"``); not ``True``, ``3.9``,
    ``inf``."""
    if isinstance(value, bool):
        raise ValueError("max_age")
    number = int(value) if isinstance(value, str) else value
    if not isinstance(number, numbers.Number) or number != int(number) or number < 0:
        raise ValueError("max_age")
    return int(number)


class HandoffClient:
    """Hands a user to the Stepup Bridge and verifies what comes back.

    Thread-safe; build one per bridge and reuse it (discovery and JWKS are cached).
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        *,
        client_secret: str | None = None,
        private_key: Key | Mapping[str, Any] | None = None,
        auth_method: str = "client_secret_basic",
        session: requests.Session | None = None,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_issuer(issuer)
        if (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                or not 0 < timeout <= MAX_TIMEOUT):  # NaN fails too; inf would overflow timers
            raise ValueError(f"timeout must be a number of seconds above 0, at most {MAX_TIMEOUT}")
        self.issuer = issuer
        self.client_id = client_id
        self._auth = ClientAuth(
            client_id, auth_method, client_secret=client_secret, private_key=private_key
        )
        self._session = bounded_session(session)
        self._timeout = timeout
        self._clock = clock
        # A JWKS fetch may first fetch discovery: a caller waiting for one waits for both.
        wait = 2 * timeout + 1
        self._metadata = Cached(
            self._discover, what="discovery", clock=clock, max_age=METADATA_MAX_AGE, wait=wait
        )
        self._keys = JwksCache(self._fetch_jwks, clock=clock, wait=wait)

    def __repr__(self) -> str:
        return f"HandoffClient(issuer={self.issuer!r}, client_id={self.client_id!r})"

    def metadata(self) -> ProviderMetadata:
        """The bridge's discovery document (OIDC Discovery §4), cached for an hour."""
        return self._metadata.get()[0]

    def _discover(self) -> ProviderMetadata:
        return discover(self._session, self.issuer, self._auth.method, timeout=self._timeout)

    def _fetch_jwks(self) -> Mapping[str, Any]:
        return get_json(
            self._session, self.metadata().jwks_uri, "JWKS", timeout=self._timeout, limit=JWKS_LIMIT
        )

    # -- start: pushed authorization request (RFC 9126 §2) ------------------------------------

    def start(
        self,
        login_hint: str,
        redirect_uri: str,
        *,
        preferred_username: str | None = None,
        email: str | None = None,
        acr_values: str | Sequence[str] | None = None,
        ui_locales: str | Sequence[str] | None = None,
        max_age: int | None = None,
        prompt: str | None = None,
    ) -> PendingHandoff:
        """Push the authorization request; send the browser to the result's ``authorize_url``.

        ``login_hint`` is the IdP's stable user id and becomes the assertion's ``sub``;
        ``email``, a *verified* address, is where the bridge sends the user's security notices.
        """
        if not isinstance(login_hint, str) or not login_hint:
            raise ValueError("login_hint must be a non-empty string")
        if max_age is not None and (
            isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0
        ):
            raise ValueError("max_age must be a non-negative integer")
        acr_list = _space_list(acr_values)
        meta = self.metadata()
        pushed_at = self._clock()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "scope": "openid",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": login_hint,
        }
        optional = {
            "preferred_username": preferred_username,
            "email": email,
            "acr_values": acr_list,
            "ui_locales": _space_list(ui_locales),
            "max_age": None if max_age is None else str(max_age),
            "prompt": prompt,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        body = self._post(meta.pushed_authorization_request_endpoint, params, PushError, "PAR")
        request_uri, expires_in = body.get("request_uri"), body.get("expires_in")
        if not isinstance(request_uri, str) or not request_uri:
            raise PushError("PAR response has no request_uri", error="invalid_response")
        if (isinstance(expires_in, bool) or not isinstance(expires_in, int)
                or not 0 < expires_in <= MAX_REQUEST_URI_LIFETIME):
            raise PushError("PAR response has no valid expires_in", error="invalid_response")
        query = urlencode({"client_id": self.client_id, "request_uri": request_uri})
        sep = "&" if "?" in meta.authorization_endpoint else "?"
        return PendingHandoff(
            state=state,
            nonce=nonce,
            code_verifier=verifier,
            login_hint=login_hint,
            redirect_uri=redirect_uri,
            authorize_url=f"{meta.authorization_endpoint}{sep}{query}",
            expires_at=self._clock() + expires_in,
            pushed_at=pushed_at,
            max_age=max_age,
            issuer=self.issuer,
            client_id=self.client_id,
            acr_values=tuple(acr_list.split()) if acr_list else (),
        )

    # -- finish: callback, code redemption, id_token ------------------------------------------

    def finish(self, pending: PendingHandoff, callback_params: Mapping[str, str]) -> StepupResult:
        """Check the callback, redeem the code and return the verified step-up.
        ``callback_params``: the callback's query as one string per name (Flask's
        ``request.args``, ``dict(parse_qsl(query))``), not ``parse_qs``' lists."""
        if not isinstance(callback_params, Mapping) or not all(
                v is None or isinstance(v, str) for v in callback_params.values()):
            raise TypeError("callback_params must map each name to one string "
                            "(request.args, or dict(parse_qsl(query)))")
        callback_params = {k: v for k, v in callback_params.items() if v is not None}
        self._check_bridge(pending)
        self._check_state(pending, callback_params)
        self._check_iss(callback_params)
        _raise_error_response(callback_params)
        code = callback_params.get("code")
        if not isinstance(code, str) or not code:
            raise HandoffError("callback carries neither code nor error", error="invalid_response")
        if not (code.isascii() and code.isprintable()):  # RFC 6749 App. A.11: VSCHAR
            raise HandoffError("callback code is not a code", error="invalid_response")
        id_token = self._redeem(pending, code)
        return verify_id_token(
            id_token,
            keys=self._keys,
            issuer=self.issuer,
            client_id=self.client_id,
            nonce=pending.nonce,
            subject=pending.login_hint,
            now=self._clock(),
            max_age=pending.max_age,
            pushed_at=pending.pushed_at or None,
            acr_values=pending.acr_values,
        )

    def _check_bridge(self, pending: PendingHandoff) -> None:
        """RFC 9207 §2.4 (mix-up): an IdP handing off to several bridges finishes each hand-off
        with the client that started it, so a code is never redeemed at another bridge."""
        if pending.issuer != self.issuer or pending.client_id != self.client_id:
            raise HandoffError(
                "this hand-off was started with another bridge or client",
                error="issuer_mismatch",
            )

    @staticmethod
    def _check_state(pending: PendingHandoff, params: Mapping[str, str]) -> None:
        """RFC 6749 §10.12: the callback belongs to this browser's hand-off."""
        received = params.get("state")
        # The state is ASCII (token_urlsafe); other text, a lone surrogate say, cannot match
        # and would not encode.
        if not isinstance(received, str) or not received.isascii() or not hmac.compare_digest(
            received.encode("utf-8"), pending.state.encode("utf-8")
        ):
            raise StateMismatch("callback state does not match this hand-off")

    def _check_iss(self, params: Mapping[str, str]) -> None:
        """RFC 9207 §2.4: ``iss`` equals the issuer; required when discovery promises it."""
        iss = params.get("iss")
        if iss is None:
            if self.metadata().iss_parameter_supported:
                raise HandoffError("callback lacks the iss parameter", error="missing_iss")
        elif iss != self.issuer:
            raise HandoffError("callback iss is not this bridge", error="issuer_mismatch")

    def _redeem(self, pending: PendingHandoff, code: str) -> str:
        """RFC 6749 §4.1.3 with the PKCE verifier (RFC 7636 §4.5); returns the id_token."""
        params = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        body = self._post(
            self.metadata().token_endpoint, params, TokenError, "token endpoint", expect=200
        )
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise TokenError("token response has no id_token", error="invalid_response")
        return id_token

    def _post(
        self,
        endpoint: str,
        params: dict[str, str],
        failure: type[HandoffError],
        what: str,
        *,
        expect: int = 201,
    ) -> dict[str, Any]:
        """POST a form with client authentication; redirects are refused (they would carry
        credentials elsewhere). Errors become ``failure`` with the OAuth error code."""
        extra, auth = self._auth.apply(issuer=self.issuer, endpoint=endpoint, now=self._clock())
        status, body = exchange(
            self._session,
            "POST",
            endpoint,
            failure=failure,
            what=what,
            limit=ANSWER_LIMIT,
            timeout=self._timeout,
            data={**params, **extra},
            auth=auth,
        )
        if status != expect:
            sent = [v for k, v in {**params, **extra}.items() if k in _NOT_QUOTED]
            if isinstance(auth, HTTPBasicAuth):
                sent += [auth.password, unquote(auth.password)]
            _raise_endpoint_error(status, body, failure, sent)
        if body is None:
            raise failure("response is not a JSON object", error="invalid_response")
        return body


def _space_list(value: str | Sequence[str] | None) -> str | None:
    """OAuth lists are space-separated strings (RFC 6749 §3.3)."""
    if value is None or isinstance(value, str):
        return value
    return " ".join(value)


#: Request fields never repeated in a message (a redirect_uri or grant_type quoted back is what
#: makes a refusal readable, and stays).
_NOT_QUOTED = frozenset({"code", "code_verifier", "client_secret", "client_assertion",
                         "login_hint", "email", "preferred_username"})


def _raise_endpoint_error(
    status: int, body: Mapping[str, Any] | None, failure: type[HandoffError], sent: list[str]
) -> NoReturn:
    """An error response (RFC 6749 §5.2, RFC 9126 §2.3) as ``failure``. The credentials and
    personal data the request sent (:data:`_NOT_QUOTED`) are cut out of the description, should
    the server quote them: the message goes to the IdP's logs."""
    body = body or {}
    code = error_code(body.get("error"), f"http_{status}")
    description = body.get("error_description")
    if isinstance(description, str):
        for value in sorted((v for v in sent if isinstance(v, str) and v), key=len,
                            reverse=True):
            # A short value (a user id "4711", a name) only where it stands alone: cut out
            # inside other words it would leave the description unreadable.
            description = (description.replace(value, "[…]") if len(value) >= 6 else
                           re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", "[…]", description))
    raise failure(clip(description) or f"HTTP {status}", error=code)


def _raise_error_response(params: Mapping[str, str]) -> None:
    """The authorization error response (RFC 6749 §4.1.2.1), once state and iss are checked."""
    if "error" not in params:
        return
    code = error_code(params.get("error"), "invalid_response")
    description = clip(params.get("error_description"))
    if code == "access_denied":
        raise AccessDenied(description or "the user cancelled or is locked out")
    raise HandoffError(description, error=code)
