"""id_token verification (OpenID Connect Core §3.1.3.7) and the JWKS cache (RFC 7517)."""

from __future__ import annotations

import base64
import json

import pytest
from handoff_fakes import CLIENT_ID, ISSUER
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from stepup_handoff import InvalidAssertion


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def refused(client, handoff, match: str) -> InvalidAssertion:
    pending, callback = handoff()
    with pytest.raises(InvalidAssertion, match=match) as caught:
        client.finish(pending, callback)
    return caught.value


class TestSignature:
    def test_rs256_from_the_published_rsa_key_accepted(self, client, bridge, handoff, rs_key):
        bridge.signing_key = rs_key
        pending, callback = handoff()

        assert client.finish(pending, callback).subject == "user-42"

    def test_wrong_signature(self, client, bridge, handoff):
        bridge.signing_key = ECKey.generate_key("P-256", {"kid": "es-1"})  # same kid, other key

        refused(client, handoff, "signature")

    def test_tampered_payload(self, client, bridge, handoff, es_key):
        def tamper(claims, header, key):
            head, _, sig = jwt.encode(header, claims, key, algorithms=["ES256"]).split(".")
            return ".".join([head, b64({**claims, "sub": "admin"}), sig])

        bridge.mint = tamper

        refused(client, handoff, "signature")

    def test_alg_none_refused(self, client, bridge, handoff):
        bridge.mint = lambda claims, header, key: (
            f"{b64({'alg': 'none', 'kid': 'es-1'})}.{b64(claims)}."
        )

        refused(client, handoff, "alg must be")

    def test_hs256_refused(self, client, bridge, handoff):
        secret = OctKey.generate_key(256, {"kid": "es-1"})
        bridge.signing_key = secret
        bridge.header_changes = {"alg": "HS256"}

        refused(client, handoff, "alg must be")

    def test_rs256_token_naming_the_ec_key_refused(self, client, bridge, handoff, rs_key):
        bridge.signing_key = rs_key
        bridge.header_changes = {"kid": "es-1"}  # the EC key: alg and key type disagree

        refused(client, handoff, "kid")

    def test_missing_kid_refused(self, client, bridge, handoff):
        bridge.header_changes = {"kid": None}
        bridge.mint = lambda claims, header, key: jwt.encode(
            {"alg": "ES256"}, claims, key, algorithms=["ES256"]
        )

        refused(client, handoff, "no kid")

    def test_not_a_jwt(self, client, bridge, handoff):
        bridge.mint = lambda claims, header, key: "not-a-token"

        refused(client, handoff, "compact")


