"""The client-credentials grant for help-desk tools (RFC 6749 §4.4), on authlib's."""

from __future__ import annotations

from typing import ClassVar

from authlib.oauth2.rfc6749 import InvalidClientError, InvalidScopeError, grants

from ..oidc.clients import ADMIN_SCOPE, AUTH_METHODS
from ..store import Store


class AdminCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    def __init__(self, request, server):
        super().__init__(request, server)
        self.store: Store = server.store
        self.clock = server.clock

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = set((self.request.payload.scope or "").split())
        if requested - {ADMIN_SCOPE}:
            raise InvalidScopeError("Only the scope 'stepup:admin' can be requested.")

    def save_token(self, token: dict) -> None:
        """Saved only under the registration the request authenticated with, held meanwhile:
        one replaced (``client add --replace``, a new secret after a leak) or taken away
        since would leave a token the old secret got, valid for its whole life."""
        authenticated = self.request.client.record
        with self.store.begin() as tx:
            current = tx.find_client(authenticated.client_id, hold=True)
            if (current is None or current.created_at != authenticated.created_at
                    or not current.admin):
                raise InvalidClientError(description="The client's registration changed.")
            tx.save_access_token(token["access_token"], authenticated.client_id,
                                 token.get("scope", ""), self.clock() + token["expires_in"])


def register(server, store: Store, clock) -> None:
    server.store, server.clock = store, clock
    server.register_grant(AdminCredentialsGrant)
