"""A fake Stepup Bridge for the hand-off client tests (used through tests/plugin/conftest.py).

The fake records every PAR and token request (parsed) so tests can check them field by
field, and mints id_tokens from the pushed request unless a test changes the claims,
the header or the signing key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import responses
from joserfc import jwt
from joserfc.jwk import ECKey, Key

ISSUER = "https://bridge.example"
CLIENT_ID = "idp.example"
# Characters that RFC 6749 §2.3.1 form-encoding must survive in the Basic header.
CLIENT_SECRET = "s3cret +/:%value"
REDIRECT_URI = "https://idp.example/callback?session=abc"
CODE = "the-code-from-the-bridge"
START = 1_800_000_000
ACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def discovery_document(issuer: str = ISSUER) -> dict[str, Any]:
    """What the bridge publishes (DESIGN.md, "The hand-off protocol")."""
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "pushed_authorization_request_endpoint": f"{issuer}/par",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "require_pushed_authorization_requests": True,
        "authorization_response_iss_parameter_supported": True,
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        "code_challenge_methods_supported": ["S256"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
    }


def public_jwk(key: Key) -> dict[str, Any]:
    return key.as_dict(private=False)


@dataclass
class FakeBridge:
    """The bridge's back channel: discovery, JWKS, PAR and token endpoints."""

    clock: Clock
    signing_key: Key
    published: list[Key]
    issuer: str = ISSUER
    discovery: dict[str, Any] = field(default_factory=dict)  # empty: the issuer's document
    par_requests: list[responses.PreparedRequest] = field(default_factory=list)
    token_requests: list[responses.PreparedRequest] = field(default_factory=list)
    jwks_fetches: int = 0
    discovery_fetches: int = 0
    par_reply: tuple[int, dict[str, Any]] | None = None
    token_reply: tuple[int, dict[str, Any]] | None = None
    claim_changes: dict[str, Any] = field(default_factory=dict)  # value None: drop the claim
    header_changes: dict[str, Any] = field(default_factory=dict)
    amr: list[str] = field(default_factory=lambda: ["otp"])
    down: set[str] = field(default_factory=set)  # "discovery", "jwks": answer 503 (counted)
    #: Raw JWKS entries published before the keys (ones a client cannot use, say).
    extra_jwks: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.discovery = self.discovery or discovery_document(self.issuer)

    def install(self, rsps: responses.RequestsMock) -> None:
        issuer = self.issuer
        rsps.add_callback("GET", f"{issuer}/.well-known/openid-configuration", self._discovery)
        rsps.add_callback("GET", f"{issuer}/jwks", self._jwks)
        rsps.add_callback("POST", f"{issuer}/par", self._par)
        rsps.add_callback("POST", f"{issuer}/token", self._token)

    def elsewhere(self, issuer: str, rsps: responses.RequestsMock) -> FakeBridge:
        """Another bridge at ``issuer`` (sharing these keys), installed in ``rsps``."""
        other = FakeBridge(clock=self.clock, signing_key=self.signing_key,
                           published=self.published, issuer=issuer)
        other.install(rsps)
        return other

    # -- what tests read --------------------------------------------------------------------

    @staticmethod
    def form(request: responses.PreparedRequest) -> dict[str, str]:
        """The request body as a dict; fails if a parameter was sent twice."""
        parsed = parse_qs(request.body or "", keep_blank_values=True, strict_parsing=True)
        assert all(len(v) == 1 for v in parsed.values()), parsed
        return {k: v[0] for k, v in parsed.items()}

    def pushed(self, index: int = -1) -> dict[str, str]:
        return self.form(self.par_requests[index])

    def pushed_for(self, verifier: str) -> dict[str, str]:
        """The pushed request whose PKCE challenge this verifier answers (RFC 7636 §4.6);
        the latest one if none does (a test sending something else)."""
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        matching = [
            p for p in map(self.form, self.par_requests) if p["code_challenge"] == challenge
        ]
        return matching[-1] if matching else self.pushed()

    def callback(self, pending: Any, **changes: str | None) -> dict[str, str]:
        """The redirect back to the IdP after a successful challenge (RFC 9207 iss included)."""
        params = {"code": CODE, "state": pending.state, "iss": self.issuer, **changes}
        return {k: v for k, v in params.items() if v is not None}

    def mint(self, claims: dict[str, Any], header: dict[str, Any], key: Key) -> str:
        return jwt.encode(header, claims, key, algorithms=[header["alg"]])

    # -- endpoints --------------------------------------------------------------------------

    def _discovery(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.discovery_fetches += 1
        if "discovery" in self.down:
            return 503, {}, "down"
        return 200, {}, json.dumps(self.discovery)

    def _jwks(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.jwks_fetches += 1
        if "jwks" in self.down:
            return 503, {}, "down"
        keys = self.extra_jwks + [public_jwk(k) for k in self.published]
        return 200, {}, json.dumps({"keys": keys})

    def _par(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.par_requests.append(request)
        status, body = self.par_reply or (
            201,
            {
                "request_uri": f"urn:ietf:params:oauth:request_uri:r{len(self.par_requests)}",
                "expires_in": 60,
            },
        )
        return status, {}, json.dumps(body)

    def _token(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.token_requests.append(request)
        if self.token_reply is not None:
            status, body = self.token_reply
            return status, {}, json.dumps(body)
        pushed = self.pushed_for(self.form(request).get("code_verifier", ""))
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": pushed["login_hint"],
            "aud": CLIENT_ID,
            "exp": now + 300,
            "iat": now,
            "auth_time": now - 5,
            "nonce": pushed["nonce"],
            "acr": ACR,
            "amr": self.amr,
        }
        claims.update(self.claim_changes)
        claims = {k: v for k, v in claims.items() if v is not None}
        alg = "ES256" if isinstance(self.signing_key, ECKey) else "RS256"
        header = {"alg": alg, "kid": self.signing_key.kid, **self.header_changes}
        body = {
            "access_token": "an-access-token",
            "token_type": "Bearer",
            "expires_in": 60,
            "id_token": self.mint(claims, header, self.signing_key),
        }
        return 200, {"Cache-Control": "no-store"}, json.dumps(body)