class TestClaims:
    @pytest.mark.parametrize(
        ("changes", "match"),
        [
            ({"iss": "https://evil.example"}, "'iss'"),
            ({"iss": None}, "iss"),
            ({"aud": "someone-else"}, "'aud'"),
            ({"aud": ["someone-else", "another"]}, "'aud'"),
            ({"aud": [CLIENT_ID, "another"]}, "'aud'"),
            ({"aud": [CLIENT_ID, "another"], "azp": "another"}, "'aud'"),
            ({"azp": "another"}, "azp"),  # one audience: an azp must still be this client
            ({"nonce": "replayed-nonce"}, "'nonce'"),
            ({"nonce": None}, "nonce"),
            ({"sub": "user-43"}, "'sub'"),
            ({"iat": None}, "iat"),
            ({"exp": None}, "exp"),
            ({"acr": None}, "acr"),
            ({"amr": "otp"}, "amr"),
            ({"auth_time": None}, "auth_time"),
        ],
    )
    def test_refused(self, client, bridge, handoff, changes, match):
        bridge.claim_changes = changes

        refused(client, handoff, match)

    def test_a_huge_auth_time_is_refused_not_an_overflow(self, client, bridge, handoff):
        bridge.claim_changes = {"auth_time": 10**400}

        refused(client, handoff, "auth_time")

    def test_auth_time_before_the_hand_off_began_is_refused(self, client, bridge, handoff, clock):
        """The factor was used for another login: the assertion is not this hand-off's."""
        bridge.claim_changes = {"auth_time": int(clock()) - 120}

        refused(client, handoff, "before this hand-off began")

    def test_several_audiences_refused_even_with_azp(self, client, bridge, handoff):
        bridge.claim_changes = {"aud": [CLIENT_ID, "another"], "azp": CLIENT_ID}

        refused(client, handoff, "'aud' is not this client alone")

    @pytest.mark.parametrize("changes", [{"aud": [CLIENT_ID]}, {"azp": CLIENT_ID}])
    def test_this_client_alone_accepted(self, client, bridge, handoff, changes):
        bridge.claim_changes = changes
        pending, callback = handoff()

        assert client.finish(pending, callback).subject == "user-42"

    def test_nonce_in_a_list_refused(self, client, bridge, handoff):
        """joserfc's registry accepts a list that contains the expected value."""
        mint = bridge.mint
        bridge.mint = lambda claims, header, key: mint(
            {**claims, "nonce": [claims["nonce"]]}, header, key
        )

        refused(client, handoff, "'nonce'")

    def test_expired_beyond_leeway(self, client, bridge, handoff, clock):
        bridge.claim_changes = {"exp": int(clock()) - 31}

        refused(client, handoff, "expired")

    def test_expired_within_leeway_accepted(self, client, bridge, handoff, clock):
        bridge.claim_changes = {"exp": int(clock()) - 29}
        pending, callback = handoff()

        assert client.finish(pending, callback).subject == "user-42"

    def test_expired_at_the_leeway_s_edge(self, client, bridge, handoff, clock):
        """RFC 7519 §4.1.4: now must be before exp (here, exp plus the leeway)."""
        bridge.claim_changes = {"exp": int(clock()) - 30}

        refused(client, handoff, "expired")

    def test_not_yet_valid_beyond_leeway(self, client, bridge, handoff, clock):
        bridge.claim_changes = {"nbf": int(clock()) + 31}

        refused(client, handoff, "'nbf'")

    def test_not_before_within_leeway_accepted(self, client, bridge, handoff, clock):
        bridge.claim_changes = {"nbf": int(clock()) + 30}
        pending, callback = handoff()

        assert client.finish(pending, callback).subject == "user-42"

    def test_issued_in_the_future(self, client, bridge, handoff, clock):
        bridge.claim_changes = {"iat": int(clock()) + 120}

        refused(client, handoff, "'iat'")

    def test_errors_do_not_carry_the_token(self, client, bridge, handoff):
        bridge.claim_changes = {"sub": "user-43"}

        error = refused(client, handoff, "'sub'")
        assert "eyJ" not in str(error)


class TestLifetime:
    """The bridge's id_tokens live at most 300 s (DESIGN.md): an older or longer-lived one is
    not a fresh answer to this hand-off, whatever its exp says."""

    def test_issued_too_long_ago(self, client, bridge, handoff, clock):
        bridge.claim_changes = {"iat": int(clock()) - 331, "exp": int(clock()) + 60}

        refused(client, handoff, "issued too long ago")

    def test_meant_to_live_too_long(self, client, bridge, handoff, clock):
        bridge.claim_changes = {"iat": int(clock()), "exp": int(clock()) + 331}

        refused(client, handoff, "lives longer")

    def test_oldest_and_longest_the_bridge_issues_accepted(self, client, bridge, handoff, clock):
        bridge.claim_changes = {"iat": int(clock()) - 329, "exp": int(clock()) + 1}
        pending, callback = handoff()

        assert client.finish(pending, callback).subject == "user-42"

    def test_iat_must_be_a_number(self, client, bridge, handoff, clock):
        bridge.claim_changes = {"iat": str(int(clock()))}

        refused(client, handoff, "iat")


