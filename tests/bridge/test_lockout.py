"""One consecutive-failure counter per user, shared by TOTP and the recovery code, and the
lock at the limit (DESIGN.md "Throttling"): the locked page, access_denied, tabs opened
before the lock, parallel guesses, and a correct code resetting the counter."""

from __future__ import annotations

import threading
from html import unescape

import pytest

from bridge.factors import recovery, totp
from tests.bridge.conftest import (
    Actions,
    alert,
    callback_params,
    events,
    is_callback,
    returning,
    user,
    wrong_code,
)


def test_wrong_totp_and_recovery_codes_share_one_counter_and_lock(make_act, clock):
    act = make_act(lockout_limit=3)
    first, _ = act.enroll("carol")
    clock.advance(30)
    login = returning(act, "carol", first.secret)

    assert act.post(login, "totp", otp=wrong_code(first.secret, clock())).status_code == 400
    assert user(act, "carol").failures == 1
    act.client.get(f"{login.flow_url}/recovery")
    response = act.post(login, "recovery", recovery_code=recovery.generate())
    assert response.status_code == 400
    assert user(act, "carol").failures == 2
    assert user(act, "carol").locked_at is None

    locked = act.post(login, "totp", otp=wrong_code(first.secret, clock()))
    assert locked.status_code == 403
    page = login.last_page
    assert "Two-step verification is locked" in page
    assert alert(page)
    assert 'name="otp"' not in page and 'name="recovery_code"' not in page
    assert "Return to sign-in" in page
    assert user(act, "carol").locked_at is not None
    assert "lockout" in events(act, "carol")

    # "Return to sign-in" sends error=access_denied back to the IdP.
    back = act.post(login, "cancel")
    assert is_callback(back)
    params = callback_params(back.headers["Location"])
    assert params["error"] == "access_denied"
    assert params["state"] == login.state
    assert params["iss"] == "https://bridge.example"
    assert "code" not in params


def test_three_wrong_recovery_codes_lock_too(make_act, clock):
    act = make_act(lockout_limit=3)
    first, _ = act.enroll("carol")
    login = act.start("carol")
    statuses = [act.post(login, "recovery", recovery_code=recovery.generate()).status_code
                for _ in range(3)]
    assert statuses == [400, 400, 403]
    assert "Two-step verification is locked" in login.last_page
    # The right recovery code no longer helps.
    response = act.post(login, "recovery", recovery_code=first.recovery_code)
    assert not is_callback(response) and response.status_code in (403, 404)
    assert 'id="recovery-code"' not in login.last_page
    assert user(act, "carol").recovery_version == 1
    assert user(act, "carol").locked_at is not None


@pytest.mark.parametrize(("action", "field"), [("totp", "otp"), ("recovery", "recovery_code")])
def test_a_form_posted_to_a_locked_flow_gets_the_locked_page(make_act, clock, action, field):
    act = make_act(lockout_limit=3)
    first, _ = act.enroll("carol")
    login = act.start("carol")
    for _ in range(3):
        act.post(login, "recovery", recovery_code=recovery.generate())
    assert "Two-step verification is locked" in login.last_page
    clock.advance(30)
    right = {"otp": totp.code_at(first.secret, clock()), "recovery_code": first.recovery_code}
    response = act.post(login, action, **{field: right[field]})
    assert not is_callback(response)
    assert response.status_code == 403
    assert "Two-step verification is locked" in login.last_page
    assert alert(login.last_page) == "There were too many wrong codes for this account."
    assert 'name="otp"' not in login.last_page
    assert 'name="recovery_code"' not in login.last_page


def test_a_new_hand_off_for_a_locked_user_shows_the_locked_page(make_act, clock):
    act = make_act(lockout_limit=3)
    first, _ = act.enroll("dora")
    clock.advance(30)
    login = returning(act, "dora", first.secret)
    for _ in range(3):
        act.post(login, "totp", otp=wrong_code(first.secret, clock()))
    assert user(act, "dora").locked_at is not None

    again = act.start("dora")
    page = act.client.get(again.flow_url)
    assert page.status_code == 403
    html = page.get_data(as_text=True)
    assert "Two-step verification is locked" in html
    assert alert(html) == "There were too many wrong codes for this account."  # why
    assert 'name="otp"' not in html
    # Posting the right codes anyway changes nothing.
    again.secret = first.secret
    clock.advance(30)
    assert not is_callback(act.post(again, "totp", otp=act.code_now(again)))
    assert not is_callback(act.post(again, "recovery", recovery_code=first.recovery_code))
    assert user(act, "dora").recovery_version == 1
    assert user(act, "dora").locked_at is not None
    back = act.post(again, "cancel")
    assert callback_params(back.headers["Location"])["error"] == "access_denied"


