"""A whole hand-off through the test client: enrollment, TOTP, recovery with rotation."""

from dataclasses import replace

from bridge.factors import OTP, RECOVERY_CODE
from bridge.settings import DEFAULT_ACR
from tests.bridge.conftest import (
    CALLBACK,
    IDP_ID,
    IDP_SECRET,
    KC_PREFIX,
    callback_params,
    is_callback,
    shown,
)
from tests.bridge.test_cli import ok, stepup  # noqa: F401  (fixture)


def test_enrollment_then_assertion(act, clock):
    login, callback = act.enroll("alice")
    assert callback.startswith("https://idp.example/callback?")
    claims = act.finish(login, callback)
    assert claims["sub"] == "alice"
    assert claims["aud"] == IDP_ID
    assert claims["iss"] == "https://bridge.example"
    assert claims["nonce"] == login.nonce
    assert claims["amr"] == [OTP]
    assert claims["acr"] == DEFAULT_ACR
    assert claims["auth_time"] <= claims["iat"] <= clock() + 1
    assert 0 < claims["exp"] - claims["iat"] <= 300


def test_totp_login(act, clock):
    login, _ = act.enroll("bob")
    clock.advance(30)
    again = act.start("bob")
    assert 'name="otp"' in again.last_page and 'id="use-recovery-code"' in again.last_page
    again.secret = login.secret
    response = act.post(again, "totp", otp=act.code_now(again))
    assert response.status_code == 303
    claims = act.finish(again, response.headers["Location"])
    assert claims["amr"] == [OTP]


def test_recovery_login_rotates_the_code(act, clock):
    first, _ = act.enroll("carol")
    login = act.start("carol")
    assert act.post(login, "recovery", recovery_code=first.recovery_code.lower()).status_code == 303
    new_code = shown(login.last_page, "recovery-code")
    assert new_code != first.recovery_code
    assert "This code works only once" in login.last_page
    response = act.post(login, "saved", saved="yes")
    claims = act.finish(login, response.headers["Location"])
    assert claims["amr"] == [RECOVERY_CODE]
    # The old code is spent, the new one works.
    again = act.start("carol")
    act.post(again, "recovery", recovery_code=first.recovery_code)
    assert 'role="alert"' in again.last_page
    again2 = act.start("carol")
    assert act.post(again2, "recovery", recovery_code=new_code.replace("-", " ")).status_code == 303


def test_cancel_returns_access_denied(act):
    login = act.start("dave")
    response = act.post(login, "cancel")
    params = callback_params(response.headers["Location"])
    assert params["error"] == "access_denied"
    assert params["state"] == login.state
    assert params["iss"] == "https://bridge.example"


def test_enrollment_turned_off_per_request(act):
    login = act.start("newcomer", stepup_allow_enrollment="false")
    assert "isn't set up" in login.last_page
    assert 'id="totp-secret"' not in login.last_page
    params = callback_params(act.post(login, "cancel").headers["Location"])
    assert params["error"] == "access_denied"


def test_enrollment_turned_off_for_the_client(act, bridge):
    with bridge.store.begin() as tx:
        record = tx.find_client(IDP_ID)
        tx.remove_client(IDP_ID)
        tx.add_client(replace(record, allow_enrollment=False))
    login = act.start("newcomer", stepup_allow_enrollment="true")  # cannot turn it back on
    assert "isn't set up" in login.last_page


def test_a_client_registered_again_inherits_nothing(act, bridge, client):
    """Removing a client (a leaked secret, a redirect URI taken away) drops its pushed
    requests, open sign-ins and unredeemed codes: none of them reaches the old redirect URI
    or redeems under the new registration."""
    login, callback = act.enroll("rita")  # a code issued, not redeemed yet
    open_flow = act.start("rita")
    pushed, _ = act.push("rita")
    with bridge.store.begin() as tx:
        record = tx.find_client(IDP_ID)
        assert tx.remove_client(IDP_ID)
        tx.add_client(replace(record, redirect_uris=["https://new.example/cb"]))
    code = callback_params(callback)["code"]
    assert act.redeem(code, login).get_json()["error"] == "invalid_grant"
    open_flow.secret = login.secret
    refused = act.post(open_flow, "totp", otp=act.code_now(open_flow))
    assert refused.status_code == 404 and "Location" not in refused.headers
    uri = pushed.get_json()["request_uri"]
    assert client.get(f"/authorize?client_id={IDP_ID}&request_uri={uri}").status_code == 400
    # The user lost nothing: a sign-in pushed under the new registration still works.
    act.clock.advance(30)
    again = act.start("rita", redirect_uri="https://new.example/cb")
    again.secret = login.secret
    done = act.post(again, "totp", otp=act.code_now(again))
    assert done.headers["Location"].startswith("https://new.example/cb?")


