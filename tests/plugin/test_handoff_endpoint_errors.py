"""Refusals from the bridge's back channel: discovery (OIDC Discovery §4.3), PAR (RFC 9126
§2.3), token (RFC 6749 §5.2)."""

from __future__ import annotations

import pytest
import requests
from handoff_fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, REDIRECT_URI

from stepup_handoff import DiscoveryError, HandoffClient, PushError, TokenError


class TestDiscovery:
    def test_issuer_mismatch_refused(self, client, bridge):
        bridge.discovery["issuer"] = "https://evil.example"

        with pytest.raises(DiscoveryError, match="issuer"):
            client.start("user-42", REDIRECT_URI)
        assert bridge.par_requests == []

    def test_trailing_slash_is_a_different_issuer(self, bridge, clock):
        client = HandoffClient(ISSUER + "/", CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)

        with pytest.raises(DiscoveryError):
            client.start("user-42", REDIRECT_URI)

    def test_missing_par_endpoint_refused(self, client, bridge):
        del bridge.discovery["pushed_authorization_request_endpoint"]

        with pytest.raises(DiscoveryError, match="pushed_authorization_request_endpoint"):
            client.start("user-42", REDIRECT_URI)

    def test_unsupported_auth_method_refused(self, client, bridge):
        bridge.discovery["token_endpoint_auth_methods_supported"] = ["private_key_jwt"]

        with pytest.raises(DiscoveryError, match="client_secret_basic"):
            client.start("user-42", REDIRECT_URI)

    def test_unreachable_bridge(self, client, rsps):
        rsps.replace(
            "GET",
            f"{ISSUER}/.well-known/openid-configuration",
            body=requests.ConnectionError("refused"),
        )

        with pytest.raises(DiscoveryError) as caught:
            client.start("user-42", REDIRECT_URI)
        assert caught.value.error == "unreachable"

    def test_cache_expires_after_an_hour(self, client, bridge, clock):
        client.start("user-42", REDIRECT_URI)
        clock.advance(3599)
        client.start("user-42", REDIRECT_URI)
        assert bridge.discovery_fetches == 1

        clock.advance(1)
        client.start("user-42", REDIRECT_URI)
        assert bridge.discovery_fetches == 2


class TestPushRefused:
    def test_oauth_error_code_surfaced(self, client, bridge):
        bridge.par_reply = (
            400,
            {"error": "invalid_redirect_uri", "error_description": "redirect_uri not registered"},
        )

        with pytest.raises(PushError) as caught:
            client.start("user-42", REDIRECT_URI)
        assert caught.value.error == "invalid_redirect_uri"
        assert caught.value.description == "redirect_uri not registered"
        assert CLIENT_SECRET not in str(caught.value)

    def test_a_short_user_id_quoted_back_is_cut_out_where_it_stands_alone(self, client, bridge):
        bridge.par_reply = (400, {"error": "invalid_request",
                                  "error_description": "no such user 4711 (request 47110)"})

        with pytest.raises(PushError) as caught:
            client.start("4711", REDIRECT_URI)
        assert caught.value.description == "no such user […] (request 47110)"

    def test_non_json_refusal_gets_the_http_status(self, client, rsps):
        rsps.replace("POST", f"{ISSUER}/par", status=503, body="<html>down</html>")

        with pytest.raises(PushError) as caught:
            client.start("user-42", REDIRECT_URI)
        assert caught.value.error == "http_503"

    def test_200_is_not_201(self, client, bridge):
        bridge.par_reply = (200, {"request_uri": "urn:x", "expires_in": 60})

        with pytest.raises(PushError):
            client.start("user-42", REDIRECT_URI)

    @pytest.mark.parametrize(
        "body",
        [
            {"expires_in": 60},
            {"request_uri": "urn:x"},
            {"request_uri": "urn:x", "expires_in": "60"},
            {"request_uri": "urn:x", "expires_in": 0},
            # found by review: an OverflowError, no PushError, with the real (float) clock
            {"request_uri": "urn:x", "expires_in": 10**400},
            {"request_uri": "urn:x", "expires_in": 3601},
        ],
    )
    def test_incomplete_answer(self, client, bridge, body):
        bridge.par_reply = (201, body)

        with pytest.raises(PushError) as caught:
            client.start("user-42", REDIRECT_URI)
        assert caught.value.error == "invalid_response"

    def test_redirect_is_not_followed(self, client, rsps):
        rsps.replace(
            "POST", f"{ISSUER}/par", status=307, headers={"Location": "https://evil.example/par"}
        )

        with pytest.raises(PushError) as caught:
            client.start("user-42", REDIRECT_URI)
        assert caught.value.error == "http_307"


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), 1e10, True, "5"])
def test_a_timeout_that_is_no_bound_is_refused_at_once(timeout):
    with pytest.raises(ValueError, match="timeout must be a number of seconds above 0"):
        HandoffClient(ISSUER, CLIENT_ID, client_secret=CLIENT_SECRET, timeout=timeout)


