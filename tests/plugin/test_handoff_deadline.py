"""Each exchange with the bridge is bounded as a whole, and no slow answer holds a lock that
other logins need: real servers on 127.0.0.1, real threads."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from handoff_fakes import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, discovery_document
from local_servers import DripServer

from stepup_handoff import DiscoveryError, HandoffClient, deadline

DISCOVERY = "/.well-known/openid-configuration"


def http_answer(body: bytes) -> tuple[bytes, bytes]:
    """A whole HTTP/1.1 answer: (status line and headers, body)."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head, body


class TestWholeCallBound:
    """A server that sends one byte every 50 ms never trips a 1 s read timeout; the deadline
    ends the call after 1 s all the same, and shuts the connection."""

    @pytest.fixture
    def drip(self):
        servers: list[DripServer] = []

        def serve(answer: bytes, head: bytes = b"") -> DripServer:
            servers.append(DripServer(answer, head=head, interval=0.05))
            return servers[-1]

        yield serve
        for server in servers:
            server.stop()

    @pytest.mark.parametrize("phase", ["headers", "body"])
    def test_dripping_discovery_cut_at_the_timeout(self, drip, clock, phase):
        server = drip(b"")  # the port first: the document names the issuer
        head, body = http_answer(json.dumps(discovery_document(server.url)).encode())
        server.head, server.answer = (b"", head + body) if phase == "headers" else (head, body)
        client = HandoffClient(
            server.url, CLIENT_ID, client_secret=CLIENT_SECRET, timeout=1.0, clock=clock
        )

        started = time.monotonic()
        with pytest.raises(DiscoveryError, match="no whole answer within 1 s") as caught:
            client.start("user-42", REDIRECT_URI)
        assert time.monotonic() - started < 2.5  # the whole answer would take 10 s or more
        assert caught.value.error == "unreachable"
        assert server.cut.wait(2)  # the connection was shut, not left dripping

    def test_held_par_cut_at_the_timeout(self, local_bridge, clock):
        client = HandoffClient(
            local_bridge.issuer, CLIENT_ID, client_secret=CLIENT_SECRET, timeout=1.0, clock=clock
        )
        client.metadata()
        local_bridge.hold("/par")

        started = time.monotonic()
        with pytest.raises(Exception, match="no whole answer"):
            client.start("user-42", REDIRECT_URI)
        assert time.monotonic() - started < 2.5


class TestNoLockAcrossTheNetwork:
    """While one login waits for a slow refresh, the others go on with what is cached."""

    def in_background(self, call):
        pool = ThreadPoolExecutor(1)
        return pool, pool.submit(call)

    def test_slow_discovery_refresh_stalls_no_other_login(self, local_client, local_bridge, clock):
        local_client.start("user-42", REDIRECT_URI)
        clock.advance(3600)  # discovery has expired
        release = local_bridge.hold(DISCOVERY)
        pool, refreshing = self.in_background(lambda: local_client.start("user-43", REDIRECT_URI))
        assert local_bridge.arrived[DISCOVERY].wait(5)

        started = time.monotonic()
        pending = local_client.start("user-44", REDIRECT_URI)
        assert time.monotonic() - started < 1.0
        release.set()
        assert refreshing.result(10).login_hint == "user-43"
        pool.shutdown()
        assert local_bridge.fake.discovery_fetches == 2  # one refresh, not one per login
        assert pending.login_hint == "user-44"

    def test_slow_jwks_refresh_stalls_no_other_login(self, local_client, local_bridge, clock):
        fake = local_bridge.fake
        pending = local_client.start("user-42", REDIRECT_URI)
        local_client.finish(pending, fake.callback(pending))
        clock.advance(3600)  # the keys (and discovery) have expired
        first = local_client.start("user-43", REDIRECT_URI)
        first_callback = fake.callback(first)
        second = local_client.start("user-44", REDIRECT_URI)
        second_callback = fake.callback(second)
        release = local_bridge.hold("/jwks")
        pool, refreshing = self.in_background(lambda: local_client.finish(first, first_callback))
        assert local_bridge.arrived["/jwks"].wait(5)

        started = time.monotonic()
        assert local_client.finish(second, second_callback).subject == "user-44"
        assert time.monotonic() - started < 1.0
        release.set()
        assert refreshing.result(10).subject == "user-43"
        pool.shutdown()

    def test_one_fetch_for_callers_with_nothing_cached(self, local_client, local_bridge):
        fake = local_bridge.fake
        logins = []
        for user in ("user-1", "user-2", "user-3", "user-4"):
            pending = local_client.start(user, REDIRECT_URI)
            logins.append((pending, fake.callback(pending)))
        release = local_bridge.hold("/jwks")
        threading.Timer(0.3, release.set).start()

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda login: local_client.finish(*login), logins))

        assert [r.subject for r in results] == ["user-1", "user-2", "user-3", "user-4"]
        assert fake.jwks_fetches == 1


