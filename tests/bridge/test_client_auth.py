"""``private_key_jwt`` client authentication (OpenID Connect Core §9, RFC 7523 §2.2, §3) at
the PAR and token endpoints, against the client's keys fetched from its ``jwks_uri``."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
import requests
import responses
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from bridge.oidc.clients import new_client
from tests.bridge.conftest import CALLBACK, IDP_ID, IDP_SECRET, callback_params, shown
from tests.bridge.test_throttling import client_failures

ISSUER = "https://bridge.example"
JWT_ID = "jwt-idp"
JWKS_URI = "https://jwt-idp.example/jwks.json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def idp_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"alg": "ES256", "use": "sig"}, auto_kid=True)


@pytest.fixture
def idp_jwks(idp_key):
    """The IdP's published keys; every other outgoing HTTP request fails."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JWKS_URI, json={"keys": [idp_key.as_dict(private=False)]})
        yield mock


@pytest.fixture
def jwt_client(bridge, idp_jwks):
    with bridge.store.begin() as tx:
        tx.add_client(new_client(bridge.secrets.pepper, JWT_ID, secret=None, jwks_uri=JWKS_URI,
                                 redirect_uris=[CALLBACK], redirect_uri_prefixes=[]))


class Assertions:
    """Signs client assertions as the IdP would; each call a fresh ``jti`` unless given."""

    def __init__(self, key: ECKey, clock):
        self.key, self.clock = key, clock

    def __call__(self, *, key: ECKey | OctKey | None = None, aud: str | list[str] = ISSUER,
                 lifetime: int = 60, jti: str | None = None, iss: str = JWT_ID,
                 sub: str = JWT_ID, iat_offset: int = 0, exp: object = None,
                 alg: str = "ES256") -> dict:
        key = key or self.key
        now = int(self.clock()) + iat_offset
        claims = {"iss": iss, "sub": sub, "aud": aud, "iat": now,
                  "exp": now + lifetime if exp is None else exp,
                  "jti": jti or secrets.token_urlsafe(16)}
        token = jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": token}


@pytest.fixture
def sign(idp_key, clock) -> Assertions:
    return Assertions(idp_key, clock)


def push(act, assertion: dict, subject: str = "alice"):
    return act.push(subject, auth=None, client_id=JWT_ID, **assertion)


def invalid_client(response) -> None:
    """Refused as ``invalid_client`` — never a 500. (The exact status: see TestStatus.)"""
    body = response.get_json()
    assert response.status_code in (400, 401), (response.status_code, body)
    assert body["error"] == "invalid_client", body


def enroll(act, client, assertion: dict, subject: str = "alice"):
    """PAR with ``assertion``, then the user enrolls; returns the login and its code."""
    response, login = push(act, assertion, subject)
    assert response.status_code == 201, response.get_json()
    uri = response.get_json()["request_uri"]
    act.opened(login, client.get(f"/authorize?client_id={JWT_ID}&request_uri={uri}"))
    login.secret = shown(login.last_page, "totp-secret")
    assert act.post(login, "enroll", otp=act.code_now(login)).status_code == 303
    done = act.post(login, "saved", saved="yes")
    return login, callback_params(done.headers["Location"])["code"]


