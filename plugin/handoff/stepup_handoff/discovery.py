"""Reading the bridge's discovery document (OpenID Connect Discovery 1.0 §3, §4)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from .errors import DiscoveryError
from .http_json import exchange

#: Endpoints the hand-off needs; discovery without one of them is refused.
ENDPOINTS = (
    "authorization_endpoint",
    "pushed_authorization_request_endpoint",  # RFC 9126 §5
    "token_endpoint",
    "jwks_uri",
)
#: Largest discovery document read, in bytes (after any content decoding).
DISCOVERY_LIMIT = 64 * 1024
#: Host names that are this machine: plain http is allowed only to them.
LOOPBACK_NAMES = ("localhost",)


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


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (127.0.0.0/8, ::1, localhost)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    if "%" in host:  # a zone (fe80::1%eth0) names an interface: never this machine's issuer
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # ::ffff:127.0.0.1 is refused on every Python (3.13's is_loopback says yes), as by the
    # Keycloak authenticator: both clients judge an issuer alike.
    return address.is_loopback and not getattr(address, "ipv4_mapped", None)


def secure_url(url: object, *, loopback_http: bool) -> bool:
    """``https://`` with a host, or ``http://`` to a loopback host when ``loopback_http``
    (RFC 6749 §3.1, §3.2: the endpoints carry credentials and codes; RFC 8414 §2)."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.hostname or "#" in url:  # an empty fragment too: a query appended ends in it
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and loopback_http and is_loopback(url)


def check_issuer(issuer: object) -> None:
    """OIDC Discovery §3 / RFC 8414 §2: an https URL without query or fragment; plain http
    only to this machine, for tests and demos. Raises ``ValueError``."""
    # Before secure_url, which refuses a fragment too, so the message names what is wrong.
    if isinstance(issuer, str) and ("#" in issuer or "?" in issuer):  # "https://b.example#"
        raise ValueError("issuer must have no query or fragment")
    if not isinstance(issuer, str) or not secure_url(issuer, loopback_http=True):
        raise ValueError("issuer must be an https URL (http only for 127.0.0.1, ::1, localhost)")
    parts = urlsplit(issuer)
    if "@" in parts.netloc:
        raise ValueError("issuer must have no user name or password")


def discover(
    session: requests.Session, issuer: str, auth_method: str, *, timeout: float
) -> ProviderMetadata:
    """Fetch ``{issuer}/.well-known/openid-configuration`` and check it.

    The ``issuer`` value must equal the configured issuer exactly (Discovery §4.3); the
    endpoints must be present and https (plain http only when the issuer itself is a loopback
    one, and then only to loopback hosts); a listed ``token_endpoint_auth_methods_supported``
    must contain ``auth_method``.

    Endpoints on another origin than the issuer's are accepted (RFC 8414 §2 allows them, and
    a bridge behind a separate back-channel host needs them): the document comes over TLS
    from the issuer's own host, so whoever can name another origin there already controls
    the issuer. What matters is that no secret, code or verifier ever goes out in clear.
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    doc = get_json(session, url, "discovery", timeout=timeout, limit=DISCOVERY_LIMIT)
    if doc.get("issuer") != issuer:
        raise DiscoveryError("discovery 'issuer' differs from the configured issuer")
    missing = [name for name in ENDPOINTS if not isinstance(doc.get(name), str) or not doc[name]]
    if missing:
        raise DiscoveryError(f"discovery lacks {', '.join(missing)}")
    plain_ok = is_loopback(issuer)
    insecure = [name for name in ENDPOINTS if not secure_url(doc[name], loopback_http=plain_ok)]
    if insecure:
        raise DiscoveryError(f"discovery names {', '.join(insecure)} without https")
    methods = doc.get("token_endpoint_auth_methods_supported")
    if isinstance(methods, list) and auth_method not in methods:
        raise DiscoveryError(f"the bridge does not accept {auth_method}")
    return ProviderMetadata(
        issuer=issuer,
        **{name: doc[name] for name in ENDPOINTS},
        iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported") is True,
    )


def get_json(
    session: requests.Session, url: str, what: str, *, timeout: float, limit: int
) -> dict[str, Any]:
    """GET a JSON object (discovery, JWKS): no redirect followed, at most ``limit`` bytes,
    ``timeout`` seconds in all; anything else is a :class:`DiscoveryError`."""
    status, body = exchange(
        session, "GET", url, failure=DiscoveryError, what=what, limit=limit, timeout=timeout
    )
    if status != 200:
        raise DiscoveryError(f"{what} answered HTTP {status}")
    if body is None:
        raise DiscoveryError(f"{what} is not a JSON object", error="invalid_response")
    return body