class TestType:
    """RFC 7519 §5.1, RFC 8725 §3.11: the bridge sets typ JWT; another typed token signed by
    the same keys is not an id_token."""

    @pytest.mark.parametrize("typ", ["at+jwt", "logout+jwt", "JOSE"])
    def test_other_typ_refused(self, client, bridge, handoff, typ):
        bridge.header_changes = {"typ": typ}

        refused(client, handoff, "typ")

    def test_crit_refused(self, client, bridge, handoff):
        bridge.header_changes = {"crit": ["kid"]}  # one joserfc knows: it would accept it

        refused(client, handoff, "crit")

    @pytest.mark.parametrize("typ", ["JWT", "jwt"])
    def test_jwt_accepted(self, client, bridge, handoff, typ):
        bridge.header_changes = {"typ": typ}
        pending, callback = handoff()

        assert client.finish(pending, callback).subject == "user-42"


class TestKeyRotation:
    """A new kid means the bridge rotated: refetch the JWKS once, rate-limited."""

    def test_unknown_kid_refetches_once_then_succeeds(self, client, bridge, handoff):
        client.finish(*handoff())  # warms the JWKS cache
        assert bridge.jwks_fetches == 1
        new_key = ECKey.generate_key("P-256", {"kid": "es-2", "use": "sig", "alg": "ES256"})
        bridge.published = [new_key, bridge.signing_key]
        bridge.signing_key = new_key

        result = client.finish(*handoff())

        assert result.subject == "user-42"
        assert bridge.jwks_fetches == 2

    def test_unknown_kid_refetches_once_then_fails(self, client, bridge, handoff):
        client.finish(*handoff())
        bridge.signing_key = ECKey.generate_key("P-256", {"kid": "ghost"})  # never published

        refused(client, handoff, "kid")
        assert bridge.jwks_fetches == 2

    def test_refetch_is_rate_limited(self, client, bridge, handoff, clock):
        client.finish(*handoff())
        bridge.signing_key = ECKey.generate_key("P-256", {"kid": "ghost"})
        refused(client, handoff, "kid")
        refused(client, handoff, "kid")
        assert bridge.jwks_fetches == 2

        clock.advance(60)
        refused(client, handoff, "kid")
        assert bridge.jwks_fetches == 3

    def test_first_fetch_is_not_followed_by_a_refetch(self, client, bridge, handoff):
        bridge.signing_key = ECKey.generate_key("P-256", {"kid": "ghost"})

        refused(client, handoff, "kid")
        assert bridge.jwks_fetches == 1

    @pytest.mark.parametrize("entry", [
        {"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"},  # a curve joserfc cannot load
        {"kty": "RSA", "use": "enc", "n": "!!", "e": "AQAB"},  # a broken modulus
        "not a key",
    ], ids=["p-192", "bad-rsa", "not-an-object"])
    def test_a_key_this_client_cannot_use_is_skipped(self, client, bridge, handoff, entry):
        """RFC 7517 §5: one unusable entry must not make every step-up fail."""
        bridge.extra_jwks = [entry]
        pending, callback = handoff()

        assert client.finish(pending, callback).subject == "user-42"

    def test_a_kid_shared_by_keys_of_two_types_finds_the_one_that_fits(
        self, client, bridge, handoff, es_key, rs_key
    ):
        from joserfc.jwk import RSAKey

        twin = RSAKey.generate_key(2048, parameters={"kid": es_key.kid})
        bridge.extra_jwks = [twin.as_dict(private=False)]  # listed first, no alg
        pending, callback = handoff()

        assert client.finish(pending, callback).subject == "user-42"

    def test_empty_jwks_is_a_discovery_error(self, client, bridge, handoff):
        from stepup_handoff import DiscoveryError

        bridge.published = []
        pending, callback = handoff()

        with pytest.raises(DiscoveryError) as caught:
            client.finish(pending, callback)
        assert caught.value.error == "invalid_jwks"


def test_issuer_constant_matches_fake(bridge):
    assert bridge.discovery["issuer"] == ISSUER
