"""RFC 9126 (OAuth 2.0 Pushed Authorization Requests): the checks on a pushed request, called
straight on :func:`bridge.oidc.par.validate` with a registered client — no app, no database,
no HTTP. The endpoint around them (client authentication, the JSON error body, nothing stored
on a refusal, 405 for GET) is tested through the app in ``tests/bridge/test_par.py``."""

from __future__ import annotations

import dataclasses
import re

import pytest
from authlib.oauth2 import OAuth2Error

from bridge.oidc import clients, par
from bridge.oidc.clients import ClientModel, new_client

PEPPER = b"pepper-for-these-tests-0123456789"
CLIENT_ID = "idp"
CALLBACK = "https://idp.example/callback"
KC_PREFIX = "https://kc.example/realms/acme/login-actions/authenticate"
#: RFC 7636 Appendix B: the S256 challenge of the example verifier.
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
#: The acr the bridge asserts in these tests.
ACR = "urn:example:mfa"


def registered_client() -> ClientModel:
    """The IdP as the PAR endpoint sees it once authenticated: one exact callback and one
    Keycloak-style prefix."""
    record = new_client(PEPPER, CLIENT_ID, secret="client-secret-0123456789", jwks_uri=None,
                        redirect_uris=[CALLBACK], redirect_uri_prefixes=[KC_PREFIX])
    return ClientModel(record, PEPPER)


def pushed(**changes: str | list[str] | None) -> dict[str, list[str]]:
    """A good pushed request as the endpoint hands it over (each name with all its values),
    with ``changes``: ``None`` leaves a parameter out, a list repeats it."""
    params: dict[str, str | list[str] | None] = {
        "response_type": "code", "scope": "openid", "client_id": CLIENT_ID,
        "redirect_uri": CALLBACK, "state": "af0ifjsldkj", "nonce": "n-0S6_WzA2Mj",
        "code_challenge": CHALLENGE, "code_challenge_method": "S256", "login_hint": "user-1",
    }
    params.update(changes)
    return {name: value if isinstance(value, list) else [value]
            for name, value in params.items() if value is not None}


def accepted(**changes: str | list[str] | None) -> dict:
    return par.validate(pushed(**changes), registered_client(), ACR)


def refused(error: str, **changes: str | list[str] | None) -> str:
    """The OAuth error (RFC 6749 §4.1.2.1 / §5.2 codes) raised for this request; its
    description, which must say what is wrong."""
    with pytest.raises(OAuth2Error) as caught:
        accepted(**changes)
    assert caught.value.error == error
    assert caught.value.description
    return caught.value.description


class TestRFC9126Section2_1:
    """§2.1 Request: the pushed request may carry any authorization request parameter except
    ``request_uri``; the server rejects ``request_uri`` and validates the rest "as it would an
    authorization request sent to the authorization endpoint"."""

    def test_a_good_request_keeps_what_the_flow_needs(self):
        kept = accepted(preferred_username="Pat Smith", acr_values="urn:example:mfa",
                        ui_locales="de en", max_age="300", prompt="login")
        assert kept == {
            "redirect_uri": CALLBACK, "scope": "openid", "state": "af0ifjsldkj",
            "nonce": "n-0S6_WzA2Mj", "code_challenge": CHALLENGE, "login_hint": "user-1",
            "preferred_username": "Pat Smith", "acr_values": "urn:example:mfa",
            "ui_locales": "de en", "max_age": 300, "prompt": "login", "allow_enrollment": True,
            "email": None,
        }

    def test_optional_parameters_may_be_left_out(self):
        kept = accepted(state=None)
        assert kept["state"] is None
        assert kept["preferred_username"] is kept["acr_values"] is kept["max_age"] is None

    def test_request_uri_must_not_be_pushed(self):
        description = refused("invalid_request",
                              request_uri=par.REQUEST_URI_PREFIX + "6esc_11ACC5bwc014ltc14eY22c")
        assert "request_uri" in description

    def test_client_id_is_required(self):
        """The pushed request is the authorization request (§2.1): RFC 6749 §4.1.1 requires
        client_id in it, whatever the client authenticated as."""
        assert "client_id" in refused("invalid_request", client_id=None)

    def test_client_id_must_be_the_authenticated_client(self):
        """client_id has the same meaning as at the authorization endpoint; a pushed request
        cannot speak for another client."""
        assert "client_id" in refused("invalid_request", client_id="someone-else")

    @pytest.mark.parametrize("name", ["response_type", "scope", "state", "nonce",
                                      "login_hint", "redirect_uri", "code_challenge"])
    def test_a_repeated_parameter_is_refused(self, name):
        """RFC 6749 §3.1: request parameters must not be included more than once."""
        value = pushed()[name][0]
        assert name in refused("invalid_request", **{name: [value, value]})

    def test_client_authentication_parameters_are_not_part_of_the_request(self):
        """Sent for client authentication only, they are not germane to the request itself."""
        kept = accepted(client_secret="client-secret-0123456789")
        assert "client_secret" not in kept