@pytest.mark.usefixtures("jwt_client")
class TestPar:
    @pytest.mark.parametrize("aud", [ISSUER, f"{ISSUER}/par"], ids=["issuer", "par-endpoint"])
    def test_signed_assertion(self, act, sign, aud):
        response, _ = push(act, sign(aud=aud))
        assert response.status_code == 201, response.get_json()

    def test_wrong_key(self, act, sign):
        other = ECKey.generate_key("P-256", auto_kid=True)
        invalid_client(push(act, sign(key=other))[0])

    def test_wrong_key_with_the_registered_kid(self, act, sign, idp_key):
        other = ECKey.generate_key("P-256", parameters={"kid": idp_key.kid})
        invalid_client(push(act, sign(key=other))[0])

    def test_reused_jti(self, act, sign):
        assertion = sign(jti="once")
        assert push(act, assertion)[0].status_code == 201
        invalid_client(push(act, assertion)[0])

    def test_reused_jti_in_a_new_assertion(self, act, sign):
        assert push(act, sign(jti="once"))[0].status_code == 201
        invalid_client(push(act, sign(jti="once"))[0])

    @pytest.mark.parametrize("aud", ["https://evil.example", f"{ISSUER}/authorize",
                                     "https://bridge.example.evil"])
    def test_wrong_audience(self, act, sign, aud):
        invalid_client(push(act, sign(aud=aud))[0])

    def test_expired(self, act, sign):
        invalid_client(push(act, sign(iat_offset=-600, lifetime=60))[0])

    def test_missing_jti(self, act, idp_key, clock):
        now = int(clock())
        token = jwt.encode({"alg": "ES256", "kid": idp_key.kid},
                           {"iss": JWT_ID, "sub": JWT_ID, "aud": ISSUER, "exp": now + 60}, idp_key)
        invalid_client(push(act, {"client_assertion_type": ASSERTION_TYPE,
                                  "client_assertion": token})[0])

    def test_client_secret_basic_refused(self, act):
        invalid_client(act.push("alice", auth=(JWT_ID, IDP_SECRET), client_id=JWT_ID)[0])

    def test_client_secret_post_refused(self, act):
        invalid_client(act.push("alice", auth=None, client_id=JWT_ID,
                                client_secret=IDP_SECRET)[0])

    def test_secret_client_cannot_use_an_assertion(self, act, bridge, idp_key, clock):
        """A client_secret client has no keys; an assertion naming it is refused."""
        response, _ = act.push("alice", auth=None,
                               **Assertions(idp_key, clock)(iss=IDP_ID, sub=IDP_ID))
        invalid_client(response)

    def test_assertion_for_this_and_another_server_refused(self, act, sign):
        """Every audience must be the bridge's: an assertion also addressed to another server
        could be replayed here by that server (RFC 7523 §3)."""
        invalid_client(push(act, sign(aud=["https://evil.example", ISSUER]))[0])
        response, _ = push(act, sign(aud=[ISSUER, f"{ISSUER}/par"]))  # the hand-off client's
        assert response.status_code == 201, response.get_json()

    def test_far_expiry_refused(self, act, sign):
        """RFC 7523 §3: an assertion valid for longer than an hour is refused (its jti would
        be kept until it expires)."""
        assert push(act, sign(lifetime=3600))[0].status_code == 201
        invalid_client(push(act, sign(lifetime=3601 + 60))[0])

    @pytest.mark.parametrize("exp", [10**400, 1e308, "9999999999", True],
                             ids=["huge-int", "huge-float", "string", "bool"])
    def test_odd_expiry_refused(self, act, sign, exp):
        invalid_client(push(act, sign(exp=exp))[0])

    def test_symmetric_key_in_the_jwks_signs_nothing(self, act, sign, idp_jwks, idp_key):
        """Discovery names ES256 and RS256 only: an HS256 assertion made with an ``oct`` key
        the client published (which anyone can read) is refused."""
        public = OctKey.generate_key(256, parameters={"kid": "shared"})
        idp_jwks.replace(responses.GET, JWKS_URI,
                         json={"keys": [idp_key.as_dict(private=False), public.as_dict()]})
        invalid_client(push(act, sign(key=public, alg="HS256"))[0])

    @pytest.mark.parametrize("header, payload", [
        ('{"alg":"ES256"}', f'{{"sub":"{JWT_ID}","a":{"[" * 5000}{"]" * 5000}}}'),
        ('{"alg":"x\\"\\u00e9"}', f'{{"sub":"{JWT_ID}"}}'),
        ('{"alg":"ES256","kid":"a\\"b\\\\c\\u00e9"}', f'{{"sub":"{JWT_ID}"}}'),
        ('{"alg":"ES256","crit":["\\"\\u00e9"]}', f'{{"sub":"{JWT_ID}"}}'),
    ], ids=["deep-payload", "odd-alg", "odd-kid", "odd-crit"])
    def test_hostile_assertion_is_refused_not_a_500(self, act, header, payload):
        """Unsigned junk naming a real client (JSON nested past the parser's depth; header
        values with quotes, backslashes and non-ASCII, which joserfc quotes in its errors):
        a clear invalid_client at both endpoints."""
        def part(text: str) -> str:
            return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
        junk = {"client_assertion_type": ASSERTION_TYPE,
                "client_assertion": f"{part(header)}.{part(payload)}.c2ln"}
        invalid_client(push(act, junk)[0])
        invalid_client(act.client.post("/token", data={
            "grant_type": "authorization_code", "code": "x", "redirect_uri": CALLBACK,
            "code_verifier": "v" * 43, "client_id": JWT_ID, **junk}))