def test_the_same_registration_again_ends_nothing(act, stepup):  # noqa: F811
    """`stepup keycloak install` re-registers its client on every run: unchanged, the sign-ins
    in progress go on; changed (here a redirect URI taken away), they end."""
    login = act.start("sam")
    same = ("client", "add", "--client-id", IDP_ID, "--redirect-uri", CALLBACK,
            "--redirect-uri-prefix", KC_PREFIX, "--replace")
    ok(stepup(*same, STEPUP_CLIENT_SECRET=IDP_SECRET))
    assert act.client.get(login.flow_url).status_code == 200
    ok(stepup(*same[:-3], "--replace", STEPUP_CLIENT_SECRET=IDP_SECRET))
    assert act.client.get(login.flow_url).status_code == 404


def test_a_new_recovery_code_after_a_totp_check(act, clock):
    """Regeneration without turning MFA off and on: TOTP, then save a fresh code."""
    first, _ = act.enroll("regen")
    clock.advance(30)
    login = act.start("regen")
    login.secret = first.secret
    assert act.post(login, "totp", otp=act.code_now(login), new_recovery_code="yes"
                    ).status_code == 303
    new_code = shown(login.last_page, "recovery-code")
    assert "As you asked, here is a new recovery code" in login.last_page
    assert "Set up a new authenticator" not in login.last_page
    claims = act.finish(login, act.post(login, "saved", saved="yes").headers["Location"])
    assert claims["amr"] == [OTP]
    old = act.start("regen")
    assert act.post(old, "recovery", recovery_code=first.recovery_code).status_code == 400
    fresh = act.start("regen")
    assert act.post(fresh, "recovery", recovery_code=new_code).status_code == 303


def new_code_asked_for(act, clock, subject: str):
    """An enrolled user's TOTP sign-in that asked for a new recovery code: the enrollment,
    the sign-in, and the new code it shows."""
    first, _ = act.enroll(subject)
    clock.advance(30)
    login = act.start(subject)
    login.secret = first.secret
    act.post(login, "totp", otp=act.code_now(login), new_recovery_code="yes")
    return first, login, shown(login.last_page, "recovery-code")


def test_a_user_who_asked_for_a_new_code_may_keep_the_current_one(act, clock):
    """Ticked by mistake: "Keep my current code" ends the sign-in as the TOTP check alone
    would have; the code shown never works, the current one still does."""
    first, login, staged = new_code_asked_for(act, clock, "keeper")
    assert "Keep my current code" in login.last_page
    claims = act.finish(login, act.post(login, "keep-code").headers["Location"])
    assert claims["amr"] == [OTP]
    assert act.post(act.start("keeper"), "recovery", recovery_code=staged).status_code == 400
    assert act.post(act.start("keeper"), "recovery",
                    recovery_code=first.recovery_code).status_code == 303


def test_after_a_recovery_code_sign_in_its_replacement_cannot_be_declined(act, clock):
    """The recovery code is spent: the sign-in goes on only by saving the new one."""
    first, _ = act.enroll("spender")
    login = act.start("spender")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    staged = shown(login.last_page, "recovery-code")
    assert "Keep my current code" not in login.last_page
    refused = act.post(login, "keep-code")
    assert refused.status_code == 409
    assert shown(login.last_page, "recovery-code") == staged  # still on its page
    assert is_callback(act.post(login, "saved", saved="yes"))


def test_asking_for_a_new_code_and_closing_the_tab_keeps_the_old_one(act, clock):
    first, _, staged = new_code_asked_for(act, clock, "regen-closed")
    again = act.start("regen-closed")  # the tab was closed; a new sign-in
    assert act.post(again, "recovery", recovery_code=first.recovery_code).status_code == 303
    other = act.start("regen-closed")
    assert act.post(other, "recovery", recovery_code=staged).status_code == 400