class TestSlowResolver:
    """The system resolver has no timeout: a look-up that hangs must not hold the login."""

    @pytest.fixture
    def slow_localhost(self, monkeypatch):
        """``localhost`` takes 3 s to resolve (to 127.0.0.1); ``answered`` is set after."""
        import socket

        resolve, answered = socket.getaddrinfo, threading.Event()

        def lookup(host, *args, **kwargs):
            if host != "localhost":
                return resolve(host, *args, **kwargs)
            time.sleep(3)
            answered.set()
            return resolve("127.0.0.1", *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", lookup)
        return answered

    def test_login_gives_up_at_the_timeout_and_sends_nothing_late(
        self, local_bridge, slow_localhost, clock
    ):
        issuer = local_bridge.issuer.replace("127.0.0.1", "localhost")
        client = HandoffClient(
            issuer, CLIENT_ID, client_secret=CLIENT_SECRET, timeout=1.0, clock=clock
        )

        started = time.monotonic()
        with pytest.raises(DiscoveryError, match="no whole answer within 1 s") as caught:
            client.start("user-42", REDIRECT_URI)
        assert time.monotonic() - started < 2.8  # 1 s and its grace, not the resolver's 3 s
        assert caught.value.error == "unreachable"
        assert slow_localhost.wait(10)
        time.sleep(0.5)  # what the left-behind exchange would send, it would send by now
        assert local_bridge.requests == []


class TestLeftBehind:
    """Only exchanges whose callers gave up (a resolver that never answers, say) count
    towards the limit; any number in time run at once, as a busy IdP's threads need."""

    def test_many_exchanges_in_time_run_at_once(self):
        many = deadline.LEFT_BEHIND + 8
        with ThreadPoolExecutor(many) as pool:
            results = list(pool.map(
                lambda n: deadline.Deadline(5).run(lambda: time.sleep(0.3) or n), range(many)))
        assert results == list(range(many))

    def test_only_exchanges_left_behind_stop_new_ones_and_only_while_they_wait(self):
        release = threading.Event()
        try:
            with ThreadPoolExecutor(deadline.LEFT_BEHIND) as pool:
                given_up = list(pool.map(lambda _: _overrun(release),
                                         range(deadline.LEFT_BEHIND)))
            assert all(given_up)
            with pytest.raises(deadline.Overrun, match="earlier exchanges still wait"):
                deadline.Deadline(5).run(lambda: "unstarted")
        finally:
            release.set()  # whatever failed, no later test meets these threads
        _settled()
        assert deadline.Deadline(5).run(lambda: "started") == "started"

    def test_no_more_than_max_running_run_at_once(self, monkeypatch):
        """A server with a thread per request could start any number of exchanges while the
        first ones are still within their time: past MAX_RUNNING none starts."""
        monkeypatch.setattr(deadline, "_running", threading.BoundedSemaphore(3))
        release = threading.Event()
        try:
            with ThreadPoolExecutor(3) as pool:
                running = [pool.submit(deadline.Deadline(10).run, lambda: release.wait(10))
                           for _ in range(3)]
                time.sleep(0.2)
                with pytest.raises(deadline.Overrun, match="exchanges run already"):
                    deadline.Deadline(10).run(lambda: "unstarted")
                release.set()
                assert [f.result() for f in running] == [True] * 3
        finally:
            release.set()
        assert deadline.Deadline(5).run(lambda: "started") == "started"


def _settled() -> None:
    """Wait until no exchange is left behind any more (their threads end once released)."""
    for _ in range(250):
        if deadline._Behind.count == 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"{deadline._Behind.count} exchanges still left behind")


def _overrun(release: threading.Event) -> bool:
    try:
        deadline.Deadline(0.05).run(lambda: release.wait(30))
    except deadline.Overrun:
        return True
    return False


@pytest.mark.parametrize("scheme", ["http", "HTTP"])
def test_a_proxy_from_the_environment_never_sees_plain_http(local_client, local_bridge,
                                                             monkeypatch, scheme):
    """Plain http goes only to this machine; requests would send it through HTTP_PROXY (it
    does not skip 127.0.0.1), carrying the client secret, the code and the verifier in clear.
    The proxy here takes connections and records them. A scheme is case-insensitive (RFC 3986
    §3.1): endpoints written ``HTTP://`` are plain http too (found by review: they went
    through the proxy, the client secret with them)."""
    for endpoint in ("pushed_authorization_request_endpoint", "token_endpoint", "jwks_uri"):
        url = local_bridge.fake.discovery[endpoint]
        local_bridge.fake.discovery[endpoint] = scheme + url.removeprefix("http")
    proxy = socket.create_server(("127.0.0.1", 0))
    proxy.settimeout(0.2)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        pending = local_client.start("user-42", REDIRECT_URI)
        callback = local_bridge.fake.callback(pending)
        assert local_client.finish(pending, callback).subject == "user-42"
        with pytest.raises(TimeoutError):
            proxy.accept()
    finally:
        proxy.close()


def test_a_session_with_an_adapter_on_a_longer_prefix_is_refused():
    """requests picks the longest prefix: an adapter the caller mounted on the bridge's URL
    would serve its calls without the bound (found by review: a dripping bridge then held a
    thread per login until none was left). Refused when the client is built."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.mount("https://mfa.example.org", HTTPAdapter())
    with pytest.raises(ValueError, match=r"mounted on https://mfa\.example\.org"):
        HandoffClient("https://mfa.example.org", CLIENT_ID, client_secret=CLIENT_SECRET,
                      session=session)
    mine = requests.Session()
    mine.mount("https://", HTTPAdapter(max_retries=0))  # replaced by the bounded one: fine
    for other in ("file://", "http+unix://", "mock://"):  # never the bridge's: left alone
        mine.mount(other, HTTPAdapter())
    HandoffClient("https://mfa.example.org", CLIENT_ID, client_secret=CLIENT_SECRET, session=mine)
    assert isinstance(mine.get_adapter("https://mfa.example.org/par"), deadline._adapter_class())