class TestRFC9126Section2_1AuthorizationRequestChecks:
    """§2.1 step 3: "validate the pushed request as it would an authorization request" — the
    authorization request rules of RFC 6749 §4.1.1, RFC 7636 and OpenID Connect Core §3.1.2.1
    as the bridge applies them (DESIGN.md "The hand-off protocol" rule 1)."""

    @pytest.mark.parametrize("value", ["token", "code id_token", "id_token"])
    def test_response_type_is_code(self, value):
        refused("unsupported_response_type", response_type=value)

    def test_a_missing_response_type_is_a_missing_parameter(self):
        """RFC 6749 §4.1.2.1: invalid_request "is missing a required parameter";
        unsupported_response_type is for a value the server does not support."""
        assert "response_type" in refused("invalid_request", response_type=None)

    @pytest.mark.parametrize("value", [None, "", "profile email", "openidx"])
    def test_scope_includes_openid(self, value):
        refused("invalid_scope", scope=value)

    @pytest.mark.parametrize("value", ["openid\tprofile", "openid  profile", " openid",
                                       "openid ", "openid \u00e9", 'openid "x"', "openid\\x"])
    def test_scope_tokens_are_nqchar_separated_by_single_spaces(self, value):
        """RFC 6749 §3.3: scope = scope-token *( SP scope-token ), scope-token = 1*NQCHAR."""
        refused("invalid_scope", scope=value)

    def test_scope_with_more_than_openid_is_kept_as_openid(self):
        assert accepted(scope="openid profile")["scope"] == "openid"

    @pytest.mark.parametrize("name", ["nonce", "login_hint"])
    @pytest.mark.parametrize("value", [None, ""])
    def test_nonce_and_login_hint_are_required(self, name, value):
        assert name in refused("invalid_request", **{name: value})

    @pytest.mark.parametrize("method", [None, "plain", "s256", "S512"])
    def test_pkce_s256_is_required(self, method):
        """RFC 7636 §4.3 with the bridge's rule: S256 only, for every client."""
        assert "S256" in refused("invalid_request", code_challenge_method=method)

    @pytest.mark.parametrize("challenge", [None, "", "a" * 42, "a" * 44, "a" * 128, "+" * 43,
                                           "." * 43, "~" * 43, CHALLENGE + "=",
                                           CHALLENGE[:-1] + " ", CHALLENGE + "\n"])
    def test_code_challenge_is_an_s256_challenge(self, challenge):
        """RFC 7636 §4.2: S256's challenge is BASE64URL(SHA-256(verifier)) without padding:
        exactly 43 characters of A-Z a-z 0-9 - _. A final newline must not slip through (a
        challenge nothing can meet would fail only at /token, after the user's factor)."""
        assert "code_challenge" in refused("invalid_request", code_challenge=challenge)

    @pytest.mark.parametrize("challenge", [CHALLENGE, "a" * 43, "-_" * 21 + "Z"])
    def test_an_s256_challenge_is_accepted(self, challenge):
        assert accepted(code_challenge=challenge)["code_challenge"] == challenge

    @pytest.mark.parametrize("name, limit", [("state", 1024), ("nonce", 512),
                                             ("login_hint", 255), ("acr_values", 1024),
                                             ("ui_locales", 256)])
    def test_protocol_values_are_short_printable_ascii(self, name, limit):
        good = f"{ACR} ".ljust(limit, "v") if name == "acr_values" else "v" * limit
        assert accepted(**{name: good})[name] == good
        for bad in ("v" * (limit + 1), "user\x00", "a\nb", "caf\u00e9", "\x1b[31m"):
            assert name in refused("invalid_request", **{name: bad})

    @pytest.mark.parametrize("value, kept", [("0", 0), ("300", 300), ("999999999", 999999999)])
    def test_max_age_is_a_whole_number_of_seconds(self, value, kept):
        assert accepted(max_age=value)["max_age"] == kept

    @pytest.mark.parametrize("value", ["-1", "1.5", "ten", "9" * 10, " 1", "5\n", "\u00b2",
                                       "\u0663", "\uff11"])
    def test_max_age_that_is_not_ascii_digits_is_refused(self, value):
        assert "max_age" in refused("invalid_request", max_age=value)

    @pytest.mark.parametrize("prompt", ["none", "login none"])
    def test_prompt_none_cannot_be_honoured(self, prompt):
        """Every hand-off asks for a second factor: OpenID Connect Core §3.1.2.6's
        login_required, in the PAR response (RFC 9126 §2.3)."""
        assert "prompt=none" in refused("login_required", prompt=prompt)

    @pytest.mark.parametrize("mode", ["fragment", "form_post", "query.jwt", " "])
    def test_a_response_mode_other_than_query_is_refused(self, mode):
        """Discovery lists only ``query``; answering another way than asked is worse than a
        clear refusal."""
        assert "response_mode" in refused("invalid_request", response_mode=mode)

    def test_response_mode_query_is_accepted(self):
        assert accepted(response_mode="query")["redirect_uri"] == CALLBACK

    @pytest.mark.parametrize("name", sorted(clients.RESPONSE_PARAMETERS))
    def test_a_redirect_uri_carrying_a_response_parameter_is_refused(self, name):
        """RFC 6749 §4.1.2: the response adds code, state and iss (or error…) to the
        redirect_uri; one already there would reach the IdP twice, the first a stranger's."""
        assert "redirect_uri" in refused("invalid_request",
                                         redirect_uri=f"{KC_PREFIX}?client_data=x&{name}=evil")

    def test_a_prefix_redirect_uri_keeps_its_own_query(self):
        uri = f"{KC_PREFIX}?client_data=a+b&flag&tab_id=%7E"
        assert accepted(redirect_uri=uri)["redirect_uri"] == uri

    @pytest.mark.parametrize("acr_values", [ACR, f"urn:other {ACR}"])
    def test_acr_values_that_include_the_bridges_acr_are_accepted(self, acr_values):
        assert accepted(acr_values=acr_values)["acr_values"] == acr_values

    @pytest.mark.parametrize("acr_values", ["urn:other", "urn:example:mfa2", "0"])
    def test_acr_values_the_bridge_cannot_meet_are_refused(self, acr_values):
        """The IdP would reject the assertion's acr after the user spent a factor on it (the
        Keycloak authenticator does); refused before the user sees a page."""
        assert ACR in refused("invalid_request", acr_values=acr_values)

    def test_an_unknown_prompt_is_refused(self):
        assert "prompt" in refused("invalid_request", prompt="bogus")

    def test_a_display_name_in_any_script_is_kept_normalised(self):
        assert accepted(preferred_username=" Jose\u0301 Garci\u0301a ")[
            "preferred_username"] == "Jos\u00e9 Garc\u00eda"

    @pytest.mark.parametrize("name", ["x\x07", "evil\u202egnp.exe", "  ", "n" * 256])
    def test_a_display_name_with_control_characters_or_too_long_is_refused(self, name):
        assert "preferred_username" in refused("invalid_request", preferred_username=name)

    @pytest.mark.parametrize("value, allowed", [("false", False), ("true", True), (None, True)])
    def test_an_idp_may_only_turn_enrollment_off(self, value, allowed):
        assert accepted(stepup_allow_enrollment=value)["allow_enrollment"] is allowed

    @pytest.mark.parametrize("value", ["FALSE", "False", "0", "no", "off", "anything"])
    def test_an_unknown_enrollment_switch_is_refused_not_read_as_on(self, value):
        """A misspelt "off" read as "on" would let whoever holds the browser set up the
        user's second factor."""
        assert "stepup_allow_enrollment" in refused("invalid_request",
                                                    stepup_allow_enrollment=value)