def test_a_tab_opened_before_the_lock_cannot_finish_and_shows_the_locked_page(make_act, clock):
    act = make_act(lockout_limit=3)
    first, _ = act.enroll("dora")
    clock.advance(30)
    other_tab = returning(act, "dora", first.secret)
    login = returning(act, "dora", first.secret)
    for _ in range(3):
        act.post(login, "totp", otp=wrong_code(first.secret, clock()))

    response = act.post(other_tab, "totp", otp=act.code_now(other_tab))
    assert not is_callback(response)
    assert response.status_code == 403
    assert alert(other_tab.last_page)
    assert user(act, "dora").totp_last_step < int(clock()) // 30  # the step was not taken
    # The design asks for the clear locked page and access_denied, not the code form again.
    assert "Two-step verification is locked" in other_tab.last_page
    assert 'name="otp"' not in other_tab.last_page
    back = act.post(other_tab, "cancel")
    assert callback_params(back.headers["Location"])["error_description"] == (
        "The user is locked out.")


def test_the_last_tries_before_the_lock_are_counted_down(make_act, clock):
    """A user warned before the lock can still switch to the recovery code or stop."""
    act = make_act(lockout_limit=6)
    first, _ = act.enroll("fay")
    clock.advance(30)
    login = returning(act, "fay", first.secret)
    said = []
    for _ in range(5):
        clock.advance(60)  # past the growing wait (throttle.delay_after)
        assert act.post(login, "totp", otp=wrong_code(first.secret, clock())).status_code == 400
        said.append(unescape(alert(login.last_page)))
    assert said[:2] == ["That code didn't work. Check your authenticator app and try again."] * 2
    # From the fourth failure on the next try waits (throttle.delay_after): said at once.
    assert said[2:] == [
        f"That code didn't work. Check your authenticator app and try again. {wait}"
        f"You have {left} before two-step verification is locked."
        for wait, left in (("", "3 more tries"),
                           ("Wait 2 seconds before the next try. ", "2 more tries"),
                           ("Wait 4 seconds before the next try. ", "1 more try"))]
    clock.advance(60)
    assert act.post(login, "totp", otp=wrong_code(first.secret, clock())).status_code == 403
    assert user(act, "fay").locked_at is not None


def test_a_wrong_recovery_code_counts_down_too_in_the_page_language(make_act, clock):
    act = make_act(lockout_limit=3)
    act.enroll("gil")
    login = act.start("gil", ui_locales="de")
    act.client.get(f"{login.flow_url}/recovery")
    act.post(login, "recovery", recovery_code=recovery.generate())
    assert alert(login.last_page).endswith(
        "Noch 2 Versuche, dann wird die Bestätigung in zwei Schritten gesperrt.")
    act.post(login, "recovery", recovery_code=recovery.generate())
    assert alert(login.last_page).endswith(
        "Noch 1 Versuch, dann wird die Bestätigung in zwei Schritten gesperrt.")


def test_a_correct_code_resets_the_counter(make_act, clock):
    act = make_act(lockout_limit=3)
    first, _ = act.enroll("erin")
    clock.advance(30)
    login = returning(act, "erin", first.secret)
    for _ in range(2):
        assert act.post(login, "totp", otp=wrong_code(first.secret, clock())).status_code == 400
    assert user(act, "erin").failures == 2
    assert is_callback(act.post(login, "totp", otp=act.code_now(login)))
    assert user(act, "erin").failures == 0

    clock.advance(30)
    again = returning(act, "erin", first.secret)
    for _ in range(2):
        assert act.post(again, "totp", otp=wrong_code(first.secret, clock())).status_code == 400
    assert user(act, "erin").locked_at is None
    # A recovery code resets it as well.
    act.post(again, "recovery", recovery_code=first.recovery_code)
    assert user(act, "erin").failures == 0


def test_parallel_wrong_guesses_cannot_pass_the_lockout_limit(make_app, clock):
    app = make_app(lockout_limit=3)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    enrolled, _ = act.enroll("guessed")
    clock.advance(30)
    logins = [act.start("guessed") for _ in range(5)]  # five tabs: a session's maximum
    bad = wrong_code(enrolled.secret, clock())
    barrier = threading.Barrier(len(logins))
    statuses = []
    clients = []
    for _ in logins:  # one browser session, many tabs: each thread its own client
        clients.append(app.test_client())
        with clients[-1].session_transaction() as tab, act.client.session_transaction() as mine:
            tab.update(mine)

    def guess(login, client) -> None:
        barrier.wait()
        response = client.post(f"{login.flow_url}/totp",
                               data={"otp": bad, "csrf_token": act.csrf(login.last_page)})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=guess, args=pair) for pair in zip(logins, clients,
                                                                          strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert user(act, "guessed").failures == 3
    assert events(act, "guessed").count("failure") == 3
    assert events(act, "guessed").count("lockout") == 1
    assert sorted(statuses) == [400, 400, 403, 403, 403]
