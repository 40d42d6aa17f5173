"""``max_age`` (OpenID Connect Core §3.1.2.1): the code a sign-in ends with carries the
``auth_time`` of the factor's check. A user who stays on the new recovery code's page, or on a
new authenticator's setup, past the IdP's ``max_age`` would get an assertion the IdP must
refuse, after the factor was spent; the sign-in asks for a code once more instead, keeping
what the user confirmed."""

from __future__ import annotations

from html import unescape

from bridge.challenge import MAX_AGE_GRACE
from bridge.factors import OTP, RECOVERY_CODE, recovery, totp
from tests.bridge.conftest import alert, flow_of, is_callback, returning, shown, user

AGAIN = "This sign-in took longer than your organization allows"


def asked_again(act, login, response) -> None:
    assert response.status_code == 200 and not is_callback(response)
    assert AGAIN in unescape(alert(login.last_page))
    assert 'name="otp"' in login.last_page and 'id="use-recovery-code"' in login.last_page
    assert 'aria-invalid' not in login.last_page  # nothing was wrong with what they entered
    assert flow_of(act, login).stage == "totp"


def test_a_new_code_confirmed_after_max_age_keeps_the_code_and_asks_again(act, clock):
    first, _ = act.enroll("ada")
    login = act.start("ada", max_age="60")
    assert act.post(login, "recovery", recovery_code=first.recovery_code).status_code == 303
    new_code = shown(login.last_page, "recovery-code")
    clock.advance(61 + MAX_AGE_GRACE)  # reading, copying, printing the new code

    asked_again(act, login, act.post(login, "saved", saved="yes"))
    digest = recovery.keyed_digest(act.bridge.secrets.pepper, new_code)
    assert user(act, "ada").recovery_digest == digest  # the rotation the user confirmed holds

    login.secret = first.secret
    done = act.post(login, "totp", otp=act.code_now(login))
    assert is_callback(done)
    claims = act.finish(login, done.headers["Location"])
    assert claims["amr"] == [OTP] and claims["auth_time"] == int(clock())


def test_within_max_age_the_code_keeps_the_recovery_codes_auth_time(act, clock):
    first, _ = act.enroll("bea")
    login = act.start("bea", max_age="60")
    checked = clock()
    act.post(login, "recovery", recovery_code=first.recovery_code)
    clock.advance(60 + MAX_AGE_GRACE)  # the grace: the hand-off client's clock leeway
    done = act.post(login, "saved", saved="yes")
    assert is_callback(done)
    claims = act.finish(login, done.headers["Location"])
    assert claims["amr"] == [RECOVERY_CODE] and claims["auth_time"] == int(checked)


def test_an_enrollment_confirmed_after_max_age_asks_for_the_new_authenticators_next_code(
        act, clock):
    login = act.start("cy", max_age="30")
    login.secret = shown(login.last_page, "totp-secret")
    assert act.post(login, "enroll", otp=act.code_now(login)).status_code == 303
    clock.advance(31 + MAX_AGE_GRACE)

    asked_again(act, login, act.post(login, "saved", saved="yes"))
    assert user(act, "cy") is not None  # enrolled
    spent = act.post(login, "totp", otp=totp.code_at(login.secret,
                                                      clock() - 31 - MAX_AGE_GRACE))
    assert spent.status_code == 400  # the enrollment's code was spent
    clock.advance(30)
    done = act.post(login, "totp", otp=act.code_now(login))
    claims = act.finish(login, done.headers["Location"])
    assert claims["amr"] == [OTP] and claims["auth_time"] == int(clock())


def test_a_new_authenticator_set_up_after_max_age_is_kept_and_asked_for(act, clock):
    first, _ = act.enroll("dee")
    login = act.start("dee", max_age="120")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    assert act.post(login, "saved", saved="yes", next="reenroll").status_code == 303
    new_secret = shown(login.last_page, "totp-secret")
    clock.advance(121 + MAX_AGE_GRACE)  # finding the phone, installing an app

    asked_again(act, login, act.post(login, "reenroll", otp=totp.code_at(new_secret, clock())))
    clock.advance(30)
    old = returning(act, "dee", first.secret)
    assert act.post(old, "totp", otp=act.code_now(old)).status_code == 400  # replaced
    login.secret = new_secret
    done = act.post(login, "totp", otp=act.code_now(login))
    claims = act.finish(login, done.headers["Location"])
    assert claims["amr"] == [OTP] and claims["auth_time"] == int(clock())


def test_max_age_0_leaves_the_grace_and_then_the_new_recovery_code(act, clock):
    """``max_age=0`` (a login now, OpenID Connect Core §3.1.2.1): a recovery-code user who
    saves the new code within the grace finishes; one slower is asked again, and may answer
    with the new code they just saved (no authenticator needed), which stages another."""
    first, _ = act.enroll("fay")
    quick = act.start("fay", max_age="0")
    act.post(quick, "recovery", recovery_code=first.recovery_code)
    second = shown(quick.last_page, "recovery-code")
    clock.advance(MAX_AGE_GRACE)
    assert is_callback(act.post(quick, "saved", saved="yes"))

    slow = act.start("fay", max_age="0")
    act.post(slow, "recovery", recovery_code=second)
    third = shown(slow.last_page, "recovery-code")
    clock.advance(MAX_AGE_GRACE + 1)
    asked_again(act, slow, act.post(slow, "saved", saved="yes"))
    assert "the new recovery code you just saved" in unescape(alert(slow.last_page))
    slow.last_page = act.client.get(f"{slow.flow_url}/recovery").get_data(as_text=True)
    assert act.post(slow, "recovery", recovery_code=third).status_code == 303
    done = act.post(slow, "saved", saved="yes")
    claims = act.finish(slow, done.headers["Location"])
    assert claims["amr"] == [RECOVERY_CODE] and claims["auth_time"] == int(clock())


def test_without_max_age_nothing_is_asked_again(act, clock):
    first, _ = act.enroll("eve")
    login = act.start("eve")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    clock.advance(600)
    assert is_callback(act.post(login, "saved", saved="yes"))


def test_keeping_the_current_code_after_max_age_asks_for_the_authenticator_only(act, clock):
    """The new code was shown but dropped ("Keep my current code"): the message must not
    offer it, and it never works."""
    first, _ = act.enroll("gus")
    clock.advance(30)
    login = act.start("gus", max_age="60")
    login.secret = first.secret
    act.post(login, "totp", otp=act.code_now(login), new_recovery_code="yes")
    dropped = shown(login.last_page, "recovery-code")
    clock.advance(61 + MAX_AGE_GRACE)

    asked_again(act, login, act.post(login, "keep-code"))
    assert "<title>Error" not in login.last_page  # asked again: not an error of theirs
    text = unescape(alert(login.last_page))
    assert "authenticator app." in text and "recovery code you just saved" not in text
    assert user(act, "gus").recovery_digest == recovery.keyed_digest(
        act.bridge.secrets.pepper, first.recovery_code)
    assert act.post(login, "recovery", recovery_code=dropped).status_code == 400
