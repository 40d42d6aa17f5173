"""Enrollment races and re-enrollment: the loser of two enrollments is not left on a dead
page; re-enrolling after a recovery-code sign-in replaces the authenticator; wrong first codes
count down to the end of the setup."""

from __future__ import annotations

import re
from html import unescape

from bridge.factors import OTP, RECOVERY_CODE, totp
from tests.bridge.conftest import (
    alert,
    callback_params,
    events,
    flow_of,
    is_callback,
    returning,
    shown,
    way_back,
    wrong_code,
)


def test_the_loser_of_an_enrollment_race_is_not_left_on_a_dead_page(act, clock):
    first = act.start("raced")
    second = act.start("raced")
    for login in (first, second):
        secret = shown(login.last_page, "totp-secret")
        act.post(login, "enroll", otp=totp.code_at(secret, clock()))
    assert is_callback(act.post(first, "saved", saved="yes"))
    lost = act.post(second, "saved", saved="yes")
    assert lost.status_code == 404
    assert flow_of(act, second) is None
    assert b'id="recovery-code"' not in act.client.get(second.flow_url).data


ELSEWHERE = "This account finished setting up in another sign-in."


def test_a_second_tab_stops_showing_a_setup_once_the_first_finished(act, clock):
    """A reload of the other tab, at its QR code or at its first recovery code, says the
    account is set up and shows neither: that secret and code would never work, and a user
    who scanned or saved them might drop the ones that do."""
    first, at_code, at_saved = act.start("tabs"), act.start("tabs"), act.start("tabs")
    saved_secret = shown(at_saved.last_page, "totp-secret")
    act.post(at_saved, "enroll", otp=totp.code_at(saved_secret, clock()))
    assert 'id="recovery-code"' in at_saved.last_page
    first.secret = shown(first.last_page, "totp-secret")
    assert act.post(first, "enroll", otp=act.code_now(first)).status_code == 303
    assert is_callback(act.post(first, "saved", saved="yes"))
    for login in (at_code, at_saved):
        page = act.client.get(login.flow_url)
        text = unescape(page.get_data(as_text=True))
        assert page.status_code == 404 and ELSEWHERE in text
        assert "recovery code, delete them: they will not work." in text
        assert 'id="totp-secret"' not in text and 'id="recovery-code"' not in text
        assert flow_of(act, login) is None


def test_a_second_tabs_first_recovery_code_is_no_longer_downloaded(act, clock):
    """The download, like the page: a setup another tab finished hands out no code."""
    first, second = act.start("tabs3"), act.start("tabs3")
    second.secret = shown(second.last_page, "totp-secret")
    act.post(second, "enroll", otp=act.code_now(second))
    dead = shown(second.last_page, "recovery-code")
    first.secret = shown(first.last_page, "totp-secret")
    clock.advance(30)
    act.post(first, "enroll", otp=act.code_now(first))
    assert is_callback(act.post(first, "saved", saved="yes"))
    download = act.client.get(f"{second.flow_url}/recovery-code.txt")
    assert download.status_code == 404 and ELSEWHERE in unescape(download.get_data(as_text=True))
    assert dead not in download.get_data(as_text=True)


def test_the_first_tabs_code_posted_in_the_second_ends_that_setup_without_a_failure(act,
                                                                                   clock):
    """Not "delete that entry in your app and scan this one": the entry the user has works."""
    first, second = act.start("tabs2"), act.start("tabs2")
    first.secret = shown(first.last_page, "totp-secret")
    act.post(first, "enroll", otp=act.code_now(first))
    assert is_callback(act.post(first, "saved", saved="yes"))
    clock.advance(30)
    refused = act.post(second, "enroll", otp=act.code_now(first))
    assert refused.status_code == 404
    assert ELSEWHERE in unescape(second.last_page)
    assert "delete that entry" not in unescape(second.last_page)
    assert way_back(second.last_page)["error"] == "access_denied"  # not a dead end
    assert "failure" not in events(act, "tabs2")
    assert flow_of(act, second) is None


def test_back_and_a_re_post_in_the_second_tab_shows_no_dead_setup(act, clock):
    """Tab B saved its own first code's page, tab A finished; B goes Back and posts its QR
    code's form again: told the account is set up, not shown B's dead recovery code."""
    first, second = act.start("tabs3"), act.start("tabs3")
    second.secret = shown(second.last_page, "totp-secret")
    qr_page = second.last_page
    act.post(second, "enroll", otp=act.code_now(second))
    first.secret = shown(first.last_page, "totp-secret")
    act.post(first, "enroll", otp=act.code_now(first))
    assert is_callback(act.post(first, "saved", saved="yes"))
    second.last_page = qr_page  # Back
    again = act.post(second, "enroll", otp=act.code_now(second))
    text = unescape(again.get_data(as_text=True))
    assert ELSEWHERE in text and 'id="recovery-code"' not in text


