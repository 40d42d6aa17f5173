"""The rules the bridge keeps (DESIGN.md), each shown through the app as a user meets it:
TOTP replay, the shared failure counter and lockout, the per-IP limit, recovery-code
rotation that loses nothing, re-enrollment, and no secrets in the logs."""

from __future__ import annotations

import logging
import re

import pytest
import sqlalchemy as sa

from bridge.factors import recovery, totp
from bridge.oidc.assertion import AMR_RECOVERY, AMR_TOTP
from bridge.store import schema
from tests.bridge.conftest import (
    IDP_SECRET,
    alert,
    callback_params,
    events,
    flow_of,
    is_callback,
    returning,
    shown,
    user,
    wrong_code,
)


# -- TOTP: each time step is accepted once -----------------------------------------------
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
    assert act.finish(b, response.headers["Location"])["amr"] == [AMR_TOTP]
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


# -- throttling and lockout ------------------------------------------------------------------
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
    assert "Two-step sign-in is locked" in page
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
    assert "Two-step sign-in is locked" in login.last_page
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
    assert "Two-step sign-in is locked" in login.last_page
    clock.advance(30)
    right = {"otp": totp.code_at(first.secret, clock()), "recovery_code": first.recovery_code}
    response = act.post(login, action, **{field: right[field]})
    assert not is_callback(response)
    assert response.status_code == 403
    assert "Two-step sign-in is locked" in login.last_page
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
    assert "Two-step sign-in is locked" in html and alert(html)
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
    assert "Two-step sign-in is locked" in other_tab.last_page
    assert 'name="otp"' not in other_tab.last_page
    back = act.post(other_tab, "cancel")
    assert callback_params(back.headers["Location"])["error_description"] == (
        "The user is locked out.")


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


def test_help_desk_reset_lets_a_locked_user_enroll_again(make_act, clock):
    act = make_act(lockout_limit=3)
    first, _ = act.enroll("finn")
    login = act.start("finn")
    for _ in range(3):
        act.post(login, "recovery", recovery_code=recovery.generate())
    assert user(act, "finn").locked_at is not None

    with act.bridge.store.begin() as tx:  # what `stepup user reset finn` does
        assert tx.remove_user("finn")
    clock.advance(30)
    second, callback = act.enroll("finn")
    assert second.secret != first.secret
    assert act.finish(second, callback)["sub"] == "finn"
    fresh = user(act, "finn")
    assert fresh.failures == 0 and fresh.locked_at is None


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


# -- recovery code rotation -----------------------------------------------------------------
def test_recovery_code_only_stages_and_a_closed_tab_leaves_the_old_code_valid(act, clock):
    first, _ = act.enroll("hana")
    before = user(act, "hana")
    abandoned = act.start("hana")
    assert act.post(abandoned, "recovery", recovery_code=first.recovery_code).status_code == 303
    staged = shown(abandoned.last_page, "recovery-code")
    after = user(act, "hana")
    assert (after.recovery_digest, after.recovery_version) == (
        before.recovery_digest, before.recovery_version)
    # The tab is closed here. Straight away, a new hand-off:
    login = act.start("hana")
    assert act.post(login, "recovery", recovery_code=staged).status_code == 400
    assert act.post(login, "recovery", recovery_code=first.recovery_code).status_code == 303
    replacement = shown(login.last_page, "recovery-code")
    assert replacement != staged
    response = act.post(login, "saved", saved="yes")
    assert act.finish(login, response.headers["Location"])["amr"] == [AMR_RECOVERY]

    # The abandoned flow's code never works, and the abandoned flow cannot finish.
    probe = act.start("hana")
    assert act.post(probe, "recovery", recovery_code=staged).status_code == 400
    late = act.post(abandoned, "saved", saved="yes")
    assert not is_callback(late)
    assert "used in another sign-in" in abandoned.last_page
    assert user(act, "hana").recovery_digest == recovery.keyed_digest(act.bridge.secrets.pepper,
                                                                replacement)
    assert act.post(probe, "recovery", recovery_code=replacement).status_code == 303


def test_an_expired_flow_leaves_the_old_code_valid(act, clock):
    first, _ = act.enroll("ian")
    abandoned = act.start("ian")
    act.post(abandoned, "recovery", recovery_code=first.recovery_code)
    clock.advance(act.bridge.settings.flow_ttl + 1)
    assert act.client.get(abandoned.flow_url).status_code == 404
    assert act.post(abandoned, "saved", saved="yes").status_code == 404
    login = act.start("ian")
    assert act.post(login, "recovery", recovery_code=first.recovery_code).status_code == 303


@pytest.mark.parametrize("form", [{}, {"saved": ""}, {"saved": "no"}, {"saved": "on"},
                                  {"next": "reenroll"}])
def test_confirming_without_the_saved_box_changes_nothing(act, form):
    first, _ = act.enroll("jo")
    before = user(act, "jo")
    login = act.start("jo")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    staged = shown(login.last_page, "recovery-code")

    response = act.post(login, "saved", **form)
    assert response.status_code == 400
    assert "saved" in alert(login.last_page)
    assert shown(login.last_page, "recovery-code") == staged
    assert flow_of(act, login).stage == "rotate"
    assert user(act, "jo") == before
    assert "rotation" not in events(act, "jo")

    done = act.post(login, "saved", saved="yes")
    assert is_callback(done)


