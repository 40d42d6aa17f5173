"""How the bridge fetches a ``private_key_jwt`` client's JWKS, against real HTTP servers on
127.0.0.1: anyone can make it fetch (an assertion naming the client is enough), so a failed
fetch is remembered, an unknown ``kid`` refetches at most once per interval (OpenID Connect
Core §10.1.1), and a fetch is bounded as a whole, in time and in size."""

from __future__ import annotations

import json
import threading

import pytest
from authlib.oauth2.rfc6749 import InvalidClientError
from joserfc.jwk import ECKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from bridge.oidc.clients import ClientKeys, new_client
from tests.bridge.conftest import CALLBACK
from tests.bridge.test_client_auth import JWT_ID, Assertions, invalid_client, push
from tests.conftest import FakeClock
from tests.receivers import DripServer


def new_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"alg": "ES256", "use": "sig"}, auto_kid=True)


class JwksServer:
    """Serves ``keys`` as a JWKS and counts the requests. ``mode``: "ok", "down" (503), "hang"
    (answers after ``hang_s`` seconds, or at stop) or "nested" (JSON nested past Python's
    recursion limit, well within the size limit)."""

    def __init__(self, *keys: ECKey) -> None:
        self.keys, self.mode, self.hang_s, self.padding = list(keys), "ok", 0.0, 0
        self.requests = 0
        self.lock, self.release = threading.Lock(), threading.Event()
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/jwks.json"

    def _app(self, environ, start_response):
        with self.lock:
            self.requests += 1
        if self.mode == "hang":
            self.release.wait(self.hang_s)
        if self.mode == "down":
            return Response("down", status=503)(environ, start_response)
        if self.mode == "nested":
            return Response("[" * 5000 + "]" * 5000)(environ, start_response)
        jwks = {"keys": [key.as_dict(private=False) for key in self.keys]}
        if self.padding:
            jwks["padding"] = "x" * self.padding
        return Response(json.dumps(jwks), content_type="application/jwk-set+json")(
            environ, start_response)

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp_key() -> ECKey:
    return new_key()


@pytest.fixture
def jwks(idp_key):
    server = JwksServer(idp_key)
    yield server
    server.stop()


@pytest.fixture
def sign(idp_key, clock) -> Assertions:
    return Assertions(idp_key, clock)


@pytest.fixture
def jwt_client(bridge, jwks):
    with bridge.store.begin() as tx:
        tx.add_client(new_client(bridge.secrets.pepper, JWT_ID, secret=None, jwks_uri=jwks.url,
                                 redirect_uris=[CALLBACK], redirect_uri_prefixes=[]))


def refused(keys: ClientKeys, url: str, kid: str | None = None) -> None:
    with pytest.raises(InvalidClientError) as caught:
        keys.get(url, kid)
    assert caught.value.status_code == 401


@pytest.mark.usefixtures("jwt_client")
class TestThroughTheEndpoints:
    """With the bridge's own settings (a 30 s interval)."""

    def test_a_jwks_endpoint_that_is_down_is_contacted_once(self, act, sign, jwks):
        jwks.mode = "down"
        for _ in range(5):
            response, _ = push(act, sign())
            invalid_client(response)
            assert response.status_code == 401
        assert jwks.requests == 1

    def test_a_jwks_nested_past_the_recursion_limit_is_a_401_remembered(self, act, sign,
                                                                        jwks):
        jwks.mode = "nested"
        for _ in range(3):
            response, _ = push(act, sign())
            invalid_client(response)
        assert jwks.requests == 1

    def test_a_rotated_key_is_accepted_at_once(self, act, sign, jwks, idp_key):
        assert push(act, sign())[0].status_code == 201
        rotated = new_key()
        jwks.keys = [rotated]  # well within the TTL of the cached set
        assert push(act, sign(key=rotated))[0].status_code == 201
        assert jwks.requests == 2
        invalid_client(push(act, sign(key=idp_key))[0])  # the old key is gone with the old set

    def test_a_flood_of_unknown_kids_refetches_once(self, act, sign, jwks):
        assert push(act, sign())[0].status_code == 201
        for _ in range(10):
            invalid_client(push(act, sign(key=new_key()))[0])
        assert jwks.requests == 2  # the first fetch, one refetch
        assert push(act, sign())[0].status_code == 201  # the known key still works


