"""The help desk's unlock and reset (`stepup user unlock|reset`): unlock keeps the factors, a
reset lets a locked user enroll again and ends sign-ins already under way."""

from __future__ import annotations

import sqlalchemy as sa
from click.testing import CliRunner

from bridge import helpdesk
from bridge.cli import main
from bridge.cli.users import _when
from bridge.factors import recovery, totp
from bridge.store import schema
from tests.bridge.conftest import Actions, events, is_callback, shown, user, wrong_code
from tests.bridge.test_outbox import outbox


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


def test_help_desk_reset_ends_a_stolen_recovery_code_sign_in(act, clock):
    victim, _ = act.enroll("reset-victim")
    attacker = act.start("reset-victim")
    act.post(attacker, "recovery", recovery_code=victim.recovery_code)  # stops at the save page
    with act.bridge.store.begin() as tx:
        tx.remove_user("reset-victim")  # the help desk, as `stepup user reset`
    clock.advance(30)
    fresh, _ = act.enroll("reset-victim")  # the victim enrolls again
    response = act.post(attacker, "saved", saved="yes")
    assert response.status_code == 404
    assert not is_callback(response)
    again = act.start("reset-victim")  # the victim's new recovery code still works
    assert act.post(again, "recovery", recovery_code=fresh.recovery_code).status_code == 303


def test_help_desk_reset_ends_a_re_enrollment_in_progress(act):
    first, _ = act.enroll("reset-reenroll")
    login = act.start("reset-reenroll")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    act.post(login, "saved", saved="yes", next="reenroll")
    new_secret = shown(login.last_page, "totp-secret")
    with act.bridge.store.begin() as tx:
        tx.remove_user("reset-reenroll")
    response = act.post(login, "reenroll", otp=totp.code_at(new_secret, act.clock()))
    assert response.status_code == 404
    assert user(act, "reset-reenroll") is None


def test_help_desk_unlock_keeps_the_factors(make_app, clock, tmp_path):
    app = make_app(lockout_limit=2)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    enrolled, _ = act.enroll("unlock-me")
    clock.advance(30)
    login = act.start("unlock-me")
    for _ in range(2):
        act.post(login, "totp", otp=wrong_code(enrolled.secret, clock()))
    assert user(act, "unlock-me").locked_at is not None
    env = {"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": "https://bridge.example",
           "STEPUP_DATABASE_URL": act.bridge.settings.database_url}
    result = CliRunner().invoke(main, ["user", "unlock", "unlock-me"], env=env)
    assert result.exit_code == 0, result.output
    assert user(act, "unlock-me").failures == 0
    assert "helpdesk_unlock" in events(act, "unlock-me")
    again = act.start("unlock-me")
    again.secret = enrolled.secret
    assert is_callback(act.post(again, "totp", otp=act.code_now(again)))
    refused = CliRunner().invoke(main, ["user", "unlock", "unlock-me"], env=env)
    assert refused.exit_code == 3  # refused; 1 is "not enrolled", 2 a usage error
    assert "is not locked" in refused.output
    unknown = CliRunner().invoke(main, ["user", "unlock", "nobody"], env=env)
    assert unknown.exit_code == 1 and "nobody is not enrolled" in unknown.output
    assert CliRunner().invoke(main, ["user", "reset", "nobody", "--yes"], env=env).exit_code == 1
    shown = CliRunner().invoke(main, ["user", "show", "unlock-me"], env=env)
    assert shown.exit_code == 0 and "helpdesk_show" in events(act, "unlock-me")
    # Locked by the user over their enrollment ("this wasn't me"): the CLI says to reset.
    [notice] = [e for e in outbox(act, "unlock-me") if e["event"] == "enrollment"]
    act.bridge.not_me.confirm(act.bridge.not_me.link(notice).rsplit("/", 1)[1])
    disowned = CliRunner().invoke(main, ["user", "unlock", "unlock-me"], env=env)
    assert disowned.exit_code == 3 and "stepup user reset unlock-me" in disowned.output
    shown = CliRunner().invoke(main, ["user", "show", "unlock-me"], env=env)
    assert f"LOCKED by the user (\"this wasn't me\" on enrollment of {_when(notice['at'])})" \
        in shown.output
    assert user(act, "unlock-me").locked_at is not None