class TestTokenRefused:
    def test_oauth_error_code_surfaced(self, client, bridge, handoff):
        pending, callback = handoff()
        bridge.token_reply = (
            400,
            {"error": "invalid_grant", "error_description": "code expired or already used"},
        )

        with pytest.raises(TokenError) as caught:
            client.finish(pending, callback)
        assert caught.value.error == "invalid_grant"
        assert "already used" in caught.value.description

    def test_what_the_request_sent_is_cut_out_of_a_quoted_description(self, client, bridge,
                                                                       handoff):
        """The message goes to the IdP's logs: a server that quotes the code, the verifier or
        the client secret back does not get them there."""
        pending, callback = handoff()
        code = callback["code"]
        bridge.token_reply = (400, {"error": "invalid_grant", "error_description": (
            f"code {code} with verifier {pending.code_verifier} for {CLIENT_SECRET}")})

        with pytest.raises(TokenError) as caught:
            client.finish(pending, callback)
        said = str(caught.value)
        assert code not in said and pending.code_verifier not in said
        assert CLIENT_SECRET not in said and said.count("[…]") == 3

    def test_a_quoted_redirect_uri_stays_readable(self, client, bridge, handoff):
        """The commonest refusal names what does not match: that is no secret."""
        pending, callback = handoff()
        bridge.token_reply = (400, {"error": "invalid_grant", "error_description": (
            f"redirect_uri {REDIRECT_URI} does not match; grant_type authorization_code")})

        with pytest.raises(TokenError) as caught:
            client.finish(pending, callback)
        assert REDIRECT_URI in str(caught.value) and "authorization_code" in str(caught.value)

    def test_response_without_id_token(self, client, bridge, handoff):
        pending, callback = handoff()
        bridge.token_reply = (200, {"access_token": "x", "token_type": "Bearer"})

        with pytest.raises(TokenError) as caught:
            client.finish(pending, callback)
        assert caught.value.error == "invalid_response"

    def test_odd_error_code_is_not_echoed(self, client, bridge, handoff):
        pending, callback = handoff()
        bridge.token_reply = (401, {"error": 'bad "thing"\n<script>'})

        with pytest.raises(TokenError) as caught:
            client.finish(pending, callback)
        assert caught.value.error == "http_401"


def test_a_callback_name_given_as_none_is_absent(client, handoff):
    """A dict built with .get() carries None for what the callback lacks."""
    pending, callback = handoff()
    assert client.finish(pending, {**callback, "error": None}).subject == "user-42"


@pytest.mark.parametrize("callback", [None, "code=x&state=y", {"code": ["x"], "state": ["y"]}])
def test_a_callback_that_is_no_string_mapping_is_a_callers_mistake(client, handoff, callback):
    """parse_qs' lists once read as a state mismatch (an attack), None as an AttributeError."""
    pending, _ = handoff()
    with pytest.raises(TypeError, match="callback_params must map each name to one string"):
        client.finish(pending, callback)


def test_dir_and_help_list_the_public_names():
    import stepup_handoff

    assert {"HandoffClient", "PendingHandoff", "HandoffError"} <= set(dir(stepup_handoff))


