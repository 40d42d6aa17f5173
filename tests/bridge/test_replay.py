"""TOTP replay (DESIGN.md "TOTP"): each time step is accepted at most once per user, the
enrollment code's step included; an older code in the window is refused after a newer one."""

from __future__ import annotations

from bridge.factors import OTP, totp
from tests.bridge.conftest import alert, events, flow_of, is_callback, returning, shown, user


def test_totp_code_is_accepted_once_then_refused_as_replay(act, clock):
    first, _ = act.enroll("alice")
    clock.advance(30)
    a = returning(act, "alice", first.secret)
    code = act.code_now(a)
    assert is_callback(act.post(a, "totp", otp=code))

    b = returning(act, "alice", first.secret)
    replay = act.post(b, "totp", otp=code)
    assert replay.status_code == 400
    assert "already been used" in alert(b.last_page)
    assert user(act, "alice").failures == 1  # the replay counts as a failure
    assert events(act, "alice")[-1] == "replay"
    assert flow_of(act, b).stage == "totp"

    clock.advance(30)  # the next step's code works
    response = act.post(b, "totp", otp=act.code_now(b))
    assert is_callback(response)
    assert act.finish(b, response.headers["Location"])["amr"] == [OTP]
    assert user(act, "alice").failures == 0


def test_an_older_code_in_the_window_is_refused_after_a_newer_one(act, clock):
    first, _ = act.enroll("alice")
    clock.advance(60)
    a = returning(act, "alice", first.secret)
    assert is_callback(act.post(a, "totp", otp=act.code_now(a)))
    b = returning(act, "alice", first.secret)
    previous = totp.code_at(first.secret, clock() - 30)  # still inside the ±1 window
    assert totp.match_step(first.secret, previous, clock()) is not None
    assert act.post(b, "totp", otp=previous).status_code == 400
    assert "already been used" in alert(b.last_page)


def test_the_enrollment_codes_step_is_spent(act, clock):
    first, _ = act.enroll("bob")
    assert user(act, "bob").totp_last_step == int(clock()) // 30
    again = returning(act, "bob", first.secret)
    response = act.post(again, "totp", otp=act.code_now(again))
    assert response.status_code == 400
    assert "already been used" in alert(again.last_page)
    assert "replay" in events(act, "bob")


def test_the_reenrollment_codes_step_is_spent(act, clock):
    """A new authenticator set up after a recovery-code sign-in spends its first code's step,
    as the first enrollment does."""
    first, _ = act.enroll("lou")
    clock.advance(30)
    login = act.start("lou")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    act.post(login, "saved", saved="yes", next="reenroll")
    new_secret = shown(login.last_page, "totp-secret")
    code = totp.code_at(new_secret, clock())
    assert is_callback(act.post(login, "reenroll", otp=code))
    assert user(act, "lou").totp_last_step == int(clock()) // 30
    again = returning(act, "lou", new_secret)
    assert act.post(again, "totp", otp=code).status_code == 400
    assert "already been used" in alert(again.last_page)