@pytest.mark.usefixtures("jwt_client")
class TestToken:
    @pytest.mark.parametrize("aud", [ISSUER, f"{ISSUER}/token"], ids=["issuer", "token-endpoint"])
    def test_signed_assertion(self, act, client, sign, aud):
        login, code = enroll(act, client, sign())
        response = act.redeem(code, login, auth=None, client_id=JWT_ID, **sign(aud=aud))
        assert response.status_code == 200, response.get_json()
        claims = act.verify_id_token(response.get_json()["id_token"]).claims
        assert claims["aud"] == JWT_ID and claims["sub"] == "alice"

    def test_wrong_key(self, act, client, sign):
        login, code = enroll(act, client, sign())
        other = ECKey.generate_key("P-256", auto_kid=True)
        invalid_client(act.redeem(code, login, auth=None, **sign(key=other)))

    def test_reused_jti(self, act, client, sign):
        """The PAR assertion cannot be replayed at the token endpoint."""
        assertion = sign(aud=ISSUER)
        login, code = enroll(act, client, assertion)
        invalid_client(act.redeem(code, login, auth=None, **assertion))

    def test_wrong_audience(self, act, client, sign):
        login, code = enroll(act, client, sign())
        invalid_client(act.redeem(code, login, auth=None, **sign(aud="https://evil.example")))

    def test_expired(self, act, client, sign):
        login, code = enroll(act, client, sign())
        invalid_client(act.redeem(code, login, auth=None,
                                  **sign(iat_offset=-600, lifetime=60)))

    def test_client_secret_basic_refused(self, act, client, sign):
        login, code = enroll(act, client, sign())
        invalid_client(act.redeem(code, login, auth=(JWT_ID, IDP_SECRET)))

    def test_failed_authentication_leaves_the_code(self, act, client, sign):
        login, code = enroll(act, client, sign())
        act.redeem(code, login, auth=None, **sign(aud="https://evil.example"))
        assert act.redeem(code, login, auth=None, **sign()).status_code == 200


@pytest.mark.usefixtures("jwt_client")
class TestStatus:
    """Every failed client authentication answers 401, as for a wrong client secret, so an
    IdP's handling does not depend on which check failed (RFC 6749 §5.2 allows it)."""

    def test_par(self, act, sign):
        assert push(act, sign(aud="https://evil.example"))[0].status_code == 401

    def test_token(self, act, client, sign):
        login, code = enroll(act, client, sign())
        assert act.redeem(code, login, auth=None, **sign(lifetime=-120)).status_code == 401


