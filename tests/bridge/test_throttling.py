"""Throttling short of the lock (DESIGN.md "Throttling"): the growing delay between a user's
attempts and the per-client-IP limit across users. The lock itself: test_lockout.py."""

from __future__ import annotations

import re

from bridge.factors import recovery
from tests.bridge.conftest import alert, events, flow_of, is_callback, returning, user, wrong_code


def test_growing_delay_refuses_early_attempts_without_counting_them(act, clock):
    first, _ = act.enroll("gus")
    clock.advance(30)
    login = returning(act, "gus", first.secret)
    for _ in range(4):  # three free failures, the fourth starts the delay
        assert act.post(login, "totp", otp=wrong_code(first.secret, clock())).status_code == 400
    assert user(act, "gus").failures == 4
    counted = events(act, "gus").count("failure")

    # Too early: refused before the code is even looked at, even the right code.
    early = act.post(login, "totp", otp=act.code_now(login))
    assert early.status_code == 429
    wait = int(re.search(r"Wait (\d+) seconds", alert(login.last_page)).group(1))
    assert 2 <= wait <= 3
    assert user(act, "gus").failures == 4
    assert events(act, "gus").count("failure") == counted
    assert flow_of(act, login).stage == "totp"

    clock.advance(2)  # the delay has elapsed: the next attempt is looked at
    assert act.post(login, "totp", otp=wrong_code(first.secret, clock())).status_code == 400
    assert user(act, "gus").failures == 5

    clock.advance(3)  # the delay has doubled to 4 s
    assert act.post(login, "recovery", recovery_code=recovery.generate()).status_code == 429
    assert user(act, "gus").failures == 5

    clock.advance(1)
    response = act.post(login, "totp", otp=act.code_now(login))
    assert is_callback(response)
    assert user(act, "gus").failures == 0


def test_per_ip_limit_spans_users(make_act, clock):
    act = make_act(ip_limit=3)
    secrets = {name: act.enroll(name)[0].secret for name in ("u1", "u2", "u3", "u4")}
    clock.advance(30)
    for name in ("u1", "u2", "u3"):
        login = returning(act, name, secrets[name])
        assert act.post(login, "totp", otp=wrong_code(secrets[name], clock())).status_code == 400

    login = returning(act, "u4", secrets["u4"])
    blocked = act.post(login, "totp", otp=act.code_now(login))
    assert blocked.status_code == 429
    assert "network" in alert(login.last_page)
    assert user(act, "u4").failures == 0  # not the user's fault
    assert flow_of(act, login).stage == "totp"

    # Another address is not affected.
    token = act.csrf(login.last_page)
    other = act.client.post(f"{login.flow_url}/totp",
                            data={"otp": act.code_now(login), "csrf_token": token},
                            environ_overrides={"REMOTE_ADDR": "192.0.2.7"})
    assert is_callback(other)


def test_per_ip_limit_also_refuses_a_correct_recovery_code(make_act, clock):
    act = make_act(ip_limit=3)
    first, _ = act.enroll("u1")
    act.enroll("u2")
    clock.advance(30)
    probe = act.start("u2")
    for _ in range(3):
        act.post(probe, "recovery", recovery_code=recovery.generate())
    login = act.start("u1")
    assert act.post(login, "recovery", recovery_code=first.recovery_code).status_code == 429
    assert flow_of(act, login).stage == "totp"
