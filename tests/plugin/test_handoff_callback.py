"""The authorization response at the IdP: state (RFC 6749 §10.12), iss (RFC 9207), errors."""

from __future__ import annotations

import pytest
from handoff_fakes import CLIENT_ID, CLIENT_SECRET, CODE, REDIRECT_URI

from stepup_handoff import AccessDenied, HandoffClient, HandoffError, StateMismatch


class TestState:
    @pytest.mark.parametrize("state", ["someone-elses-state", "", None, "\udcff", "état"])
    def test_mismatch_or_missing_refused_before_redeeming(self, client, bridge, handoff, state):
        pending, _ = handoff()

        with pytest.raises(StateMismatch):
            client.finish(pending, bridge.callback(pending, state=state))  # None: no state
        assert bridge.token_requests == []

    def test_state_of_another_hand_off_refused(self, client, bridge):
        mine = client.start("user-42", REDIRECT_URI)
        theirs = client.start("user-43", REDIRECT_URI)

        with pytest.raises(StateMismatch):
            client.finish(mine, bridge.callback(theirs))


class TestIssuerParameter:
    """RFC 9207 §2.4: mix-up defence."""

    def test_wrong_iss_refused(self, client, bridge, handoff):
        pending, _ = handoff()

        with pytest.raises(HandoffError) as caught:
            client.finish(pending, bridge.callback(pending, iss="https://evil.example"))
        assert caught.value.error == "issuer_mismatch"
        assert bridge.token_requests == []

    def test_missing_iss_refused_when_discovery_promises_it(self, client, bridge, handoff):
        pending, _ = handoff()

        with pytest.raises(HandoffError) as caught:
            client.finish(pending, bridge.callback(pending, iss=None))
        assert caught.value.error == "missing_iss"
        assert bridge.token_requests == []

    def test_missing_iss_tolerated_when_discovery_does_not_promise_it(self, client, bridge):
        bridge.discovery["authorization_response_iss_parameter_supported"] = False
        pending = client.start("user-42", REDIRECT_URI)

        assert client.finish(pending, bridge.callback(pending, iss=None)).subject == "user-42"

    def test_wrong_iss_refused_even_without_the_promise(self, client, bridge):
        bridge.discovery["authorization_response_iss_parameter_supported"] = False
        pending = client.start("user-42", REDIRECT_URI)

        with pytest.raises(HandoffError, match="iss"):
            client.finish(pending, bridge.callback(pending, iss="https://bridge.example/"))


class TestMixUp:
    """RFC 9207 §2.4 with several bridges: a hand-off is finished only by the client (bridge
    and client_id) that started it, so its code is never sent to another bridge."""

    @pytest.fixture
    def other(self, rsps, clock, bridge):
        fake = bridge.elsewhere("https://other-bridge.example", rsps)
        client = HandoffClient(fake.issuer, CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)
        return fake, client

    def test_finished_by_the_client_of_another_bridge(self, client, bridge, other):
        other_bridge, other_client = other
        pending = client.start("user-42", REDIRECT_URI)

        with pytest.raises(HandoffError) as caught:
            other_client.finish(pending, other_bridge.callback(pending))
        assert caught.value.error == "issuer_mismatch"
        assert other_bridge.token_requests == [] and bridge.token_requests == []

    def test_finished_by_another_client_of_the_same_bridge(self, client, bridge, clock):
        pending = client.start("user-42", REDIRECT_URI)
        twin = HandoffClient(bridge.issuer, "other-idp", client_secret="x", clock=clock)

        with pytest.raises(HandoffError) as caught:
            twin.finish(pending, bridge.callback(pending))
        assert caught.value.error == "issuer_mismatch"
        assert bridge.token_requests == []

    def test_pending_records_the_bridge_and_client(self, client, handoff):
        pending, _ = handoff()

        assert (pending.issuer, pending.client_id) == (client.issuer, client.client_id)


class TestErrorResponse:
    """RFC 6749 §4.1.2.1: the bridge says no."""

    def test_access_denied(self, client, bridge, handoff):
        pending, _ = handoff()
        params = bridge.callback(
            pending, code=None, error="access_denied", error_description="Too many attempts"
        )

        with pytest.raises(AccessDenied) as caught:
            client.finish(pending, params)
        assert caught.value.error == "access_denied"
        assert caught.value.description == "Too many attempts"
        assert bridge.token_requests == []

    def test_other_error_code_is_carried(self, client, bridge, handoff):
        pending, _ = handoff()
        params = bridge.callback(pending, code=None, error="server_error")

        with pytest.raises(HandoffError) as caught:
            client.finish(pending, params)
        assert not isinstance(caught.value, AccessDenied)
        assert caught.value.error == "server_error"

    def test_description_loses_control_and_bidi_characters(self, client, bridge, handoff):
        """Log injection: terminal escapes, line breaks, bidi overrides, zero-width marks."""
        pending, _ = handoff()
        text = "Locked\x1b[2J\r\nFAKE LOG LINE\u202egnp.exe\u2066\u200b out\x00"
        params = bridge.callback(pending, code=None, error="access_denied", error_description=text)

        with pytest.raises(AccessDenied) as caught:
            client.finish(pending, params)
        assert caught.value.description == "Locked [2J FAKE LOG LINE gnp.exe out"
        assert caught.value.description.isprintable()

    def test_error_with_wrong_state_is_a_state_mismatch(self, client, bridge, handoff):
        pending, _ = handoff()
        params = {"error": "access_denied", "state": "forged", "iss": bridge.discovery["issuer"]}

        with pytest.raises(StateMismatch):
            client.finish(pending, params)

    @pytest.mark.parametrize("code", ["\udcff", "co de\n", "código"])
    def test_a_code_that_is_no_code_is_refused_before_redeeming(self, client, bridge, handoff,
                                                                code):
        """RFC 6749 App. A.11: a code is VSCHAR; other text would not even encode."""
        pending, callback = handoff()

        with pytest.raises(HandoffError) as caught:
            client.finish(pending, {**callback, "code": code})
        assert caught.value.error == "invalid_response"
        assert bridge.token_requests == []

    def test_neither_code_nor_error(self, client, bridge, handoff):
        pending, _ = handoff()

        with pytest.raises(HandoffError) as caught:
            client.finish(pending, bridge.callback(pending, code=None))
        assert caught.value.error == "invalid_response"

    def test_messages_never_carry_the_code(self, client, bridge, handoff):
        pending, callback = handoff()
        bridge.token_reply = (400, {"error": "invalid_grant"})

        with pytest.raises(HandoffError) as caught:
            client.finish(pending, callback)
        assert CODE not in str(caught.value)
        assert pending.code_verifier not in str(caught.value)
