"""Discovery and JWKS (OpenID Connect Discovery 1.0 §3, §4, RFC 8414, RFC 9126 §5, RFC 9207),
and the signing keys behind them: rotation keeps old assertions verifiable, RS256 per client."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jws

from bridge.oidc.clients import new_client
from bridge.settings import DEFAULT_ACR
from tests.bridge.conftest import CALLBACK, callback_params, shown

ISSUER = "https://bridge.example"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.fixture
def meta(client) -> dict:
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


@pytest.fixture
def jwks(client) -> list[dict]:
    response = client.get("/jwks")
    assert response.status_code == 200
    return response.get_json()["keys"]


def kid_of(token: str) -> str:
    return jws.extract_compact(token.encode()).headers()["kid"]


def alg_of(token: str) -> str:
    return jws.extract_compact(token.encode()).headers()["alg"]


def login_id_token(act, clock, subject: str) -> str:
    """Enroll ``subject`` through the default IdP and return the raw id_token."""
    login, callback = act.enroll(subject)
    response = act.redeem(callback_params(callback)["code"], login)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id_token"]


class TestOpenIDProviderMetadata:
    def test_authlib_validator_accepts_it(self, meta):
        # authlib insists on RS256 in id_token_signing_alg_values_supported; we publish both.
        OpenIDProviderMetadata(meta).validate()

    def test_required_discovery_fields(self, meta):
        assert meta["issuer"] == ISSUER
        for name, path in [("authorization_endpoint", "/authorize"), ("token_endpoint", "/token"),
                           ("jwks_uri", "/jwks"),
                           ("pushed_authorization_request_endpoint", "/par")]:
            assert meta[name] == ISSUER + path, name
        assert meta["response_types_supported"] == ["code"]
        assert meta["subject_types_supported"] == ["public"]
        # RFC 8414 §2: every grant the token endpoint serves — client_credentials for
        # help-desk clients (docs/helpdesk.md).
        assert meta["grant_types_supported"] == ["authorization_code", "client_credentials"]
        assert "openid" in meta["scopes_supported"]

    def test_published_endpoints_are_served(self, meta, client):
        assert client.get(urlsplit(meta["jwks_uri"]).path).status_code == 200
        # Back-channel endpoints exist and speak OAuth JSON (not 404).
        for name in ("token_endpoint", "pushed_authorization_request_endpoint"):
            response = client.post(urlsplit(meta[name]).path, data={})
            assert response.status_code in (400, 401), name
            assert "error" in response.get_json()
        assert client.get(urlsplit(meta["authorization_endpoint"]).path).status_code == 400

    def test_par_is_required(self, meta):
        assert meta["require_pushed_authorization_requests"] is True

    def test_iss_in_authorization_response(self, meta):
        assert meta["authorization_response_iss_parameter_supported"] is True

    def test_pkce_only_s256(self, meta):
        assert meta["code_challenge_methods_supported"] == ["S256"]

    def test_signing_algorithms(self, meta):
        assert set(meta["id_token_signing_alg_values_supported"]) == {"ES256", "RS256"}
        assert meta["id_token_signing_alg_values_supported"][0] == "ES256"  # the default
        assert "none" not in meta["token_endpoint_auth_signing_alg_values_supported"]

    def test_client_auth_methods(self, meta):
        assert set(meta["token_endpoint_auth_methods_supported"]) == {
            "client_secret_basic", "client_secret_post", "private_key_jwt"}

    def test_claims_and_acr(self, meta):
        assert {"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr"} <= set(
            meta["claims_supported"])
        assert meta["acr_values_supported"] == [DEFAULT_ACR]

    def test_request_objects_not_offered(self, meta):
        assert meta["request_parameter_supported"] is False
        assert meta["request_uri_parameter_supported"] is False

    def test_configured_acr_is_advertised(self, tmp_path, clock):
        from bridge import create_app

        app = create_app({"data_dir": tmp_path, "issuer": ISSUER, "acr": "urn:acme:mfa"},
                         environ={}, clock=clock)
        meta = app.test_client().get("/.well-known/openid-configuration").get_json()
        assert meta["acr_values_supported"] == ["urn:acme:mfa"]


class TestJWKS:
    def test_es256_and_rs256_keys(self, jwks):
        by_alg = {key["alg"]: key for key in jwks}
        assert set(by_alg) == {"ES256", "RS256"}
        assert by_alg["ES256"]["kty"] == "EC" and by_alg["ES256"]["crv"] == "P-256"
        assert by_alg["RS256"]["kty"] == "RSA"

    def test_each_key_has_kid_alg_use(self, jwks):
        for key in jwks:
            assert key.get("kid"), key
            assert key["use"] == "sig"
            assert key["alg"] in ("ES256", "RS256")
        assert len({key["kid"] for key in jwks}) == len(jwks)

    def test_no_private_parts(self, jwks):
        for key in jwks:
            assert not PRIVATE_MEMBERS & set(key), sorted(key)


class TestRotation:
    def test_previous_keys_stay_published(self, client, bridge, clock, jwks):
        old = {key["kid"] for key in jwks}
        new = set(bridge.signing_keys.rotate(clock()))
        assert new and not new & old
        published = {key["kid"] for key in client.get("/jwks").get_json()["keys"]}
        assert old | new <= published

    def test_old_assertion_verifies_and_new_ones_use_the_new_key(self, act, bridge, clock):
        before = login_id_token(act, clock, "alice")
        old_kid = kid_of(before)
        new_kids = bridge.signing_keys.rotate(clock())
        assert old_kid not in new_kids
        # Verified against the JWKS as published after the rotation.
        assert act.verify_id_token(before).claims["sub"] == "alice"
        after = login_id_token(act, clock, "bob")
        assert kid_of(after) in new_kids
        assert act.verify_id_token(after).claims["sub"] == "bob"

    def test_every_assertion_names_the_active_key(self, act, bridge, clock):
        """With a retired key and one published ahead beside the active one, each assertion
        is signed by the active key and says so: joserfc, handed a whole key set without a
        ``kid``, signs with any key of the algorithm (found by mutating the header)."""
        bridge.signing_keys.rotate(clock())
        bridge.signing_keys.rotate(clock(), publish_ahead=3600)
        active = bridge.signing_keys.active("ES256")
        for name in ("amy", "ben", "cat", "dan", "eve", "fay"):
            assert kid_of(login_id_token(act, clock, name)) == active.kid

    def test_retired_keys_leave_once_their_assertions_expired(self, client, bridge, clock, jwks):
        """Not before the last assertion they signed expired and was checked, even on a node
        whose ring is 30 s old, with the rotating host's, the signing node's, the publishing
        node's and the relying party's clocks each 30 s off (found by review: a 60 s margin
        took them out early)."""
        old = {key["kid"] for key in jwks}
        bridge.signing_keys.rotate(clock())
        clock.advance(bridge.settings.id_token_ttl + 30 + 4 * 30 - 1)
        assert old <= {key["kid"] for key in client.get("/jwks").get_json()["keys"]}
        clock.advance(30)
        published = {key["kid"] for key in client.get("/jwks").get_json()["keys"]}
        assert not old & published
        assert len(published) == 2


class TestPerClientAlgorithm:
    RS_ID, RS_SECRET = "rs-idp", "rs-secret-0123456789"

    @pytest.fixture
    def rs_client(self, bridge):
        with bridge.store.begin() as tx:
            tx.add_client(new_client(bridge.secrets.pepper, self.RS_ID, secret=self.RS_SECRET,
                                     jwks_uri=None, redirect_uris=[CALLBACK],
                                     redirect_uri_prefixes=[], id_token_alg="RS256"))

    def test_rs256_client_gets_rs256_assertions(self, rs_client, act, client, jwks):
        auth = (self.RS_ID, self.RS_SECRET)
        response, login = act.push("erin", auth=auth, client_id=self.RS_ID)
        assert response.status_code == 201, response.get_json()
        act.opened(login, client.get(f"/authorize?client_id={self.RS_ID}"
                                     f"&request_uri={response.get_json()['request_uri']}"))
        login.secret = shown(login.last_page, "totp-secret")
        assert act.post(login, "enroll", otp=act.code_now(login)).status_code == 303
        done = act.post(login, "saved", saved="yes")
        code = callback_params(done.headers["Location"])["code"]
        token = act.redeem(code, login, auth=auth)
        assert token.status_code == 200, token.get_json()
        id_token = token.get_json()["id_token"]
        assert alg_of(id_token) == "RS256"
        rsa_kids = {key["kid"] for key in jwks if key["alg"] == "RS256"}
        assert kid_of(id_token) in rsa_kids
        claims = act.verify_id_token(id_token).claims
        assert claims["aud"] == self.RS_ID and claims["sub"] == "erin"

    def test_default_client_gets_es256(self, act, clock, jwks):
        id_token = login_id_token(act, clock, "frank")
        assert alg_of(id_token) == "ES256"
        assert kid_of(id_token) in {key["kid"] for key in jwks if key["alg"] == "ES256"}
