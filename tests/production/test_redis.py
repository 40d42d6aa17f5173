"""Per-IP limits shared through a real Redis, and what happens when Redis goes away."""

from __future__ import annotations

import logging

import pytest

from bridge.throttle import RedisUnreachable
from tests.bridge.conftest import Actions, events
from tests.production.conftest import start_redis

pytestmark = pytest.mark.e2e


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server this test may stop."""
    url, process = start_redis(tmp_path)
    yield url, process
    process.terminate()
    process.wait(10)


def node(make_app, clock, redis_url: str) -> Actions:
    app = make_app(redis_url=redis_url, ip_limit=3)
    return Actions(app.test_client(), app.extensions["stepup"], clock)


def test_ip_failures_add_up_across_nodes(make_app, clock, private_redis):
    a, b = node(make_app, clock, private_redis[0]), node(make_app, clock, private_redis[0])
    enrolled, _ = a.enroll("ip-user")
    clock.advance(30)
    for actions, subject in ((a, "ip-user"), (b, "ip-user"), (a, "ip-user")):
        login = actions.start(subject)
        assert actions.post(login, "totp", otp="000001").status_code == 400
        clock.advance(30)
    login = b.start("ip-user")
    login.secret = enrolled.secret
    refused = b.post(login, "totp", otp=b.code_now(login))
    assert refused.status_code == 429
    assert "Too many failed attempts from your network" in refused.get_data(as_text=True)
    assert events(a).count("ip_window_closed") == 1  # the third failure, on node a, closed it


def test_unblocking_an_address_clears_redis_and_the_database(make_app, clock, private_redis):
    """`stepup ip unblock` (the limiter's clear): the window counted in Redis and the
    database's copy both go, on every node; with Redis down it says so and clears nothing."""
    url, process = private_redis
    a, b = node(make_app, clock, url), node(make_app, clock, url)
    enrolled, _ = a.enroll("office-user")
    clock.advance(30)
    for actions in (a, b, a):
        login = actions.start("office-user")
        assert actions.post(login, "totp", otp="000001").status_code == 400
        clock.advance(30)
    login = b.start("office-user")
    login.secret = enrolled.secret
    assert b.post(login, "totp", otp=b.code_now(login)).status_code == 429
    with a.bridge.store.begin() as tx:
        assert a.bridge.challenge.attempts.limiter.clear(tx, "127.0.0.1") == 3
    assert b.post(login, "totp", otp=b.code_now(login)).status_code == 303
    process.terminate()
    process.wait(10)
    with pytest.raises(RedisUnreachable, match="nothing was cleared"), \
            a.bridge.store.begin() as tx:
        a.bridge.challenge.attempts.limiter.clear(tx, "127.0.0.1")


def test_readyz_shows_redis_without_depending_on_it(make_app, clock, private_redis):
    """A wrong or dead STEPUP_REDIS_URL is seen in /readyz; the node stays ready (the window
    falls back to the database)."""
    url, process = private_redis
    client = node(make_app, clock, url).client
    up = client.get("/readyz")
    assert up.status_code == 200 and up.get_json()["checks"]["redis"] == "ok"
    process.terminate()
    process.wait(10)
    down = client.get("/readyz")
    assert down.status_code == 200 and down.get_json()["status"] == "ready"
    assert down.get_json()["checks"]["redis"].startswith("unavailable (")
    assert "redis" not in make_app().test_client().get("/readyz").get_json()["checks"]


def test_redis_down_keeps_serving(make_app, clock, private_redis, caplog):
    url, process = private_redis
    actions = node(make_app, clock, url)
    enrolled, _ = actions.enroll("redis-user")
    process.terminate()
    process.wait(10)
    clock.advance(30)
    caplog.set_level(logging.WARNING, logger="stepup")
    login = actions.start("redis-user")
    assert actions.post(login, "totp", otp="000002").status_code == 400  # limiter fell back
    login.secret = enrolled.secret
    clock.advance(30)
    ok = actions.post(login, "totp", otp=actions.code_now(login))
    assert ok.status_code == 303
    assert any("redis unavailable" in r.getMessage() for r in caplog.records)


def test_trusted_proxy_gives_each_user_their_own_ip_window(make_app, clock):
    app = make_app(ip_limit=2, trusted_proxies=1)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    enrolled, _ = act.enroll("proxy-user")
    for _ in range(2):
        clock.advance(30)
        login = act.start("proxy-user")
        page = act.csrf(login.last_page)
        response = act.client.post(
            f"{login.flow_url}/totp",
            data={"otp": "000003", "csrf_token": page},
            headers={"X-Forwarded-For": "203.0.113.7"},
        )
        assert response.status_code == 400
    clock.advance(30)
    login = act.start("proxy-user")
    login.secret = enrolled.secret
    blocked = act.client.post(
        f"{login.flow_url}/totp",
        headers={"X-Forwarded-For": "203.0.113.7"},
        data={"otp": act.code_now(login), "csrf_token": act.csrf(login.last_page)},
    )
    assert blocked.status_code == 429
    other = act.client.post(
        f"{login.flow_url}/totp",
        headers={"X-Forwarded-For": "198.51.100.9"},
        data={"otp": act.code_now(login), "csrf_token": act.csrf(login.last_page)},
    )
    assert other.status_code == 303


def test_with_redis_down_the_database_window_still_tells_of_its_closing(make_app, clock,
                                                                         private_redis):
    url, process = private_redis
    actions = node(make_app, clock, url)
    actions.enroll("down-user")
    process.terminate()
    process.wait(10)
    for _ in range(3):  # ip_limit=3: the third closes the window, counted in the database
        clock.advance(30)
        login = actions.start("down-user")
        assert actions.post(login, "totp", otp="000004").status_code == 400
    assert events(actions).count("ip_window_closed") == 1
