"""Pushed Authorization Requests (RFC 9126) at ``/par``: client authentication, every check
on the pushed parameters, and that a refused request leaves nothing behind."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from bridge.settings import DEFAULT_ACR
from bridge.store.schema import pushed_requests
from tests.bridge.conftest import CALLBACK, IDP_ID, IDP_SECRET, KC_PREFIX, callback_params

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"


def stored(bridge) -> int:
    with bridge.store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(pushed_requests)).scalar_one()


def refused(bridge, response, error: str, status: int = 400) -> dict:
    """A clear OAuth JSON error (RFC 6749 §5.2), and nothing saved for the request."""
    body = response.get_json()
    assert response.status_code == status, (response.status_code, body)
    assert body["error"] == error, body
    assert body.get("error_description"), body
    assert response.headers["Cache-Control"] == "no-store"
    assert stored(bridge) == 0
    return body


#: One bad pushed request per case: what to change in a good one, and the OAuth error.
BAD_REQUESTS = {
    "no-response-type": ({"response_type": None}, "invalid_request"),
    "response-type-token": ({"response_type": "token"}, "unsupported_response_type"),
    "response-type-hybrid": ({"response_type": "code id_token"}, "unsupported_response_type"),
    "no-scope": ({"scope": None}, "invalid_scope"),
    "scope-without-openid": ({"scope": "profile email"}, "invalid_scope"),
    "no-redirect-uri": ({"redirect_uri": None}, "invalid_request"),
    "unregistered-redirect-uri": ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
    "exact-uri-plus-query": ({"redirect_uri": CALLBACK + "?extra=1"}, "invalid_request"),
    "exact-uri-plus-slash": ({"redirect_uri": CALLBACK + "/"}, "invalid_request"),
    "no-pkce": ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    "no-pkce-method": ({"code_challenge_method": None}, "invalid_request"),
    "pkce-plain": ({"code_challenge_method": "plain"}, "invalid_request"),
    "challenge-short": ({"code_challenge": "too-short"}, "invalid_request"),
    "challenge-42": ({"code_challenge": "a" * 42}, "invalid_request"),
    "challenge-129": ({"code_challenge": "a" * 129}, "invalid_request"),
    "challenge-bad-chars": ({"code_challenge": "+" * 43}, "invalid_request"),
    "challenge-44": ({"code_challenge": "a" * 44}, "invalid_request"),
    "challenge-final-newline": ({"code_challenge": "a" * 43 + "\n"}, "invalid_request"),
    "max-age-final-newline": ({"max_age": "5\n"}, "invalid_request"),
    "response-mode-fragment": ({"response_mode": "fragment"}, "invalid_request"),
    "response-mode-form-post": ({"response_mode": "form_post"}, "invalid_request"),
    "redirect-uri-with-code": ({"redirect_uri": KC_PREFIX + "?client_data=x&code=evil"},
                               "invalid_request"),
    "redirect-uri-with-state": ({"redirect_uri": KC_PREFIX + "?state=evil"}, "invalid_request"),
    "redirect-uri-with-iss": ({"redirect_uri": KC_PREFIX + "?iss=evil"}, "invalid_request"),
    "acr-values-not-met": ({"acr_values": "urn:acme:gold"}, "invalid_request"),
    "empty-response-type": ({"response_type": ""}, "invalid_request"),
    "empty-scope": ({"scope": ""}, "invalid_scope"),
    "empty-redirect-uri": ({"redirect_uri": ""}, "invalid_request"),
    "empty-code-challenge": ({"code_challenge": ""}, "invalid_request"),
    "empty-client-id": ({"client_id": ""}, "invalid_request"),
    "no-nonce": ({"nonce": None}, "invalid_request"),
    "empty-nonce": ({"nonce": ""}, "invalid_request"),
    "no-login-hint": ({"login_hint": None}, "invalid_request"),
    "empty-login-hint": ({"login_hint": ""}, "invalid_request"),
    "login-hint-256": ({"login_hint": "a" * 256}, "invalid_request"),
    "login-hint-nul": ({"login_hint": "alice\x00"}, "invalid_request"),
    "login-hint-newline": ({"login_hint": "alice\nbob"}, "invalid_request"),
    "login-hint-escape": ({"login_hint": "alice\x1b[31m"}, "invalid_request"),
    "state-too-long": ({"state": "s" * 1025}, "invalid_request"),
    "preferred-username-bell": ({"preferred_username": "x\x07"}, "invalid_request"),
    "request-object": ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
    "request-uri-pushed": ({"request_uri": REQUEST_URI_PREFIX + "abc"}, "invalid_request"),
    "client-id-mismatch": ({"client_id": "someone-else"}, "invalid_request"),
    "max-age-negative": ({"max_age": "-1"}, "invalid_request"),
    "max-age-word": ({"max_age": "ten"}, "invalid_request"),
    "max-age-fraction": ({"max_age": "1.5"}, "invalid_request"),
    "max-age-huge": ({"max_age": "9" * 12}, "invalid_request"),
    "prompt-unknown": ({"prompt": "bogus"}, "invalid_request"),
}


def push_raw(client, body: str, auth=(IDP_ID, IDP_SECRET)):
    """POST ``body`` to /par as it is: the encoding is the test's."""
    return client.post("/par", data=body, content_type="application/x-www-form-urlencoded",
                       auth=auth)