class TestClientKeys:
    """The cache itself, on a clock of its own."""

    def test_a_failed_fetch_is_remembered_for_the_interval(self, jwks, idp_key):
        clock = FakeClock()
        keys = ClientKeys(timeout=0.5, interval=30, clock=clock)
        jwks.mode, jwks.hang_s = "hang", 5  # slower than the timeout
        refused(keys, jwks.url)
        for _ in range(5):
            refused(keys, jwks.url)
        assert jwks.requests == 1
        clock.advance(29)
        refused(keys, jwks.url)
        assert jwks.requests == 1
        jwks.mode = "ok"  # the endpoint recovers
        clock.advance(1)
        assert keys.get(jwks.url, idp_key.kid).get_by_kid(idp_key.kid)
        assert jwks.requests == 2

    def test_unknown_kids_refetch_at_most_once_per_interval(self, jwks, idp_key):
        clock = FakeClock()
        keys = ClientKeys(ttl=300, interval=30, clock=clock)
        keys.get(jwks.url, idp_key.kid)
        for _ in range(10):
            keys.get(jwks.url, new_key().kid)
        assert jwks.requests == 2
        clock.advance(29)
        keys.get(jwks.url, "unknown")
        assert jwks.requests == 2
        clock.advance(1)
        for _ in range(10):
            keys.get(jwks.url, new_key().kid)
        assert jwks.requests == 3
        keys.get(jwks.url, idp_key.kid)  # a known kid never refetches
        assert jwks.requests == 3

    def test_a_failed_refetch_keeps_the_cached_keys(self, jwks, idp_key):
        keys = ClientKeys(clock=FakeClock())
        keys.get(jwks.url, idp_key.kid)
        jwks.mode = "down"
        refused(keys, jwks.url, "rotated")
        assert keys.get(jwks.url, idp_key.kid).get_by_kid(idp_key.kid)
        assert jwks.requests == 2

    def test_requests_at_the_same_time_share_one_fetch(self, jwks, idp_key):
        keys = ClientKeys(interval=0, clock=FakeClock())
        jwks.mode, jwks.hang_s = "hang", 0.5
        start, got = threading.Barrier(8), []

        def fetch() -> None:
            start.wait()
            got.append(keys.get(jwks.url, idp_key.kid))

        threads = [threading.Thread(target=fetch) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(got) == 8 and jwks.requests == 1

    def test_a_jwks_trickling_bytes_is_cut_off_at_the_timeout(self):
        """Each byte comes long before a socket timeout (0.1 s apart, timeout 0.5 s): only a
        bound on the whole fetch ends it, mid-answer (the whole answer takes over 20 s)."""
        key = new_key()
        body = json.dumps({"keys": [key.as_dict(private=False)]}).encode()
        drip = DripServer(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body), interval=0.1)
        try:
            refused(ClientKeys(timeout=0.5, clock=FakeClock()),
                    f"http://127.0.0.1:{drip.port}/jwks.json", key.kid)
            assert drip.cut.wait(10) and not drip.finished.is_set()
        finally:
            drip.stop()

    def test_a_jwks_over_the_limit_is_refused(self, jwks, idp_key):
        jwks.padding = 4096
        refused(ClientKeys(limit=4096, clock=FakeClock()), jwks.url, idp_key.kid)
        assert ClientKeys(clock=FakeClock()).get(jwks.url, idp_key.kid)  # within 64 KiB

    def test_bad_settings_fail_at_construction(self):
        for bad in ({"ttl": 0}, {"timeout": 0}, {"interval": -1}, {"limit": 0}):
            with pytest.raises(ValueError):
                ClientKeys(**bad)