def test_a_lock_over_factors_a_reset_revoked_says_so(make_app, clock, tmp_path):
    """Reset by the help desk and enrolled again, the user follows the link of a notice from
    before the reset. The lock stands — whoever set up the old factors may have set up these
    too — and the help desk sees that the event came before the factors it is looking at."""
    app = make_app()
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    act.enroll("rae")
    [notice] = [e for e in outbox(act, "rae") if e["event"] == "enrollment"]
    env = {"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": "https://bridge.example",
           "STEPUP_DATABASE_URL": act.bridge.settings.database_url}
    assert CliRunner().invoke(main, ["user", "reset", "rae", "--yes"], env=env).exit_code == 0
    clock.advance(60)
    act.enroll("rae")
    act.bridge.not_me.confirm(act.bridge.not_me.link(notice).rsplit("/", 1)[1])
    with act.bridge.store.begin() as tx:
        seen = helpdesk.show(tx, "rae", clock(), None)
    assert (seen["disowned_event"], seen["disowned_event_at"]) == ("enrollment", notice["at"])
    assert seen["disowned_event_at"] < seen["enrolled_at"]
    for _ in range(25):  # the help desk's own look-ups do not push the history off the list
        shown = CliRunner().invoke(main, ["user", "show", "rae"], env=env)
    assert (f"\"this wasn't me\" on enrollment of {_when(notice['at'])}, before these factors "
            "were set up" in shown.output)
    history = [line.split()[2] for line in shown.stdout.splitlines()[1:]]
    assert history == ["not_me", "enrollment", "helpdesk_reset", "enrollment"]
    assert "helpdesk_show" in events(act, "rae")  # audited all the same
    refused = CliRunner().invoke(main, ["user", "unlock", "rae"], env=env)
    assert refused.exit_code == 3 and "reset instead" in refused.output


def test_the_command_line_audits_the_operator_as_a_json_line(make_app, clock, tmp_path):
    """A reset from the shell reaches a log pipeline as one from the API does: a JSON audit line
    on stderr, and the audit trail names who ran it (the user behind sudo)."""
    import json

    app = make_app()
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    act.enroll("ula")
    env = {"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": "https://bridge.example",
           "STEPUP_DATABASE_URL": act.bridge.settings.database_url, "SUDO_USER": "hd-anna"}
    reset = CliRunner().invoke(main, ["user", "reset", "ula", "--yes"], env=env)
    assert reset.exit_code == 0
    assert reset.stdout == "Reset ula: TOTP and recovery code revoked; they will enroll again.\n"
    [line] = [json.loads(text) for text in reset.stderr.splitlines()]
    assert line["logger"] == "stepup.audit" and line["message"] == "helpdesk_reset"
    assert {k: v for k, v in line["audit"].items() if k != "event_id"} == {
        "event": "helpdesk_reset", "subject": "ula", "client_id": None, "ip": None,
        "operator": "hd-anna"}
    with act.bridge.store.engine.begin() as conn:
        detail = conn.execute(sa.select(schema.audit_events.c.detail).where(
            schema.audit_events.c.event == "helpdesk_reset")).scalar_one()
    assert detail == {"operator": "hd-anna", "event_id": line["audit"]["event_id"]}


def test_a_uid_with_no_name_is_audited_by_its_number(monkeypatch):
    """A container's random uid has no passwd entry: getpass raised (KeyError before Python
    3.13) and every command that writes an audit event ended in a traceback."""
    from bridge.cli.base import _operator

    for name in ("SUDO_USER", "LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("os.getuid", lambda: 54321)
    assert _operator() == "uid 54321"


def test_a_subject_without_factors_is_told_as_its_newest_factor_event_says():
    """A reset is named only while it is the last thing that happened to the factors: after
    a new enrollment and a lock that took them away again, an old reset date would mislead."""
    from bridge.cli.users import _SUBJECT_HINT, _not_enrolled

    reset = {"event": "helpdesk_reset", "at": 0.0}
    assert _not_enrolled([{"event": "helpdesk_show", "at": 9.0}, reset]) == (
        "the help desk reset their factors on 1970-01-01 00:00:00Z")
    later = [{"event": "helpdesk_unlock", "at": 3.0}, {"event": "not_me", "at": 2.0},
             {"event": "enrollment", "at": 1.0}, reset]
    assert _not_enrolled(later) == "no factor; their events are below"
    assert _not_enrolled([]) == _SUBJECT_HINT
