"""The whole hand-off, start → browser → finish, against the fake bridge (RFC 9126, RFC 7636)."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest
from handoff_fakes import ACR, CLIENT_ID, CODE, ISSUER, REDIRECT_URI

from stepup_handoff import HandoffError, PendingHandoff, StepupResult


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class TestPushedAuthorizationRequest:
    """RFC 9126 §2.1: what start() pushes, and what it hands back."""

    def test_payload_field_by_field(self, client, bridge):
        pending = client.start("user-42", REDIRECT_URI)

        pushed = bridge.pushed()
        assert set(pushed) == {
            "response_type",
            "scope",
            "client_id",
            "redirect_uri",
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
            "login_hint",
        }
        assert pushed["response_type"] == "code"
        assert pushed["scope"] == "openid"
        assert pushed["client_id"] == CLIENT_ID
        assert pushed["redirect_uri"] == REDIRECT_URI
        assert pushed["state"] == pending.state
        assert pushed["nonce"] == pending.nonce
        assert pushed["code_challenge_method"] == "S256"
        assert pushed["login_hint"] == "user-42"
        assert bridge.par_requests[0].headers["Content-Type"] == (
            "application/x-www-form-urlencoded"
        )

    def test_pkce_challenge_is_s256_of_the_kept_verifier(self, client, bridge):
        pending = client.start("user-42", REDIRECT_URI)

        assert 43 <= len(pending.code_verifier) <= 128  # RFC 7636 §4.1
        assert bridge.pushed()["code_challenge"] == s256(pending.code_verifier)
        assert pending.code_verifier not in bridge.par_requests[0].body

    def test_state_nonce_and_verifier_are_fresh_per_start(self, client):
        first = client.start("user-42", REDIRECT_URI)
        second = client.start("user-42", REDIRECT_URI)

        assert first.state != second.state
        assert first.nonce != second.nonce
        assert first.code_verifier != second.code_verifier
        assert len(first.state) >= 32 and len(first.nonce) >= 32

    def test_optional_parameters_are_pushed(self, client, bridge):
        client.start(
            "user-42",
            REDIRECT_URI,
            preferred_username="Ada Lovelace",
            email="ada@example.org",
            acr_values=["urn:a", "urn:b"],
            ui_locales="nl en",
            max_age=0,
            prompt="login",
        )

        pushed = bridge.pushed()
        assert pushed["preferred_username"] == "Ada Lovelace"
        assert pushed["email"] == "ada@example.org"
        assert pushed["acr_values"] == "urn:a urn:b"
        assert pushed["ui_locales"] == "nl en"
        assert pushed["max_age"] == "0"
        assert pushed["prompt"] == "login"

    def test_authorize_url_carries_only_client_id_and_request_uri(self, client, clock):
        pending = client.start("user-42", REDIRECT_URI)

        url = urlsplit(pending.authorize_url)
        assert f"{url.scheme}://{url.netloc}{url.path}" == f"{ISSUER}/authorize"
        assert parse_qs(url.query) == {
            "client_id": [CLIENT_ID],
            "request_uri": ["urn:ietf:params:oauth:request_uri:r1"],
        }
        assert pending.expires_at == clock() + 60

    def test_bad_arguments_fail_before_any_request(self, client, bridge):
        with pytest.raises(ValueError):
            client.start("", REDIRECT_URI)
        with pytest.raises(ValueError):
            client.start("user-42", REDIRECT_URI, max_age=-1)
        assert bridge.par_requests == []


class TestFinish:
    def test_happy_path_returns_the_verified_step_up(self, client, bridge, handoff, clock):
        pending, callback = handoff()

        result = client.finish(pending, callback)

        assert isinstance(result, StepupResult)
        assert result.subject == "user-42"
        assert result.acr == ACR
        assert result.amr == ("otp",)
        assert result.auth_time == int(clock()) - 5
        assert result.claims["nonce"] == pending.nonce
        assert result.claims["aud"] == CLIENT_ID

    def test_token_request_field_by_field(self, client, bridge, handoff):
        pending, callback = handoff()

        client.finish(pending, callback)

        sent = bridge.form(bridge.token_requests[0])
        assert sent == {
            "grant_type": "authorization_code",
            "code": CODE,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": pending.code_verifier,
        }
        assert s256(sent["code_verifier"]) == bridge.pushed()["code_challenge"]

    def test_recovery_code_amr_is_kept_opaque(self, client, bridge, handoff):
        bridge.amr = ["otp", "rc"]
        pending, callback = handoff()

        assert client.finish(pending, callback).amr == ("otp", "rc")

    def test_discovery_and_jwks_are_cached_across_logins(self, client, bridge, handoff):
        for _ in range(3):
            pending, callback = handoff()
            client.finish(pending, callback)

        assert bridge.discovery_fetches == 1
        assert bridge.jwks_fetches == 1

    def test_max_age_is_checked_against_auth_time(self, client, bridge, handoff, clock):
        bridge.claim_changes["auth_time"] = int(clock()) - 600
        pending, callback = handoff(max_age=60)

        with pytest.raises(HandoffError, match="max_age"):
            client.finish(pending, callback)

    def test_an_acr_other_than_those_asked_for_is_refused(self, client, handoff):
        """acr_values are voluntary (OIDC Core §3.1.2.1): the client holds the bridge to them."""
        pending, callback = handoff(acr_values=["urn:other:level", "urn:another"])

        assert pending.acr_values == ("urn:other:level", "urn:another")
        with pytest.raises(HandoffError, match="acr_values"):
            client.finish(pending, callback)

    @pytest.mark.parametrize("asked", [ACR, ["urn:other:level", ACR], f"urn:other:level {ACR}"])
    def test_the_acr_asked_for_passes(self, client, handoff, asked):
        pending, callback = handoff(acr_values=asked)

        assert client.finish(pending, callback).acr == ACR


class TestPendingHandoff:
    def test_round_trip_through_to_dict(self, client, handoff):
        pending, callback = handoff(max_age=120)

        stored = pending.to_dict()
        restored = PendingHandoff.from_dict(stored)

        assert restored == pending
        assert (stored["issuer"], stored["client_id"]) == (ISSUER, CLIENT_ID)
        assert restored.max_age == 120
        assert restored.acr_values == ()
        assert client.finish(restored, callback).subject == "user-42"

    def test_acr_values_survive_json(self, client, handoff):
        import json

        pending, callback = handoff(acr_values=["urn:other:level"])
        restored = PendingHandoff.from_dict(json.loads(json.dumps(pending.to_dict())))

        assert restored.acr_values == ("urn:other:level",)
        with pytest.raises(HandoffError, match="acr_values"):
            client.finish(restored, callback)

    def test_a_record_from_before_acr_values_checks_no_acr(self, client, handoff):
        pending, callback = handoff()
        record = pending.to_dict()
        del record["acr_values"]

        restored = PendingHandoff.from_dict(record)
        assert restored.acr_values == ()
        assert client.finish(restored, callback).subject == "user-42"

    def test_to_dict_is_json_safe(self, handoff):
        import json

        pending, _ = handoff()

        assert PendingHandoff.from_dict(json.loads(json.dumps(pending.to_dict()))) == pending

    def test_is_frozen_and_hides_the_verifier_in_repr(self, handoff):
        pending, _ = handoff()

        with pytest.raises(AttributeError):
            pending.state = "other"  # type: ignore[misc]
        assert pending.code_verifier not in repr(pending)

    @pytest.mark.parametrize(
        "damage",
        [
            {"state": None},
            {"nonce": 7},
            {"code_verifier": ""},
            {"issuer": None},
            {"max_age": 1e999},  # json.loads("1e999"): inf
            {"max_age": True},
            {"max_age": -5},
            {"max_age": 3.9},
            {"expires_at": float("nan")},
            {"pushed_at": "soon"},
            {"pushed_at": True},  # float(True) is 1.0: the check would pass anything
            {"redirect_uri": "https://idp.example/cb\ud800"},  # cannot be sent as UTF-8
            {"acr_values": "urn:a"},  # one string, not a list: would match its letters
            {"acr_values": ["urn:a", 7]},
            {"acr_values": [""]},
        ],
    )
    def test_damaged_record_is_refused(self, handoff, damage):
        pending, _ = handoff()
        record = {**pending.to_dict(), **damage}

        with pytest.raises(HandoffError) as caught:
            PendingHandoff.from_dict(record)
        assert caught.value.error == "invalid_pending"

    @pytest.mark.parametrize("stored", [120, 120.0, "120", "decimal"])
    def test_a_whole_max_age_comes_back_however_the_store_keeps_it(self, handoff, stored):
        from decimal import Decimal

        pending, _ = handoff(max_age=120)
        record = {**pending.to_dict(), "max_age": Decimal(120) if stored == "decimal" else stored}

        assert PendingHandoff.from_dict(record).max_age == 120

    def test_a_record_from_before_pushed_at_skips_that_check(self, client, bridge, handoff,
                                                            clock):
        """Stored by an older version: no push time to compare with, so an earlier auth_time
        is not refused for it (a fresh record refuses it)."""
        bridge.claim_changes["auth_time"] = int(clock()) - 120
        pending, callback = handoff()
        record = {k: v for k, v in pending.to_dict().items() if k != "pushed_at"}

        assert client.finish(PendingHandoff.from_dict(record), callback).subject == "user-42"

    def test_record_without_its_bridge_is_refused(self, handoff):
        """One stored before the record named its bridge: it cannot be checked, so it fails."""
        pending, _ = handoff()
        record = {k: v for k, v in pending.to_dict().items() if k not in ("issuer", "client_id")}

        with pytest.raises(HandoffError) as caught:
            PendingHandoff.from_dict(record)
        assert caught.value.error == "invalid_pending"