class TestRFC6749Section3_1Parameters:
    """RFC 6749 §3.1 (and §3.2, for the token endpoint): "Parameters sent without a value
    MUST be treated as if they were omitted from the request", and "Request and response
    parameters MUST NOT be included more than once"."""

    OPTIONAL = ("state", "acr_values", "response_mode", "max_age", "ui_locales",
                "preferred_username", "prompt", "email", "stepup_allow_enrollment")
    REQUIRED = ("response_type", "scope", "client_id", "redirect_uri", "code_challenge",
                "code_challenge_method", "nonce", "login_hint")

    @pytest.mark.parametrize("name", OPTIONAL)
    def test_an_empty_optional_parameter_is_omitted(self, name):
        assert accepted(**{name: ""}) == accepted(**{name: None})

    def test_all_of_them_at_once(self):
        assert accepted(**dict.fromkeys(self.OPTIONAL, "")) == accepted(
            **dict.fromkeys(self.OPTIONAL, None))

    @pytest.mark.parametrize("name", REQUIRED)
    def test_an_empty_required_parameter_is_refused_as_missing(self, name):
        with pytest.raises(OAuth2Error) as missing:
            accepted(**{name: None})
        with pytest.raises(OAuth2Error) as empty:
            accepted(**{name: ""})
        assert (empty.value.error, empty.value.description) == (
            missing.value.error, missing.value.description)

    @pytest.mark.parametrize("values", [["", "af0ifjsldkj"], ["af0ifjsldkj", ""], ["", ""]],
                             ids=["empty-first", "empty-second", "both-empty"])
    def test_a_parameter_sent_twice_is_repeated_even_if_a_copy_is_empty(self, values):
        """``state=&state=x`` is not ``state=x``: the parameter was included twice."""
        assert "state" in refused("invalid_request", state=values)


