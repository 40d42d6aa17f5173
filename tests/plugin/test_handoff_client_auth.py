"""Client authentication at PAR and token endpoints: RFC 6749 §2.3.1, RFC 7523 §2.2 / §3."""

from __future__ import annotations

import base64
from urllib.parse import unquote

import pytest
from handoff_fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, REDIRECT_URI
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from joserfc.jwt import JWTClaimsRegistry

from stepup_handoff import HandoffClient

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def login(client, bridge):
    pending = client.start("user-42", REDIRECT_URI)
    return client.finish(pending, bridge.callback(pending))


def basic_credentials(request) -> tuple[str, str]:
    scheme, _, encoded = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode("ascii").partition(":")
    return unquote(user), unquote(password)


class TestClientSecretBasic:
    def test_credentials_in_the_header_form_encoded(self, client, bridge):
        login(client, bridge)

        for request in (bridge.par_requests[0], bridge.token_requests[0]):
            assert basic_credentials(request) == (CLIENT_ID, CLIENT_SECRET)
            assert "client_secret" not in bridge.form(request)
        # RFC 6749 §2.3.1: the secret is form-encoded before Base64, so "+" and "%" survive.
        raw = base64.b64decode(bridge.par_requests[0].headers["Authorization"].split()[1])
        assert b"+" not in raw and b"%25" in raw


class TestClientSecretPost:
    def test_credentials_in_the_body_and_no_header(self, bridge, clock):
        client = HandoffClient(
            ISSUER,
            CLIENT_ID,
            client_secret=CLIENT_SECRET,
            auth_method="client_secret_post",
            clock=clock,
        )

        login(client, bridge)

        for request in (bridge.par_requests[0], bridge.token_requests[0]):
            form = bridge.form(request)
            assert form["client_id"] == CLIENT_ID
            assert form["client_secret"] == CLIENT_SECRET
            assert "Authorization" not in request.headers


@pytest.fixture(scope="module")
def client_key() -> ECKey:
    return ECKey.generate_key("P-256", {"kid": "idp-key-1"})


class TestPrivateKeyJwt:
    def check_assertion(self, request, bridge, key, endpoint: str, alg: str) -> dict:
        form = bridge.form(request)
        assert form["client_assertion_type"] == JWT_BEARER
        assert "client_secret" not in form and "Authorization" not in request.headers
        public = key.as_dict(private=False)
        token = jwt.decode(form["client_assertion"], type(key).import_key(public), [alg])
        assert token.header["kid"] == key.kid
        assert token.header["alg"] == alg
        JWTClaimsRegistry(
            now=int(bridge.clock()),
            iss={"essential": True, "value": CLIENT_ID},
            sub={"essential": True, "value": CLIENT_ID},
            aud={"essential": True, "value": ISSUER},
            exp={"essential": True},
            jti={"essential": True},
        ).validate(token.claims)
        assert endpoint in token.claims["aud"]
        assert 0 < token.claims["exp"] - bridge.clock() <= 60
        return token.claims

    def test_es256_assertion_verifies_at_both_endpoints(self, bridge, clock, client_key):
        client = HandoffClient(
            ISSUER, CLIENT_ID, private_key=client_key, auth_method="private_key_jwt", clock=clock
        )

        login(client, bridge)

        par = self.check_assertion(
            bridge.par_requests[0], bridge, client_key, f"{ISSUER}/par", "ES256"
        )
        token = self.check_assertion(
            bridge.token_requests[0], bridge, client_key, f"{ISSUER}/token", "ES256"
        )
        assert par["jti"] != token["jti"]

    def test_rsa_key_as_a_dict_signs_rs256(self, bridge, clock):
        client_key = RSAKey.generate_key(2048, {"kid": "idp-rsa"})
        client = HandoffClient(
            ISSUER,
            CLIENT_ID,
            private_key=client_key.as_dict(private=True),
            auth_method="private_key_jwt",
            clock=clock,
        )

        login(client, bridge)

        self.check_assertion(bridge.par_requests[0], bridge, client_key, f"{ISSUER}/par", "RS256")

    def test_assertion_signed_by_another_key_would_be_caught(self, bridge, clock, client_key):
        """Guards the check above: a different key must not verify the assertion."""
        client = HandoffClient(
            ISSUER, CLIENT_ID, private_key=client_key, auth_method="private_key_jwt", clock=clock
        )
        client.start("user-42", REDIRECT_URI)
        stranger = ECKey.generate_key("P-256", {"kid": "idp-key-1"})

        with pytest.raises(Exception, match="bad_signature"):
            self.check_assertion(bridge.par_requests[0], bridge, stranger, ISSUER, "ES256")


class TestConstruction:
    """Bad parameters fail when the client is built, not on the first login."""

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"auth_method": "client_secret_jwt", "client_secret": "x"},
            {"auth_method": "client_secret_basic"},
            {"auth_method": "client_secret_post", "client_secret": ""},
            {"auth_method": "private_key_jwt"},
            {"auth_method": "private_key_jwt", "private_key": OctKey.generate_key(256)},
        ],
    )
    def test_refused(self, kwargs):
        with pytest.raises(ValueError):
            HandoffClient(ISSUER, CLIENT_ID, **kwargs)

    def test_public_key_refused_for_private_key_jwt(self, es_key):
        public = es_key.as_dict(private=False)
        with pytest.raises(ValueError, match="private"):
            HandoffClient(ISSUER, CLIENT_ID, private_key=public, auth_method="private_key_jwt")

    @pytest.mark.parametrize("marked", [{"alg": "RS512"}, {"alg": "PS256"}, {"use": "enc"},
                                        {"key_ops": ["verify"]}], ids=str)
    def test_a_key_marked_for_another_use_is_refused_here(self, marked):
        """Found by review: accepted here, then every start() raised joserfc's error (no
        HandoffError: a 500 at each login)."""
        key = {**RSAKey.generate_key(2048).as_dict(private=True), **marked}
        with pytest.raises(ValueError, match="another use than signing with RS256"):
            HandoffClient(ISSUER, CLIENT_ID, private_key=key, auth_method="private_key_jwt")

    def test_secret_not_in_repr(self):
        client = HandoffClient(ISSUER, CLIENT_ID, client_secret=CLIENT_SECRET)
        assert CLIENT_SECRET not in repr(client) and CLIENT_SECRET not in repr(vars(client))
