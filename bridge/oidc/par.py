"""Pushed Authorization Requests (RFC 9126) — authlib has none, so this is ours.

The IdP pushes the whole authorization request over its authenticated back channel; the browser
only ever carries the opaque, single-use ``request_uri``. That is how the bridge knows the
user's identity (``login_hint``) came from the IdP and not from the address bar.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping, Sequence

from authlib.oauth2.rfc6749 import (
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
)
from authlib.oidc.core.errors import LoginRequiredError, RequestNotSupportedError

from ..settings import mail_address
from ..text import URI_LIMIT, display_name, fits_error_text, is_protocol_value
from .clients import ClientModel, carries_response_parameters

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"  # RFC 9126 §2.2
#: RFC 7636 §4.2: an S256 challenge is BASE64URL(SHA-256(verifier)), unpadded: 43 characters.
#: Patterns are used with ``fullmatch``: ``$`` would also match before a final newline.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_MAX_AGE = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit() accepts "²"
#: RFC 6749 §3.3: scope tokens of NQCHAR, separated by single spaces.
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")
_LIMITS = {"state": 1024, "nonce": 512, "login_hint": 255, "acr_values": 1024,
           "ui_locales": 256}
#: A display name fits the users table's column (Keycloak usernames are up to 255 too).
DISPLAY_NAME_LIMIT = 255
PROMPTS = {"login", "consent", "select_account"}
log = logging.getLogger("stepup")


def new_request_uri() -> str:
    return REQUEST_URI_PREFIX + secrets.token_urlsafe(32)


def single_values(form: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Each parameter's one value; ``form`` maps each name to all its values. The one place
    where /par and /token apply RFC 6749 §3.1 and §3.2:

    - "Parameters sent without a value MUST be treated as if they were omitted from the
      request": an empty one is left out, so a required one is then refused as missing.
    - "Request and response parameters MUST NOT be included more than once": a repeated one
      is refused, as which copy wins would be a guess. That holds even when a copy is empty
      (``a=&a=x``): the parameter was still included twice, and a client that sends it has
      lost track of its own request.
    """
    params = {}
    for name, values in form.items():
        if len(values) > 1:
            raise InvalidRequestError(f"Parameter '{name}' is repeated." if fits_error_text(name)
                                      else "A parameter is repeated.")
        if values and values[0]:
            params[name] = values[0]
    return params