class TestRFC9126Section2_2:
    """§2.2 Successful Response: the ``request_uri`` holds a part "generated using a
    cryptographically strong pseudorandom algorithm such that it is computationally
    infeasible to predict or guess a valid value" (and §7.1, request URI guessing)."""

    def test_request_uri_is_a_urn_with_256_random_bits(self):
        uri = par.new_request_uri()
        assert uri.startswith("urn:ietf:params:oauth:request_uri:")
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", uri.removeprefix(par.REQUEST_URI_PREFIX))

    def test_request_uris_do_not_repeat(self):
        assert len({par.new_request_uri() for _ in range(1000)}) == 1000


class TestRFC9126Section2_4:
    """§2.4 Management of Client Redirect URIs: a server may relax redirect URI registration
    for clients that push authenticated requests. The bridge's relaxation (DESIGN.md rule 2):
    an exact registered URI, or a registered prefix whose scheme, host, port and path match,
    with any query (Keycloak's per-login callback)."""

    @pytest.mark.parametrize("uri", [CALLBACK, KC_PREFIX, KC_PREFIX + "?client_data=a&tab_id=b",
                                     KC_PREFIX.replace("kc.example", "KC.EXAMPLE")])
    def test_registered_uri_or_prefix_with_any_query(self, uri):
        assert accepted(redirect_uri=uri)["redirect_uri"] == uri

    @pytest.mark.parametrize("uri", [
        CALLBACK + "?extra=1", CALLBACK + "/", "https://evil.example/callback",
        KC_PREFIX + "/more", KC_PREFIX + "/", KC_PREFIX + "/../../../evil",
        "https://kc.example:8443/realms/acme/login-actions/authenticate",
        "http://kc.example/realms/acme/login-actions/authenticate",
        KC_PREFIX + "#fragment", KC_PREFIX + "?x=1#fragment", KC_PREFIX + "?x=1#",
        KC_PREFIX + "#", CALLBACK + "#",
        "https://user@kc.example/realms/acme/login-actions/authenticate",
        "https://@kc.example/realms/acme/login-actions/authenticate",
        "https://kc.example.evil.example/realms/acme/login-actions/authenticate",
    ], ids=["exact-plus-query", "exact-plus-slash", "other-host", "longer-path",
            "trailing-slash", "dot-segments", "other-port", "http", "fragment",
            "query-fragment", "query-empty-fragment", "prefix-empty-fragment",
            "exact-empty-fragment", "userinfo", "empty-userinfo", "suffix-host"])
    def test_anything_else_is_refused(self, uri):
        assert "redirect_uri" in refused("invalid_request", redirect_uri=uri)

    @pytest.mark.parametrize("uri", ["https://u:p@idp.example/cb", "https://idp.example/cb#"])
    def test_a_uri_registered_under_older_rules_is_refused_even_exactly(self, uri):
        """`client add` refuses these now; one registered before still never passes."""
        record = dataclasses.replace(registered_client().record, redirect_uris=[uri])
        assert not clients.redirect_uri_allowed(record, uri)

    @pytest.mark.parametrize("uri", [None, "", KC_PREFIX + "?a=\x00", KC_PREFIX + "?q=\u00e9",
                                     KC_PREFIX + "?q=" + "x" * 2000])
    def test_missing_overlong_or_unprintable_redirect_uri_is_refused(self, uri):
        assert "redirect_uri" in refused("invalid_request", redirect_uri=uri)


class TestRFC9126Section3:
    """§3 The "request" Request Parameter: a pushed request may carry a request object. The
    bridge supports none, and says so with OpenID Connect's ``request_not_supported``."""

    def test_request_object_is_not_supported(self):
        refused("request_not_supported", request="eyJhbGciOiJub25lIn0.e30.")