GOOD = {"response_type": "code", "scope": "openid", "client_id": IDP_ID,
        "redirect_uri": CALLBACK, "nonce": "n-1", "code_challenge": "a" * 43,
        "code_challenge_method": "S256", "login_hint": "alice"}


class TestAccepted:
    def test_created_with_request_uri_and_expiry(self, act, bridge):
        response, _ = act.push("alice")
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        assert body["request_uri"].startswith(REQUEST_URI_PREFIX)
        assert len(body["request_uri"]) > len(REQUEST_URI_PREFIX) + 20
        assert body["expires_in"] == 60
        assert response.headers["Cache-Control"] == "no-store"
        assert stored(bridge) == 1

    def test_each_push_gets_its_own_request_uri(self, act):
        first = act.push("alice")[0].get_json()["request_uri"]
        second = act.push("alice")[0].get_json()["request_uri"]
        assert first != second

    def test_client_secret_post(self, act, bridge):
        response, _ = act.push("alice", auth=None, client_secret=IDP_SECRET)
        assert response.status_code == 201, response.get_json()
        assert stored(bridge) == 1

    def test_optional_parameters(self, act):
        response, _ = act.push("alice", max_age="0", prompt="login", ui_locales="en",
                               acr_values=f"urn:acme:gold {DEFAULT_ACR}",
                               preferred_username=None, state=None)
        assert response.status_code == 201, response.get_json()

    def test_the_callback_keeps_the_redirect_uris_own_query_as_sent(self, act):
        """RFC 6749 §3.1.2: the query of the redirect URI "MUST be retained" when the response
        parameters are added: byte for byte, not decoded and encoded again."""
        uri = KC_PREFIX + "?client_data=a+b&flag&tab_id=%7E"
        login, callback = act.enroll("alice", redirect_uri=uri)
        assert callback.startswith(uri + "&code=")
        assert set(callback_params(callback)) == {"client_data", "tab_id", "code", "state",
                                                  "iss"}
        assert act.finish(login, callback)["sub"] == "alice"

    @pytest.mark.parametrize("uri", [
        KC_PREFIX,
        KC_PREFIX + "?session_code=abc&execution=x&client_id=app&tab_id=t1",
        KC_PREFIX + "?client_data=eyJhIjoxfQ",
    ], ids=["bare", "query", "client-data"])
    def test_redirect_uri_prefix_with_any_query(self, act, uri):
        response, _ = act.push("alice", redirect_uri=uri)
        assert response.status_code == 201, response.get_json()


class TestEmptyParameters:
    """RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted
    from the request" (the rule itself: tests/oidc/test_rfc9126.py); a required one sent
    empty is refused as missing (BAD_REQUESTS: empty-…)."""

    @pytest.mark.parametrize("name", ["state", "acr_values", "response_mode", "max_age",
                                      "ui_locales", "preferred_username", "prompt", "email"])
    def test_an_empty_optional_parameter_is_accepted(self, act, bridge, name):
        response, _ = act.push("alice", **{name: ""})
        assert response.status_code == 201, response.get_json()
        assert stored(bridge) == 1

    def test_an_empty_state_is_not_sent_back(self, act):
        _, callback = act.enroll("alice", state="")
        assert "state" not in callback_params(callback)

    @pytest.mark.parametrize("name", ["client_secret", "client_assertion",
                                      "client_assertion_type"])
    def test_basic_with_an_empty_body_credential_is_one_method(self, act, bridge, name):
        """An empty ``client_secret=`` beside HTTP Basic is no second method (RFC 6749 §2.3)."""
        response, _ = act.push("alice", **{name: ""})
        assert response.status_code == 201, response.get_json()

    def test_an_empty_client_secret_is_no_authentication(self, bridge, act):
        response, _ = act.push("alice", auth=None, client_secret="")
        refused(bridge, response, "invalid_client", 401)

    def test_an_empty_copy_still_makes_a_parameter_repeated(self, bridge, client):
        """``state=&state=x`` is refused as repeated, not read as ``state=x``."""
        body = refused(bridge, push_raw(client, urlencode(GOOD) + "&state=&state=x"),
                       "invalid_request")
        assert "state" in body["error_description"]

    @pytest.mark.parametrize("name", ['a"', "a%5C", "%C3%A9", "a%09", "n" * 65],
                             ids=["quote", "backslash", "non-ascii", "tab", "long"])
    def test_a_repeated_odd_name_is_refused_without_being_quoted(self, bridge, client, name):
        """An error_description may not hold ``"``, ``\\``, controls or non-ASCII (RFC 6749
        §5.2; authlib raises on them): the refusal says a parameter is repeated, not which."""
        body = refused(bridge, push_raw(client, f"{urlencode(GOOD)}&{name}=1&{name}=2"),
                       "invalid_request")
        assert body["error_description"] == "A parameter is repeated."


