"""Discovery and JWKS while the bridge is down: a failed fetch is remembered 15 s (no request
per login), and the last good document is still used for an hour past its age."""

from __future__ import annotations

import pytest
from handoff_fakes import REDIRECT_URI

from stepup_handoff import DiscoveryError

RETRY_AFTER = 15
GRACE = 3600


class TestJwksDown:
    def test_last_good_keys_kept_and_refetches_spaced(self, client, bridge, handoff, clock):
        client.finish(*handoff())
        clock.advance(3600)  # the cached keys have expired
        bridge.down = {"jwks"}

        assert client.finish(*handoff()).subject == "user-42"
        assert bridge.jwks_fetches == 2
        clock.advance(RETRY_AFTER - 1)
        assert client.finish(*handoff()).subject == "user-42"
        assert bridge.jwks_fetches == 2  # the failure is remembered: no new request
        clock.advance(1)
        assert client.finish(*handoff()).subject == "user-42"
        assert bridge.jwks_fetches == 3

    def test_back_when_the_bridge_is(self, client, bridge, handoff, clock):
        client.finish(*handoff())
        clock.advance(3600)
        bridge.down = {"jwks"}
        client.finish(*handoff())
        bridge.down = set()
        clock.advance(RETRY_AFTER)

        client.finish(*handoff())
        clock.advance(299)
        client.finish(*handoff())
        assert bridge.jwks_fetches == 3  # fresh again for the bridge's max-age, 300 s
        clock.advance(1)
        client.finish(*handoff())
        assert bridge.jwks_fetches == 4

    def test_keys_given_up_after_the_grace(self, client, bridge, handoff, clock):
        client.finish(*handoff())
        bridge.down = {"jwks"}
        clock.advance(3600 + GRACE)

        with pytest.raises(DiscoveryError):
            client.finish(*handoff())

    def test_a_garbled_key_set_counts_as_down(self, client, bridge, handoff, clock):
        client.finish(*handoff())
        clock.advance(3600)
        bridge.published = []

        assert client.finish(*handoff()).subject == "user-42"

    def test_first_fetch_failing_is_remembered(self, client, bridge, handoff, clock):
        bridge.down = {"jwks"}
        for _ in range(3):
            with pytest.raises(DiscoveryError):
                client.finish(*handoff())
        assert bridge.jwks_fetches == 1

        clock.advance(RETRY_AFTER)
        bridge.down = set()
        assert client.finish(*handoff()).subject == "user-42"
        assert bridge.jwks_fetches == 2


class TestDiscoveryDown:
    def test_last_good_document_kept_and_refetches_spaced(self, client, bridge, clock):
        client.start("user-42", REDIRECT_URI)
        clock.advance(3600)
        bridge.down = {"discovery"}

        client.start("user-42", REDIRECT_URI)
        client.start("user-42", REDIRECT_URI)
        assert bridge.discovery_fetches == 2
        clock.advance(RETRY_AFTER)
        client.start("user-42", REDIRECT_URI)
        assert bridge.discovery_fetches == 3

    def test_first_fetch_failing_is_remembered(self, client, bridge, clock):
        bridge.down = {"discovery"}
        for _ in range(3):
            with pytest.raises(DiscoveryError) as caught:
                client.start("user-42", REDIRECT_URI)
            assert caught.value.error == "discovery_failed"
        assert bridge.discovery_fetches == 1
        assert bridge.par_requests == []


def test_a_fetch_stuck_past_its_wait_is_abandoned_for_a_new_one():
    """A fetch stuck in the system resolver (no timeout bounds it) must not keep every later
    caller waiting for it: past ``wait`` the next caller fetches anew, and the stuck one's
    late answer does not overwrite the newer value."""
    import threading

    from stepup_handoff.cached import Cached

    now = [1000.0]
    stuck, answers = threading.Event(), iter(["late", "fresh"])

    def fetch():
        answer = next(answers)
        if answer == "late":
            stuck.wait(10)
        return answer

    cached = Cached(fetch, what="test", clock=lambda: now[0], max_age=60, wait=0.2)
    first = threading.Thread(target=cached.get)
    first.start()
    while cached._flight is None:  # the first fetch is in flight
        threading.Event().wait(0.01)
    now[0] += 1  # past wait
    assert cached.get() == ("fresh", True)
    stuck.set()
    first.join(5)
    assert cached.get() == ("fresh", False)


def test_logins_meeting_a_rotated_key_together_wait_for_the_one_refetch():
    """The first login with an unknown kid refetches; one arriving while that fetch runs
    waits for it instead of failing on the old keys (found by review of the Keycloak
    authenticator, whose cache had the same gap)."""
    import threading

    from joserfc.jwk import ECKey

    from stepup_handoff.assertion import JwksCache

    old, new = ECKey.generate_key("P-256", {"kid": "old"}), ECKey.generate_key(
        "P-256", {"kid": "new"})
    slow, fetches = threading.Event(), []

    def fetch():
        fetches.append(1)
        if len(fetches) == 1:
            return {"keys": [old.as_dict(private=False)]}
        slow.wait(5)  # the refetch is in flight while the second login arrives
        return {"keys": [old.as_dict(private=False), new.as_dict(private=False)]}

    cache = JwksCache(fetch, clock=lambda: 1000.0, wait=5)
    assert cache.key_for("old", "ES256").kid == "old"
    found: list = []
    first = threading.Thread(target=lambda: found.append(cache.key_for("new", "ES256")))
    first.start()
    while len(fetches) < 2:
        threading.Event().wait(0.01)
    second = threading.Thread(target=lambda: found.append(cache.key_for("new", "ES256")))
    second.start()
    threading.Event().wait(0.2)  # the second login is waiting, not failing
    slow.set()
    first.join(5), second.join(5)
    assert [key.kid for key in found] == ["new", "new"]
    assert len(fetches) == 2