def test_reenrollment_replaces_the_authenticator(act, clock):
    first, _ = act.enroll("lou")
    login = act.start("lou")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    new_code = shown(login.last_page, "recovery-code")
    assert "Set up a new authenticator" in login.last_page

    step = act.post(login, "saved", saved="yes", next="reenroll")
    assert step.status_code == 303 and step.headers["Location"] == login.flow_url
    assert "Set up your new authenticator" in login.last_page
    new_secret = shown(login.last_page, "totp-secret")
    assert new_secret != first.secret
    assert re.fullmatch(r"[A-Z2-7]{32}", new_secret)
    assert "<svg" in login.last_page

    # A code from the old authenticator does not verify the new one, and the page says where
    # it came from: the likely slip with two entries of one name in the app. Another wrong
    # code is told to use the new entry, and never to delete one: the old entry, under the
    # same name, is the user's working factor until this setup ends.
    wrong = act.post(login, "reenroll", otp=totp.code_at(first.secret, clock()))
    assert wrong.status_code == 400
    assert alert(login.last_page).startswith("That code is from the authenticator you are "
                                             "replacing.")
    act.post(login, "reenroll", otp=wrong_code(new_secret, clock()))
    assert "you are replacing" not in alert(login.last_page)
    assert "the entry you just added" in alert(login.last_page)
    assert "Keep your old entry" in alert(login.last_page)
    assert "delete" not in alert(login.last_page).lower()

    done = act.post(login, "reenroll", otp=totp.code_at(new_secret, clock()))
    assert is_callback(done)
    claims = act.finish(login, done.headers["Location"])
    assert set(claims["amr"]) == {RECOVERY_CODE, OTP}
    trail = events(act, "lou")
    assert "reenrollment" in trail and "rotation" in trail

    clock.advance(30)
    old = returning(act, "lou", first.secret)
    assert act.post(old, "totp", otp=act.code_now(old)).status_code == 400
    new = returning(act, "lou", new_secret)
    assert is_callback(act.post(new, "totp", otp=act.code_now(new)))
    rc = act.start("lou")
    assert act.post(rc, "recovery", recovery_code=new_code).status_code == 303


def test_leaving_the_new_authenticator_setup_keeps_the_code_the_user_saved(act, clock):
    """The swap commits when the user confirms the new code and goes on to the setup: they
    were told the old one stops working. Cancelling the setup then leaves the new code and the
    old authenticator working, and the old code spent."""
    first, _ = act.enroll("max")
    login = act.start("max")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    new_code = shown(login.last_page, "recovery-code")
    act.post(login, "saved", saved="yes", next="reenroll")
    assert "Set up your new authenticator" in login.last_page
    assert callback_params(act.post(login, "cancel").headers["Location"])["error"] == \
        "access_denied"
    old = act.start("max")
    assert act.post(old, "recovery", recovery_code=first.recovery_code).status_code == 400
    new = act.start("max")
    assert act.post(new, "recovery", recovery_code=new_code).status_code == 303
    clock.advance(30)
    totp_login = returning(act, "max", first.secret)
    assert is_callback(act.post(totp_login, "totp", otp=act.code_now(totp_login)))


def test_skipping_the_new_authenticator_finishes_the_sign_in_on_the_recovery_code(act, clock):
    """Found by a user probe: the only way out of the new authenticator's setup was "Cancel",
    which threw the finished sign-in away (access_denied): the user signed in again with the
    code just saved, and got yet another one. "Skip for now" ends it as the recovery code
    did; nothing else changes."""
    first, _ = act.enroll("noa")
    login = act.start("noa")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    new_code = shown(login.last_page, "recovery-code")
    act.post(login, "saved", saved="yes", next="reenroll")
    page = login.last_page
    assert "Skip for now and continue" in page and "Cancel and go back" not in page
    done = act.post(login, "skip-reenroll")
    assert is_callback(done)
    assert act.finish(login, done.headers["Location"])["amr"] == [RECOVERY_CODE]
    assert "reenrollment" not in events(act, "noa")
    assert act.post(login, "skip-reenroll").status_code == 409  # once: the sign-in is over
    assert "This sign-in is complete" in login.last_page
    clock.advance(30)
    totp_login = returning(act, "noa", first.secret)  # the authenticator stays as it was
    assert is_callback(act.post(totp_login, "totp", otp=act.code_now(totp_login)))
    rc = act.start("noa")
    assert act.post(rc, "recovery", recovery_code=new_code).status_code == 303


def test_skipping_is_only_for_the_new_authenticator_after_a_recovery_code(act, clock):
    first, _ = act.enroll("ora")
    clock.advance(30)  # past the time step the setup spent
    login = returning(act, "ora", first.secret)
    assert act.post(login, "skip-reenroll").status_code == 409  # the code page: nothing ends
    assert is_callback(act.post(login, "totp", otp=act.code_now(login)))  # and it goes on


def test_wrong_first_codes_count_down_to_the_end_of_the_setup(make_act, clock):
    """A new authenticator's setup ends after STEPUP_LOCKOUT_LIMIT wrong first codes (the user
    starts again; nothing is locked): the last tries say so."""
    act = make_act(lockout_limit=4)
    login = act.start("newcomer")
    secret = shown(login.last_page, "totp-secret")
    said = []
    for _ in range(3):
        assert act.post(login, "enroll", otp=wrong_code(secret, clock())).status_code == 400
        said.append(unescape(alert(login.last_page)))
    assert [text.rpartition(". ")[2] for text in said] == [
        "You have 3 more tries before this setup ends and you start again.",
        "You have 2 more tries before this setup ends and you start again.",
        "You have 1 more try before this setup ends and you start again."]
    ended = act.post(login, "enroll", otp=wrong_code(secret, clock()))
    assert ended.status_code == 404
    assert "start again" in unescape(ended.get_data(as_text=True))
    # Found by a user probe: the next setup's key is new, and the app kept this one's entry.
    assert "Delete the entry you added to your authenticator app for this setup" in unescape(
        ended.get_data(as_text=True))
    assert flow_of(act, login) is None
    back = way_back(login.last_page)  # "start again" is one click: back to the IdP
    assert (back["error"], back["state"]) == ("access_denied", login.state)
