"""The token endpoint and the signed assertion (the ``id_token``), on authlib's code grant.

We extend authlib through its hooks only: the four storage methods of the code grant and the
claim/key methods of its OpenID extension. Our one change of behaviour is in
:meth:`CodeGrant.query_authorization_code`, which *consumes* the code (authlib would read it
and delete it only at the end, so two concurrent redemptions could both succeed).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    InvalidRequestError,
    UnauthorizedClientError,
    grants,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode

from ..keyring import SigningKeys
from ..store import Code, Store
from .clients import AUTH_METHODS, ClientModel


@dataclass(frozen=True)
class Subject:
    """The authenticated user as authlib sees it: just the IdP's stable id."""

    subject: str

    def get_user_id(self) -> str:
        return self.subject


class CodeModel(AuthorizationCodeMixin):
    code_challenge_method = "S256"  # PAR accepts nothing else

    def __init__(self, code: Code):
        self.code = code
        self.code_challenge = code.code_challenge

    def get_redirect_uri(self) -> str:
        return self.code.redirect_uri

    def get_scope(self) -> str:
        return self.code.scope

    def get_nonce(self) -> str:
        return self.code.nonce

    def get_auth_time(self) -> int:
        return int(self.code.auth_time)

    def get_acr(self) -> str:
        return self.code.acr

    def get_amr(self) -> list[str]:
        return list(self.code.amr)


class CodeGrant(grants.AuthorizationCodeGrant):
    """RFC 6749 §4.1.3 token request; codes come only from a finished challenge."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    #: RFC 7636 §4.1: 43 to 128 unreserved characters (authlib's pattern ends in ``$``, which
    #: also matches before a final newline).
    VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")

    def authenticate_token_endpoint_client(self) -> ClientModel:
        """The client, and the request's shape checked before the code is taken: a request
        the IdP got wrong (no redirect_uri, which PAR required, so §4.1.3 does; a verifier
        missing or malformed, every code having a challenge) does not cost the user their
        step-up. authlib finds these only after taking the code."""
        client = super().authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):  # authlib's check, before ours
            raise UnauthorizedClientError(
                f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
        if not self.request.form.get("redirect_uri"):
            raise InvalidRequestError("Missing 'redirect_uri'.")
        verifier = self.request.form.get("code_verifier")
        if not verifier:
            raise InvalidRequestError("Missing 'code_verifier'")
        if not self.VERIFIER.fullmatch(verifier):
            raise InvalidRequestError("Invalid 'code_verifier'")
        return client

    def query_authorization_code(self, code: str, client: ClientModel) -> CodeModel | None:
        client_id, now = client.get_client_id(), self.server.clock()
        with self.server.store.autocommit() as tx:  # one UPDATE … RETURNING
            found = tx.consume_code(code, client_id, now)
            # RFC 6749 §4.1.2, §10.5: a code presented twice was seen by someone else (or
            # the IdP retries): audited for the alert, answered as any unknown code.
            if found is None and (spent := tx.redeemed_code(code, now)):
                other = {"issued_to": spent["client_id"]} if spent["client_id"] != client_id \
                    else {}
                tx.audit("code_reused", now, subject=spent["subject"], client_id=client_id,
                         ip=self.request.caller, **other)
        return CodeModel(found) if found else None

    def delete_authorization_code(self, authorization_code: CodeModel) -> None:
        """Nothing left to do: :meth:`query_authorization_code` consumed it."""

    def authenticate_user(self, authorization_code: CodeModel) -> Subject:
        return Subject(authorization_code.code.subject)


class IdToken(OpenIDCode):
    """OpenID Connect Core §2 claims; signed with the client's algorithm, ``kid`` in the header."""

    def __init__(self, keys: SigningKeys, issuer: str, lifetime: int,
                 clock: Callable[[], float]):
        super().__init__(require_nonce=True)
        self.keys, self.issuer, self.lifetime, self.clock = keys, issuer, lifetime, clock

    def get_client_algorithm(self, client: ClientModel) -> str:
        return client.id_token_signed_response_alg

    def resolve_client_private_key(self, client: ClientModel):
        return self.keys.private_set(self.get_client_algorithm(client))

    def get_encode_header(self, client: ClientModel) -> dict:
        alg = self.get_client_algorithm(client)
        return {"alg": alg, "kid": self.keys.active(alg).kid, "typ": "JWT"}

    def get_client_claims(self, client: ClientModel) -> dict:
        now = int(self.clock())
        return {"iss": self.issuer, "aud": client.get_client_id(), "iat": now,
                "exp": now + self.lifetime}

    def generate_user_info(self, user: Subject, scope: str) -> dict:
        return {"sub": user.subject}


def register(server, store: Store, keys: SigningKeys, issuer: str, lifetime: int,
             clock: Callable[[], float]) -> None:
    """Attach the code grant, PKCE (required, S256) and the id_token to an authlib server."""
    server.store, server.clock = store, clock
    id_token = IdToken(keys, issuer, lifetime, clock)
    server.register_grant(CodeGrant, [CodeChallenge(required=True), id_token])