def test_after_confirmation_the_old_code_fails_and_the_new_one_works(act):
    first, _ = act.enroll("kim")
    login = act.start("kim")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    new_code = shown(login.last_page, "recovery-code")
    assert is_callback(act.post(login, "saved", saved="yes"))
    assert user(act, "kim").recovery_version == 2

    old = act.start("kim")
    assert act.post(old, "recovery", recovery_code=first.recovery_code).status_code == 400
    new = act.start("kim")
    assert act.post(new, "recovery", recovery_code=new_code.lower()).status_code == 303
    assert [e for e in events(act, "kim") if e in ("recovery_code_used", "rotation")] == [
        "recovery_code_used", "rotation", "recovery_code_used"]


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

    # A code from the old authenticator does not verify the new one.
    wrong = act.post(login, "reenroll", otp=totp.code_at(first.secret, clock()))
    assert wrong.status_code == 400

    done = act.post(login, "reenroll", otp=totp.code_at(new_secret, clock()))
    assert is_callback(done)
    claims = act.finish(login, done.headers["Location"])
    assert set(claims["amr"]) == {AMR_RECOVERY, AMR_TOTP}
    trail = events(act, "lou")
    assert "reenrollment" in trail and "rotation" in trail

    clock.advance(30)
    old = returning(act, "lou", first.secret)
    assert act.post(old, "totp", otp=act.code_now(old)).status_code == 400
    new = returning(act, "lou", new_secret)
    assert is_callback(act.post(new, "totp", otp=act.code_now(new)))
    rc = act.start("lou")
    assert act.post(rc, "recovery", recovery_code=new_code).status_code == 303


# -- no secrets in the logs ---------------------------------------------------------------
def _log_everything(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ["", *list(logging.root.manager.loggerDict)]:
        caplog.set_level(logging.DEBUG, logger=name)


def _record_text(record: logging.LogRecord) -> str:
    parts = [str(record.msg), repr(record.args), repr(record.__dict__), record.getMessage()]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def test_no_secrets_in_logs(act, clock, caplog):
    _log_everything(caplog)
    logging.getLogger("tests.canary").debug("log capture works")

    secrets: list[str] = [IDP_SECRET]
    digits: list[str] = []  # TOTP codes: matched as whole numbers only

    def redeem(login, location):
        params = callback_params(location)
        secrets.append(params["code"])
        response = act.redeem(params["code"], login)
        assert response.status_code == 200
        secrets.append(response.get_json()["id_token"])
        secrets.append(response.get_json()["access_token"])

    pushed: list[str] = []
    original_push = act.push

    def push(*args, **kwargs):
        response, login = original_push(*args, **kwargs)
        if response.status_code == 201:
            pushed.append(response.get_json()["request_uri"])
        return response, login

    act.push = push

    # Enrollment.
    login, callback = act.enroll("mia")
    digits.append(totp.code_at(login.secret, clock()))
    secrets += [login.secret, login.recovery_code]
    redeem(login, callback)
    # TOTP, after a wrong code.
    clock.advance(30)
    t = returning(act, "mia", login.secret)
    bad = wrong_code(login.secret, clock())
    digits.append(bad)
    assert act.post(t, "totp", otp=bad).status_code == 400
    digits.append(act.code_now(t))
    done = act.post(t, "totp", otp=act.code_now(t))
    redeem(t, done.headers["Location"])
    # Recovery with rotation, after a wrong recovery code.
    r = act.start("mia")
    wrong_rc = recovery.generate()
    secrets.append(wrong_rc)
    assert act.post(r, "recovery", recovery_code=wrong_rc.lower()).status_code == 400
    assert act.post(r, "recovery", recovery_code=login.recovery_code.lower()).status_code == 303
    new_code = shown(r.last_page, "recovery-code")
    secrets.append(new_code)
    assert act.client.get(f"{r.flow_url}/recovery-code.txt").status_code == 200
    done = act.post(r, "saved", saved="yes")
    redeem(r, done.headers["Location"])
    # A failed enrollment attempt.
    e = act.start("nia")
    enrolling = shown(e.last_page, "totp-secret")
    secrets.append(enrolling)
    bad = wrong_code(enrolling, clock())
    digits.append(bad)
    assert act.post(e, "enroll", otp=bad).status_code == 400
    secrets += pushed

    forms = set()
    for s in secrets:
        canonical = recovery.normalize(s) if len(s) < 40 else None
        forms |= {s, s.lower()}
        if canonical:  # a recovery code in every format a user or a log might use
            forms |= {canonical, canonical.lower(), s.replace("-", " "),
                      s.replace("-", " ").lower()}
        if s.startswith("urn:"):
            forms.add(s.rsplit(":", 1)[1])
    assert len(pushed) == 4

    texts = [(record.name, _record_text(record)) for record in caplog.records]
    assert any("log capture works" in text for _, text in texts)
    assert any(name == "stepup.audit" for name, _ in texts)  # the audit log is captured too
    with act.bridge.store.begin() as tx:
        rows = tx.conn.execute(sa.select(schema.audit_events)).mappings().all()
    texts += [("audit_events table", repr(dict(row))) for row in rows]
    leaks = set()
    for name, text in texts:
        leaks |= {f"{name}: {text[:60]!r}" for secret in forms if secret in text}
        leaks |= {f"{name}: TOTP code in {text[:60]!r}" for code in digits
                  if re.search(rf"(?<!\d){code}(?!\d)", text)}
    assert not leaks, "secrets in the logs:\n" + "\n".join(sorted(leaks))

    logged = {row["event"] for row in rows}
    assert {"enrollment", "success", "failure", "recovery_code_used", "rotation"} <= logged