class TestTextEncoding:
    """RFC 6749 Appendix B: form bodies are UTF-8. A byte that is not UTF-8 after percent-
    decoding is refused, not kept as its escape."""

    @pytest.mark.parametrize("raw", ["preferred_username=Jos%E9", "state=%FF",
                                     "ui_locales=%C3", "%E9=x"],
                             ids=["latin-1-name", "ff-state", "truncated", "in-a-name"])
    def test_invalid_utf8_is_refused(self, bridge, client, raw):
        body = refused(bridge, push_raw(client, urlencode(GOOD) + "&" + raw),
                       "invalid_request")
        assert "UTF-8" in body["error_description"]

    def test_raw_bytes_that_are_not_utf8_are_refused(self, bridge, client):
        body = (urlencode(GOOD) + "&preferred_username=Jos").encode() + b"\xe9"
        refused(bridge, push_raw(client, body), "invalid_request")

    def test_utf8_display_name_is_shown_as_sent(self, act, client):
        response = push_raw(client, urlencode(GOOD) + "&preferred_username=Jos%C3%A9")
        assert response.status_code == 201, response.get_json()
        uri = response.get_json()["request_uri"]
        page = client.get(f"/authorize?client_id={IDP_ID}&request_uri={uri}")
        assert "Jos\u00e9" in page.get_data(as_text=True)


class TestClientAuthentication:
    def test_no_authentication(self, bridge, act):
        response = act.push("alice", auth=None)[0]
        refused(bridge, response, "invalid_client", 401)
        assert response.headers["WWW-Authenticate"] == (  # RFC 7617 §2: the realm is required
            'Basic realm="stepup", error="invalid_client", '
            'error_description="Client authentication failed."')

    @pytest.mark.parametrize("tamper", [
        lambda good: good + "!!!junk",  # after the padding: lenient base64 ignores it
        lambda good: good[:4] + "*" + good[4:],  # outside the alphabet: lenient base64 skips it
        lambda good: good + ", Basic Zm9v",  # a second header, joined to the first (RFC 9110)
        lambda good: good + ", Bearer x",
    ], ids=["junk-after", "junk-inside", "second-basic", "second-bearer"])
    def test_basic_credentials_are_one_strict_token(self, bridge, client, tamper):
        """RFC 7617 §2: one token68. Junk around a good credential, or a second Authorization
        header behind it, is not overlooked: a failed authentication."""
        good = base64.b64encode(f"{IDP_ID}:{IDP_SECRET}".encode()).decode()
        assert good.endswith("=")  # the padding a lenient decoder stops at
        assert push_raw(client, urlencode(GOOD)).status_code == 201
        response = client.post("/par", data=urlencode(GOOD),
                               content_type="application/x-www-form-urlencoded",
                               headers={"Authorization": f"Basic {tamper(good)}"})
        assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"

    def test_wrong_secret(self, bridge, act):
        refused(bridge, act.push("alice", auth=(IDP_ID, "wrong-secret-0123456789"))[0],
                "invalid_client", 401)

    def test_wrong_secret_post(self, bridge, act):
        response, _ = act.push("alice", auth=None, client_secret="wrong-secret-0123456789")
        refused(bridge, response, "invalid_client", 401)

    def test_unknown_client(self, bridge, act):
        refused(bridge, act.push("alice", auth=("nobody", IDP_SECRET), client_id="nobody")[0],
                "invalid_client", 401)

    def test_unknown_client_secret_post(self, bridge, act):
        response, _ = act.push("alice", auth=None, client_id="nobody", client_secret=IDP_SECRET)
        refused(bridge, response, "invalid_client", 401)

    @pytest.mark.parametrize("basic, posted", [
        (IDP_SECRET, IDP_SECRET), (IDP_SECRET, "wrong-secret-0123456789"),
        ("wrong-secret-0123456789", IDP_SECRET)], ids=["both-right", "post-wrong", "basic-wrong"])
    def test_two_authentication_methods_are_refused(self, bridge, act, basic, posted):
        """RFC 6749 §2.3: one method per request; with two, either could decide (§5.2)."""
        response, _ = act.push("alice", auth=(IDP_ID, basic), client_secret=posted)
        body = refused(bridge, response, "invalid_request")
        assert "authentication" in body["error_description"]


