"""One error class for provisioning, rendered as one line the operator can act on.

python-keycloak raises a :class:`keycloak.exceptions.KeycloakError` subclass with
``response_code`` and the raw ``response_body``; Keycloak puts its reason in ``errorMessage``
(admin API), ``error_description``/``error`` (token endpoint) or ``error`` (JAX-RS 403/404).
:func:`refused` turns any of them into :class:`ProvisioningError`, e.g.::

    Keycloak refused to copy flow 'browser' (403): HTTP 403 Forbidden — does the admin account
    'admin' of realm 'master' have realm-admin?

Messages never carry a password or client secret: every known secret is scrubbed from the
text Keycloak sent before it is shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import requests
from keycloak.exceptions import KeycloakConnectionError, KeycloakError

#: Longest part of a Keycloak response copied into a message.
MAX_DETAIL = 200
_NOT_DEPLOYED = ("No authentication provider found", "Could not find authenticator provider")


class ProvisioningError(Exception):
    """Install or uninstall could not finish; ``str()`` is one line, free of secrets."""


@contextmanager
def refused(
    action: str, *, server_url: str, account: str, secrets: Sequence[str] = ()
) -> Iterator[None]:
    """Turn a python-keycloak error raised inside the block into a :class:`ProvisioningError`.

    ``action`` completes "Keycloak refused to …" (``"copy flow 'browser'"``); ``account``
    names the admin identity for the 401/403 hints.
    """
    try:
        yield
    except KeycloakConnectionError as exc:
        raise ProvisioningError(_unreachable(action, server_url, exc)) from exc
    except KeycloakError as exc:
        raise ProvisioningError(describe(exc, action, account, secrets)) from exc


def describe(exc: KeycloakError, action: str, account: str, secrets: Sequence[str] = ()) -> str:
    """The one-line message for a refused admin-API or token call."""
    code = exc.response_code
    detail = _one_line(_scrub(_reason(exc), secrets))
    message = f"Keycloak refused to {action} ({code}): {detail}"
    hint = _hint(code, detail, account)
    return f"{message} — {hint}" if hint else message


def _reason(exc: KeycloakError) -> str:
    """Keycloak's own reason: from the JSON body if there is one, else the raw text."""
    body = exc.response_body or exc.error_message or b""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if not isinstance(data, dict):
        return text
    if isinstance(data.get("errorMessage"), str) and data["errorMessage"]:
        return data["errorMessage"]
    # Token errors read best as "invalid_grant: Invalid user credentials".
    reasons = [data.get(key) for key in ("error", "error_description", "message")]
    return ": ".join(r for r in reasons if isinstance(r, str) and r) or text


def _one_line(text: str) -> str:
    text = " ".join(text.split()) or "no reason given"
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _hint(code: int | None, detail: str, account: str) -> str:
    """What to check next, by status code (and for a missing authenticator jar, by text)."""
    if any(marker in detail for marker in _NOT_DEPLOYED):
        return (
            "is the stepup-bridge authenticator jar in Keycloak's providers/ folder "
            "(then kc.sh build and a restart)?"
        )
    return {
        401: f"check the credentials of the {account}",
        403: f"does the {account} have realm-admin?",
        404: "check the realm and flow names and the server URL",
        409: "it already exists; was it created by hand or by another flow?",
    }.get(code or 0, "")


def _unreachable(action: str, server_url: str, exc: KeycloakConnectionError) -> str:
    cause = exc.__cause__
    if isinstance(cause, requests.exceptions.SSLError):
        why = "TLS verification failed; set verify_tls to a CA bundle path"
    elif isinstance(cause, requests.exceptions.Timeout):
        why = "the request timed out"
    else:
        why = "is the server URL right and Keycloak running?"
    return f"Could not reach Keycloak at {server_url} to {action} — {why}"


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
