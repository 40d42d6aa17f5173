"""Reading the bridge's discovery document (OpenID Connect Discovery 1.0 §3, §4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from .errors import DiscoveryError
from .http_json import json_object

#: Endpoints the hand-off needs; discovery without one of them is refused.
ENDPOINTS = (
    "authorization_endpoint",
    "pushed_authorization_request_endpoint",  # RFC 9126 §5
    "token_endpoint",
    "jwks_uri",
)


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the bridge's discovery document this client uses."""

    issuer: str
    authorization_endpoint: str
    pushed_authorization_request_endpoint: str
    token_endpoint: str
    jwks_uri: str
    #: RFC 9207 §3: the bridge always sends ``iss`` in authorization responses.
    iss_parameter_supported: bool = False


def discover(
    session: requests.Session, issuer: str, auth_method: str, *, timeout: float
) -> ProviderMetadata:
    """Fetch ``{issuer}/.well-known/openid-configuration`` and check it.

    The ``issuer`` value must equal the configured issuer exactly (Discovery §4.3); the
    endpoints must be present; a listed ``token_endpoint_auth_methods_supported`` must
    contain ``auth_method``.
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    doc = get_json(session, url, "discovery", timeout=timeout)
    if doc.get("issuer") != issuer:
        raise DiscoveryError("discovery 'issuer' differs from the configured issuer")
    missing = [name for name in ENDPOINTS if not isinstance(doc.get(name), str) or not doc[name]]
    if missing:
        raise DiscoveryError(f"discovery lacks {', '.join(missing)}")
    methods = doc.get("token_endpoint_auth_methods_supported")
    if isinstance(methods, list) and auth_method not in methods:
        raise DiscoveryError(f"the bridge does not accept {auth_method}")
    return ProviderMetadata(
        issuer=issuer,
        **{name: doc[name] for name in ENDPOINTS},
        iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported") is True,
    )


def get_json(session: requests.Session, url: str, what: str, *, timeout: float) -> dict[str, Any]:
    """GET a JSON object (discovery, JWKS); anything else is a :class:`DiscoveryError`."""
    try:
        response = session.get(url, timeout=timeout, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise DiscoveryError(f"{what} request failed", error="unreachable") from exc
    if response.status_code != 200:
        raise DiscoveryError(f"{what} answered HTTP {response.status_code}")
    body = json_object(response)
    if body is None:
        raise DiscoveryError(f"{what} is not a JSON object", error="invalid_response")
    return body