class TestTransportSecurity:
    """RFC 6749 §2.3.1, §3.1, §3.2 and RFC 8414 §2: credentials, codes and verifiers only
    over TLS; plain http only to this machine, for tests and demos."""

    @pytest.mark.parametrize(
        "issuer",
        [
            "http://bridge.example",
            "http://127.0.0.1.bridge.example",
            "http://localhost.bridge.example",
            "ftp://bridge.example",
            "bridge.example",
            "https://bridge.example?tenant=1",
            "https://bridge.example#top",
            "https://bridge.example#",
            "https://bridge.example?",
            "https://user:pw@bridge.example",
            "https://",
        ],
    )
    def test_issuer_refused(self, issuer):
        with pytest.raises(ValueError, match="issuer"):
            HandoffClient(issuer, CLIENT_ID, client_secret=CLIENT_SECRET)

    # The same hosts as the Java authenticator's StepupConfigTest: both clients judge alike.
    @pytest.mark.parametrize("host", ["localhost", "LocalHost", "127.0.0.1", "127.1.2.3",
                                      "127.255.255.254", "[::1]", "[0:0:0:0:0:0:0:1]"])
    def test_loopback_issuer_accepted(self, host):
        issuer = f"http://{host}:5000"
        assert HandoffClient(issuer, CLIENT_ID, client_secret=CLIENT_SECRET).issuer == issuer

    @pytest.mark.parametrize("issuer", ["https://b.example#", "https://b.example#x",
                                        "https://b.example?", "https://b.example/?a=1"])
    def test_issuer_with_a_query_or_fragment_is_refused_by_name(self, issuer):
        with pytest.raises(ValueError, match="issuer must have no query or fragment"):
            HandoffClient(issuer, CLIENT_ID, client_secret=CLIENT_SECRET)

    @pytest.mark.parametrize("host", ["128.0.0.1", "127.0.0.256", "127.000.0.1", "10.0.0.1",
                                      "[::2]", "[::ffff:127.0.0.1]", "[::1%25lo]",
                                      "localhost.example.com",
                                      "127.0.0.1.nip.io", "mfa.example.com"])
    def test_plain_http_issuer_elsewhere_refused(self, host):
        with pytest.raises(ValueError, match="issuer must be an https URL"):
            HandoffClient(f"http://{host}:5000", CLIENT_ID, client_secret=CLIENT_SECRET)

    @pytest.mark.parametrize(
        "endpoint",
        [
            "authorization_endpoint",
            "pushed_authorization_request_endpoint",
            "token_endpoint",
            "jwks_uri",
        ],
    )
    def test_plain_http_endpoint_refused(self, client, bridge, endpoint):
        bridge.discovery[endpoint] = bridge.discovery[endpoint].replace("https:", "http:")

        with pytest.raises(DiscoveryError, match=f"{endpoint} without https"):
            client.start("user-42", REDIRECT_URI)
        assert bridge.par_requests == []

    def test_an_endpoint_with_an_empty_fragment_is_refused(self, client, bridge):
        """``…/authorize#``: the query the client appends would sit in the fragment."""
        bridge.discovery["authorization_endpoint"] += "#"

        with pytest.raises(DiscoveryError, match="authorization_endpoint"):
            client.start("user-42", REDIRECT_URI)

    def test_loopback_endpoint_refused_for_a_public_issuer(self, client, bridge):
        bridge.discovery["token_endpoint"] = "http://127.0.0.1:5000/token"

        with pytest.raises(DiscoveryError, match="token_endpoint"):
            client.start("user-42", REDIRECT_URI)

    def test_loopback_issuer_may_not_name_a_plain_http_host_elsewhere(self, rsps, clock, bridge):
        local = bridge.elsewhere("http://127.0.0.1:5000", rsps)
        local.discovery["token_endpoint"] = "http://bridge.example/token"
        client = HandoffClient(local.issuer, CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)

        with pytest.raises(DiscoveryError, match="token_endpoint"):
            client.start("user-42", REDIRECT_URI)

    def test_endpoints_on_another_https_origin_accepted(self, client, bridge, rsps):
        """Allowed by RFC 8414 §2: the document itself came over TLS from the issuer."""
        bridge.discovery["token_endpoint"] = "https://backchannel.bridge.example/token"
        rsps.add_callback("POST", "https://backchannel.bridge.example/token", bridge._token)
        pending = client.start("user-42", REDIRECT_URI)

        assert client.finish(pending, bridge.callback(pending)).subject == "user-42"

    def test_loopback_issuer_end_to_end_over_real_http(self, local_client, local_bridge):
        pending = local_client.start("user-42", REDIRECT_URI)

        result = local_client.finish(pending, local_bridge.fake.callback(pending))
        assert result.subject == "user-42"
