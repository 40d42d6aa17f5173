"""A phone with a wrong clock, through the pages, on a fixed clock: the code is refused and
counted, the page says how far off the clock looks and how to fix it, the remembered offset
follows a slowly drifting device (RFC 6238 §6, bounded), and replay still compares steps."""

from __future__ import annotations

import html

import pytest
import sqlalchemy as sa

from bridge.challenge.errors import ClockDrift
from bridge.factors import totp
from bridge.store import schema
from tests.bridge.conftest import Actions, events, is_callback, returning, shown, user
from tests.bridge.conftest import alert as raw_alert

MINUTE = 60


def alert(page: str) -> str:
    return html.unescape(raw_alert(page))


def enrolled(act: Actions, clock, subject: str = "dora"):
    first, _ = act.enroll(subject)
    clock.advance(30)
    return first.secret


def phone(secret: str, clock, offset: float) -> str:
    """The code a phone shows whose clock is ``offset`` seconds ahead."""
    return totp.code_at(secret, clock() + offset)


@pytest.mark.parametrize(("offset", "words"), [(5 * MINUTE, "about 5 minutes fast"),
                                               (-3 * MINUTE, "about 3 minutes slow"),
                                               (-10 * MINUTE, "about 10 minutes slow"),
                                               (MINUTE + 10, "about 1 minute fast")])
def test_a_code_from_a_wrong_clock_is_refused_counted_and_explained(act, clock, offset, words):
    secret = enrolled(act, clock)
    login = returning(act, "dora", secret)
    response = act.post(login, "totp", otp=phone(secret, clock, offset))
    assert response.status_code == 400
    text = alert(login.last_page)
    assert words in text
    assert "Set the date and time to automatic" in text and "Android" in text
    assert "iPhone" in text
    assert user(act, "dora").failures == 1
    assert events(act, "dora")[-1] == "failure"
    # Audited as a wrong clock, by how much: the help desk tells it from guessing.
    assert abs(last_detail(act)["clock_offset"] - offset) < totp.PERIOD


def last_detail(act: Actions) -> dict:
    with act.bridge.store.engine.begin() as conn:
        return conn.execute(sa.select(schema.audit_events.c.detail)
                            .order_by(schema.audit_events.c.id.desc()).limit(1)).scalar_one()


@pytest.mark.parametrize(("offset", "minutes"), [(60, 1), (90, 2), (-120, 2), (150, 3),
                                                 (210, 4), (-270, 5), (570, 10)])
def test_the_hint_rounds_half_a_minute_up(offset, minutes):
    """Whole steps are 30 s apart: each half minute goes up, so two offsets a minute apart
    never say the same (round() went to even: 90 s and 150 s both said "about 2")."""
    drift = ClockDrift(offset, 0)
    assert (drift.minutes, drift.fast) == (minutes, offset > 0)


def test_beyond_the_search_window_the_message_is_the_plain_one(act, clock):
    secret = enrolled(act, clock)
    login = returning(act, "dora", secret)
    act.post(login, "totp", otp=phone(secret, clock, 11 * MINUTE))
    assert "clock looks" not in alert(login.last_page)
    assert "didn't work" in alert(login.last_page)
    assert "clock_offset" not in last_detail(act)


def test_the_search_window_is_configurable_and_can_be_off(make_app, clock):
    for window, hinted in ((0, False), (900, True)):
        app = make_app(totp_search_window=window)
        act = Actions(app.test_client(), app.extensions["stepup"], clock)
        secret = enrolled(act, clock, f"w{window}")
        login = returning(act, f"w{window}", secret)
        act.post(login, "totp", otp=phone(secret, clock, 14 * MINUTE))
        assert ("about 14 minutes fast" in alert(login.last_page)) is hinted


def test_a_hinted_code_never_works_later(act, clock):
    """The hint confirms a future step's code; that step is spent for good."""
    secret = enrolled(act, clock)
    login = returning(act, "dora", secret)
    future = phone(secret, clock, 4 * MINUTE)
    act.post(login, "totp", otp=future)
    assert "clock looks" in alert(login.last_page)
    clock.advance(4 * MINUTE)
    assert not is_callback(act.post(login, "totp", otp=future))
    assert "already been used" in alert(login.last_page)
    clock.advance(30)
    assert is_callback(act.post(login, "totp", otp=act.code_now(login)))