def validate(form: Mapping[str, Sequence[str]], client: ClientModel, acr: str) -> dict:
    """Check a pushed request (RFC 9126 §2.1) and return the parameters the flow keeps.

    ``form`` maps each parameter name to all its values, so repeated parameters are refused.
    ``acr`` is the one the bridge asserts: a request whose ``acr_values`` do not include it is
    refused now, before the user spends a factor on an assertion the IdP would reject.
    Raises an authlib ``OAuth2Error`` naming the problem.
    """
    params = single_values(form)
    if not client.check_grant_type("authorization_code"):
        raise UnauthorizedClientError("This client has no redirect URI: it may call the "
                                      "help-desk API, not start sign-ins.")
    if "request_uri" in params:
        raise InvalidRequestError("'request_uri' must not be pushed (RFC 9126 section 2.1).")
    if "request" in params:
        raise RequestNotSupportedError("Request objects are not supported.")
    # RFC 6749 §4.1.1 makes client_id part of every authorization request, pushed too.
    if params.get("client_id") != client.get_client_id():
        raise InvalidRequestError("'client_id' is missing or does not match the authenticated "
                                  "client.")
    if _required(params, "response_type") != "code":  # missing: §4.1.2.1's invalid_request
        raise UnsupportedResponseTypeError(
            None, description="Only response_type=code is supported.")
    scope = params.get("scope", "")
    if not _SCOPE.fullmatch(scope) or "openid" not in scope.split(" "):
        raise InvalidScopeError("The scope must include 'openid', in scope tokens separated by "
                                "single spaces (RFC 6749 section 3.3).")
    redirect_uri = _required(params, "redirect_uri")
    if not is_protocol_value(redirect_uri, URI_LIMIT):
        raise InvalidRequestError("'redirect_uri' is too long or has invalid characters.")
    if not client.check_redirect_uri(redirect_uri):
        raise InvalidRequestError("'redirect_uri' is not registered for this client.")
    if carries_response_parameters(redirect_uri):
        raise InvalidRequestError("'redirect_uri' must not carry the response's own parameters "
                                  "(code, state, iss, error, error_description, error_uri).")
    if params.get("response_mode", "query") != "query":
        raise InvalidRequestError("Only response_mode=query is supported.")
    if params.get("code_challenge_method") != "S256":
        raise InvalidRequestError("PKCE with code_challenge_method=S256 is required.")
    if not _S256_CHALLENGE.fullmatch(params.get("code_challenge", "")):
        raise InvalidRequestError("'code_challenge' is missing or is not an S256 challenge "
                                  "(43 base64url characters).")
    for name in ("nonce", "login_hint"):
        _required(params, name)
    for name, limit in _LIMITS.items():
        value = params.get(name)
        if value is not None and not is_protocol_value(value, limit):
            raise InvalidRequestError(f"'{name}' is too long or has invalid characters.")
    if "acr_values" in params and acr not in params["acr_values"].split():
        raise InvalidRequestError(f"This bridge asserts only acr '{acr}', which 'acr_values' "
                                  "does not include.")
    name = params.get("preferred_username")
    if name is not None and (name := display_name(name, DISPLAY_NAME_LIMIT)) is None:
        raise InvalidRequestError("'preferred_username' is too long or has invalid characters.")
    return {
        "redirect_uri": redirect_uri,
        "scope": "openid",
        "state": params.get("state"),
        "nonce": params["nonce"],
        "code_challenge": params["code_challenge"],
        "login_hint": params["login_hint"],
        "preferred_username": name,
        "acr_values": params.get("acr_values"),
        "ui_locales": params.get("ui_locales"),
        "max_age": _max_age(params.get("max_age")),
        "prompt": _prompt(params.get("prompt")),
        "allow_enrollment": _allow_enrollment(params.get("stepup_allow_enrollment")),
        "email": _email(params.get("email"), client.get_client_id()),
    }


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise InvalidRequestError(f"Missing '{name}'.")
    return value


def _email(value: str | None, client_id: str) -> str | None:
    """The user's address for notifications (only ever from this back channel), as it is
    mailed (:func:`mail_address`). One that is not an address is dropped — the sign-in goes
    on without e-mail — and logged without it."""
    if value is None or (value := mail_address(value)) is not None:
        return value
    log.warning("pushed request from %s: ignored an 'email' that is not an address", client_id)
    return None


def _max_age(value: str | None) -> int | None:
    if value is None:
        return None
    if not _MAX_AGE.fullmatch(value):
        raise InvalidRequestError("'max_age' must be a non-negative whole number of seconds.")
    return int(value)


def _allow_enrollment(value: str | None) -> bool:
    """An IdP may turn enrollment off for one request (never on, past its registration). Any
    other value than ``true`` or ``false`` is refused: read as "on", a misspelt "off" would
    offer a stranger at the browser to set up the user's second factor."""
    if value not in (None, "true", "false"):
        raise InvalidRequestError("'stepup_allow_enrollment' must be 'true' or 'false'.")
    return value != "false"


def _prompt(value: str | None) -> str | None:
    """Every hand-off asks the user for a factor, so ``prompt=none`` can never be honoured
    (OpenID Connect Core §3.1.2.6: ``login_required``, in the PAR response as RFC 9126 §2.3
    has it); other values are accepted."""
    if value is None:
        return None
    prompts = set(value.split())
    if "none" in prompts:
        raise LoginRequiredError(
            description="prompt=none cannot be honoured: a second factor is required.")
    if not prompts <= PROMPTS:
        raise InvalidRequestError("'prompt' has an unknown value.")
    return value