class TestKeyFetch:
    def test_keys_are_fetched_once(self, act, sign, jwt_client, idp_jwks):
        for _ in range(3):
            assert push(act, sign())[0].status_code == 201
        assert len(idp_jwks.calls) == 1
        assert idp_jwks.calls[0].request.url == JWKS_URI

    def test_unreachable_jwks_is_an_auth_failure(self, act, sign, bridge):
        with responses.RequestsMock() as mock:
            mock.get(JWKS_URI, body=requests.ConnectionError("down"))
            with bridge.store.begin() as tx:
                tx.add_client(new_client(bridge.secrets.pepper, JWT_ID, secret=None,
                                         jwks_uri=JWKS_URI, redirect_uris=[CALLBACK],
                                         redirect_uri_prefixes=[]))
            invalid_client(push(act, sign())[0])

    @pytest.mark.parametrize("reply", [{"status": 500, "body": "oops"},
                                       {"status": 200, "body": "not json"},
                                       {"status": 200, "json": {"keys": [{"kty": "nope"}]}}],
                             ids=["server-error", "not-json", "bad-jwks"])
    def test_broken_jwks_is_an_auth_failure(self, act, sign, bridge, reply):
        with responses.RequestsMock() as mock:
            mock.get(JWKS_URI, **reply)
            with bridge.store.begin() as tx:
                tx.add_client(new_client(bridge.secrets.pepper, JWT_ID, secret=None,
                                         jwks_uri=JWKS_URI, redirect_uris=[CALLBACK],
                                         redirect_uri_prefixes=[]))
            invalid_client(push(act, sign())[0])

    def test_unavailable_keys_are_no_guess_for_the_callers_window(self, act, sign, bridge):
        """No credential was tried, so the IdP's own address is not closed while its JWKS
        endpoint is down."""
        with responses.RequestsMock() as mock:
            mock.get(JWKS_URI, status=503)
            with bridge.store.begin() as tx:
                tx.add_client(new_client(bridge.secrets.pepper, JWT_ID, secret=None,
                                         jwks_uri=JWKS_URI, redirect_uris=[CALLBACK],
                                         redirect_uri_prefixes=[]))
            for _ in range(3):
                invalid_client(push(act, sign())[0])
            assert client_failures(bridge, JWT_ID) == 0

    def test_assertions_refused_unread_are_no_guess_for_the_callers_window(
            self, act, sign, bridge, jwt_client, idp_key, clock):
        """An unsigned assertion, one with an algorithm discovery does not name, or one naming
        a client that has no keys tries no credential: as many as the window holds, and the
        IdP's own signed assertion still passes."""
        def part(value: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
        claims = {"iss": JWT_ID, "sub": JWT_ID, "aud": ISSUER, "exp": int(clock()) + 60}
        unsigned = {"client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": f"{part({'alg': 'none'})}.{part(claims)}."}
        symmetric = sign(key=OctKey.generate_key(256, parameters={"kid": "k"}), alg="HS256")
        for _ in range(bridge.settings.ip_limit):
            invalid_client(push(act, unsigned)[0])
            invalid_client(push(act, symmetric)[0])
            invalid_client(act.push("alice", auth=None,
                                    **Assertions(idp_key, clock)(iss=IDP_ID, sub=IDP_ID))[0])
        assert client_failures(bridge, JWT_ID) == client_failures(bridge, IDP_ID) == 0
        assert push(act, sign())[0].status_code == 201

    def test_a_caller_past_its_window_is_refused_before_any_key_is_fetched(
            self, act, sign, bridge, jwt_client, idp_jwks):
        """Assertions signed with a wrong key count; then even a good one is refused before
        its client's keys are looked at."""
        other = ECKey.generate_key("P-256", parameters={"kid": "not-registered"})
        for _ in range(bridge.settings.ip_limit):
            invalid_client(push(act, sign(key=other))[0])
        assert client_failures(bridge, JWT_ID) == bridge.settings.ip_limit
        fetched = len(idp_jwks.calls)
        refused = push(act, sign())[0]
        assert refused.status_code == 429, refused.get_json()
        assert refused.get_json()["error"] == "temporarily_unavailable"
        assert len(idp_jwks.calls) == fetched