def test_a_slowly_drifting_device_is_followed_within_the_bound(act, clock):
    secret = enrolled(act, clock)
    offset = 0.0
    for expected_drift in (1, 2, 2):
        offset += 30  # the device gains half a minute between sign-ins
        clock.advance(120)
        login = returning(act, "dora", secret)
        assert is_callback(act.post(login, "totp", otp=phone(secret, clock, offset))), offset
        assert user(act, "dora").totp_drift == expected_drift
    # Three steps ahead is the furthest a remembered offset reaches (bound 2, window 1)...
    clock.advance(120)
    login = returning(act, "dora", secret)
    assert is_callback(act.post(login, "totp", otp=phone(secret, clock, 90)))
    assert user(act, "dora").totp_drift == totp.MAX_DRIFT
    # ...four is refused, with the hint.
    clock.advance(120)
    login = returning(act, "dora", secret)
    assert act.post(login, "totp", otp=phone(secret, clock, 120)).status_code == 400
    assert "about 2 minutes fast" in alert(login.last_page)


def test_a_corrected_clock_works_at_once_and_resets_the_drift(act, clock):
    secret = enrolled(act, clock)
    clock.advance(120)
    login = returning(act, "dora", secret)
    assert is_callback(act.post(login, "totp", otp=phone(secret, clock, 30)))
    assert user(act, "dora").totp_drift == 1
    clock.advance(120)
    login = returning(act, "dora", secret)
    assert is_callback(act.post(login, "totp", otp=phone(secret, clock, 0)))
    assert user(act, "dora").totp_drift == 0


def test_replay_still_compares_the_matched_step(act, clock):
    secret = enrolled(act, clock)
    clock.advance(120)
    login = returning(act, "dora", secret)
    ahead = phone(secret, clock, 30)
    assert is_callback(act.post(login, "totp", otp=ahead))  # step now+1 spent, drift 1
    again = returning(act, "dora", secret)
    assert act.post(again, "totp", otp=ahead).status_code == 400  # same step: replay
    assert "already been used" in alert(again.last_page)
    # An older step inside the window is no better: steps only move forward.
    assert act.post(again, "totp", otp=phone(secret, clock, 0)).status_code == 400
    assert "already been used" in alert(again.last_page)
    assert events(act, "dora")[-2:] == ["replay", "replay"]


def test_enrollment_with_a_wrong_clock_gets_the_hint(act, clock):
    login = act.start("eve")
    secret = shown(login.last_page, "totp-secret")
    response = act.post(login, "enroll", otp=phone(secret, clock, -7 * MINUTE))
    assert response.status_code == 400
    assert "about 7 minutes slow" in alert(login.last_page)
    assert user(act, "eve") is None
    assert is_callback(act.post(login, "enroll", otp=phone(secret, clock, 0))) is False
    assert 'id="recovery-code"' in login.last_page


@pytest.mark.parametrize(("lang", "words"), [
    ("de", "etwa 5 Minuten vorzugehen"), ("fr", "environ 5 minutes"),
    ("es", "unos 5 minutos adelantado"), ("ar", "متقدمة بنحو 5 دقائق")])
def test_the_hint_speaks_the_users_language(act, clock, lang, words):
    secret = enrolled(act, clock)
    login = returning(act, "dora", secret)
    act.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    act.post(login, "totp", otp=phone(secret, clock, 5 * MINUTE))
    assert words in alert(login.last_page)


def test_reenrollment_forgets_the_old_devices_drift(act, clock):
    first, _ = act.enroll("fay")
    clock.advance(120)
    login = returning(act, "fay", first.secret)
    assert is_callback(act.post(login, "totp", otp=phone(first.secret, clock, 30)))
    assert user(act, "fay").totp_drift == 1
    login = returning(act, "fay", first.secret)
    act.post(login, "recovery", recovery_code=first.recovery_code)
    act.post(login, "saved", saved="yes", next="reenroll")
    new_secret = shown(login.last_page, "totp-secret")
    assert is_callback(act.post(login, "reenroll", otp=phone(new_secret, clock, 0)))
    assert user(act, "fay").totp_drift == 0


def test_a_code_typed_with_arabic_indic_digits_works(act, clock):
    secret = enrolled(act, clock)
    login = returning(act, "dora", secret)
    typed = act.code_now(login).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert is_callback(act.post(login, "totp", otp=typed))


def test_a_second_hint_never_frees_the_first_hinted_step(act, clock):
    """One hinted step is remembered: while it can still come, no other code gets a hint
    (that would forget the first), and the first code never works (found in review)."""
    secret = enrolled(act, clock)
    login = returning(act, "dora", secret)
    ahead = phone(secret, clock, 4 * MINUTE)
    act.post(login, "totp", otp=ahead)
    assert "clock looks" in alert(login.last_page)
    clock.advance(10)  # past the growing delay after a failure (none yet: 2 failures)
    act.post(login, "totp", otp=phone(secret, clock, 2 * MINUTE))
    assert "clock looks" not in alert(login.last_page)  # no second hint while the first lives
    clock.advance(4 * MINUTE)
    assert not is_callback(act.post(login, "totp", otp=ahead))