class TestRefusedParameters:
    @pytest.mark.parametrize("params, error", BAD_REQUESTS.values(), ids=BAD_REQUESTS)
    def test_clear_error(self, bridge, act, params, error):
        refused(bridge, act.push("alice", **params)[0], error)

    @pytest.mark.parametrize("value", ["\u00b2", "\u0663", "\uff11"],
                             ids=["superscript-two", "arabic-indic-three", "fullwidth-one"])
    def test_max_age_non_ascii_digits(self, bridge, act, value):
        """``str.isdigit`` is true for these; they must still be a 400, never a 500."""
        refused(bridge, act.push("alice", max_age=value)[0], "invalid_request")

    @pytest.mark.parametrize("prompt", ["none", "login none"])
    def test_prompt_none_cannot_be_honoured(self, bridge, act, prompt):
        # OpenID Connect Core §3.1.2.6, in the PAR response (RFC 9126 §2.3).
        refused(bridge, act.push("alice", prompt=prompt)[0], "login_required")

    @pytest.mark.parametrize("name, value", [
        ("scope", "openid"), ("state", "s1"), ("login_hint", "alice"),
        ("redirect_uri", CALLBACK), ("nonce", "n1"), ("response_type", "code"),
    ])
    def test_repeated_parameter(self, bridge, act, name, value):
        body = refused(bridge, act.push("alice", **{name: [value, value]})[0], "invalid_request")
        assert name in body["error_description"]

    @pytest.mark.parametrize("uri", [
        KC_PREFIX + "/more",
        KC_PREFIX + "/",
        KC_PREFIX + "/../../../evil",
        "https://kc.example/realms/other/login-actions/authenticate",
        "https://kc.example:8443/realms/acme/login-actions/authenticate",
        "http://kc.example/realms/acme/login-actions/authenticate",
        KC_PREFIX + "#fragment",
        KC_PREFIX + "?x=1#fragment",
        "https://user@kc.example/realms/acme/login-actions/authenticate",
        "https://user:pw@kc.example/realms/acme/login-actions/authenticate",
        "https://kc.example.evil.example/realms/acme/login-actions/authenticate",
        "https://evil.example/realms/acme/login-actions/authenticate",
        # urlsplit cannot take these apart ("Invalid IPv6 URL"): no URL, never a 500
        "https://[kc.example/realms/acme/login-actions/authenticate",
        "https://kc.example]/realms/acme/login-actions/authenticate",
        # urlsplit strips a leading space; the callback would start with it
        " " + KC_PREFIX + "?x=1",
    ], ids=["longer-path", "trailing-slash", "dot-segments", "other-path", "other-port",
            "http", "fragment", "query-fragment", "userinfo", "user-password",
            "suffix-host", "other-host", "unclosed-bracket", "closing-bracket",
            "leading-space"])
    def test_redirect_uri_prefix_rules(self, bridge, act, uri):
        refused(bridge, act.push("alice", redirect_uri=uri)[0], "invalid_request")


class TestRequestShape:
    def test_parameters_in_the_query_string_are_refused(self, bridge, act):
        """RFC 9126 §2.1: a form body; a client_secret in the query would authenticate."""
        post = act.client.post  # the IdP's request, its secret in the query instead
        act.client.post = lambda path, **kw: post(f"{path}?client_secret={IDP_SECRET}", **kw)
        refused(bridge, act.push("alice", auth=None)[0], "invalid_request")

    def test_json_body(self, bridge, client):
        response = client.post("/par", json={
            "response_type": "code", "scope": "openid", "client_id": IDP_ID,
            "redirect_uri": CALLBACK, "nonce": "n", "login_hint": "alice",
            "code_challenge": "a" * 43, "code_challenge_method": "S256",
        }, auth=(IDP_ID, IDP_SECRET))
        refused(bridge, response, "invalid_request")

    def test_multipart_body(self, bridge, client):
        response = client.post("/par", data={"response_type": "code"},
                               content_type="multipart/form-data", auth=(IDP_ID, IDP_SECRET))
        refused(bridge, response, "invalid_request")

    def test_get_not_allowed(self, client):
        response = client.get("/par?response_type=code&client_id=" + IDP_ID,
                              auth=(IDP_ID, IDP_SECRET))
        assert response.status_code == 405
        assert "POST" in response.headers["Allow"]

    def test_options_lists_only_what_is_allowed(self, client):
        response = client.options("/par")
        assert response.status_code == 204
        assert response.headers["Allow"] == "OPTIONS, POST"
