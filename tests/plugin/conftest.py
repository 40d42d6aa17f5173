"""Fixtures: a fake Stepup Bridge behind `responses`, and a hand-off client pointed at it;
the same fake behind a real HTTP server on 127.0.0.1 for the tests about the network."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from handoff_fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, REDIRECT_URI, Clock, FakeBridge
from joserfc.jwk import ECKey, RSAKey
from local_servers import LocalBridge

from stepup_handoff import HandoffClient


@pytest.fixture(scope="session")
def es_key() -> ECKey:
    return ECKey.generate_key("P-256", {"kid": "es-1", "use": "sig", "alg": "ES256"})


@pytest.fixture(scope="session")
def rs_key() -> RSAKey:
    return RSAKey.generate_key(2048, {"kid": "rs-1", "use": "sig", "alg": "RS256"})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def bridge(rsps, clock, es_key, rs_key) -> FakeBridge:
    fake = FakeBridge(clock=clock, signing_key=es_key, published=[es_key, rs_key])
    fake.install(rsps)
    return fake


@pytest.fixture
def client(bridge, clock) -> HandoffClient:
    return HandoffClient(ISSUER, CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)


@pytest.fixture
def handoff(client, bridge):
    """Act: start a hand-off for user-42 and return (pending, callback params)."""

    def run(**start_options: Any):
        pending = client.start("user-42", REDIRECT_URI, **start_options)
        return pending, bridge.callback(pending)

    return run


@pytest.fixture
def local_bridge(clock, es_key, rs_key):
    served = LocalBridge({"clock": clock, "signing_key": es_key, "published": [es_key, rs_key]})
    yield served
    served.stop()


@pytest.fixture
def local_client(local_bridge, clock) -> HandoffClient:
    return HandoffClient(local_bridge.issuer, CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)
