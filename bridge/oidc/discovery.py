"""OpenID Provider metadata (OpenID Connect Discovery 1.0 §3, RFC 8414, RFC 9126 §5, RFC 9207)."""

from __future__ import annotations

from ..i18n import LANGUAGES
from ..keyring import ALGORITHMS
from .clients import AUTH_METHODS


def metadata(issuer: str, acr: str) -> dict:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "pushed_authorization_request_endpoint": f"{issuer}/par",
        "require_pushed_authorization_requests": True,
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "scopes_supported": ["openid"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        # RFC 8414 §2: all the token endpoint serves; client_credentials for help-desk
        # clients only (registered with --admin, docs/helpdesk.md).
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr",
                             "amr"],
        "acr_values_supported": [acr],
        "authorization_response_iss_parameter_supported": True,
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        # Request objects by reference (OpenID Connect Core §6.2, RFC 9101) are not taken: the
        # only request_uri /authorize takes is one this bridge issued at /par (RFC 9126 §4).
        "request_uri_parameter_supported": False,
        "ui_locales_supported": list(LANGUAGES),
    }
