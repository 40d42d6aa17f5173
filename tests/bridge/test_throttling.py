"""Throttling short of the lock (DESIGN.md "Throttling"): the growing delay between a user's
attempts, the per-client-IP limit across users, and the caller's limit on failed client
authentications at the back channel. The lock itself: test_lockout.py."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from bridge.challenge.errors import WrongCode
from bridge.factors import recovery, totp
from bridge.oidc.clients import new_client
from bridge.store import schema
from tests.bridge.conftest import (
    CALLBACK,
    IDP_ID,
    IDP_SECRET,
    alert,
    callback_params,
    events,
    flow_of,
    is_callback,
    returning,
    user,
    wrong_code,
)
from tests.bridge.html_reader import Page
from tests.bridge.test_cli import ok, one_line_error, stepup  # noqa: F401  (fixture)


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


def test_a_page_shown_afresh_during_the_wait_says_it_and_a_code_refused_for_it_stays(act,
                                                                                      clock):
    """Found by a user probe: Reload, or the recovery page the countdown points to, forgot the
    wait, so the next code (even the right one) was refused and the field emptied."""
    first, _ = act.enroll("hal")
    clock.advance(30)
    login = returning(act, "hal", first.secret)
    for _ in range(4):
        act.post(login, "totp", otp=wrong_code(first.secret, clock()))
    for path in ("", "/recovery"):  # Reload; the other factor's page
        page = Page(act.client.get(login.flow_url + path).get_data(as_text=True))
        error = page.one(role="alert")
        assert error.attrs["data-wait"] == "2"
        assert error.text.strip() == "Too many wrong codes. Wait 2 seconds, then try again."
        field = page.one("input", id="otp" if not path else "recovery_code")
        assert "aria-invalid" not in field.attrs  # the time's fault, not the field's
        assert not page.one("title").text.startswith("Error:")
    clock.advance(1)
    early = act.post(login, "totp", otp=act.code_now(login))
    assert early.status_code == 429
    kept = Page(login.last_page).one("input", name="otp")
    assert kept.attrs["value"] == act.code_now(login) and "aria-invalid" not in kept.attrs
    page = Page(act.client.get(login.flow_url).get_data(as_text=True))
    assert page.one(role="alert").attrs["data-wait"] == "1"
    clock.advance(1)  # over: the page is as ever, and the code goes
    assert not Page(act.client.get(login.flow_url).get_data(as_text=True)).all(role="alert")
    login.last_page = None
    assert is_callback(act.post(login, "totp", otp=act.code_now(login)))


def test_a_wrong_code_is_not_kept_in_the_field(act, clock):
    first, _ = act.enroll("ivy")
    clock.advance(30)
    login = returning(act, "ivy", first.secret)
    act.post(login, "totp", otp=wrong_code(first.secret, clock()))
    assert "value" not in Page(login.last_page).one("input", name="otp").attrs


def test_an_attempt_that_waited_for_the_lock_is_judged_when_it_got_it(act, clock, monkeypatch):
    """Two tabs' wrong codes at once: the second waits for the user's row while the first is
    counted. Judged with a clock read before that wait, it would find the first failure in its
    future and be refused as "too soon" (uncounted) although no delay applies yet."""
    first, _ = act.enroll("hal")
    clock.advance(30)
    one, two = returning(act, "hal", first.secret), returning(act, "hal", first.secret)
    store, challenge = act.bridge.store, act.bridge.challenge
    begin = store.begin

    def the_other_tab_first(*args, **kwargs):
        monkeypatch.setattr(store, "begin", begin)
        clock.advance(1)  # while this attempt waits for the lock, the other tab's is counted
        with pytest.raises(WrongCode):
            challenge.verify_totp(flow_of(act, two), wrong_code(first.secret, clock()), "::1")
        return begin(*args, **kwargs)

    monkeypatch.setattr(store, "begin", the_other_tab_first)
    assert act.post(one, "totp", otp=wrong_code(first.secret, clock())).status_code == 400
    assert "work. Check your authenticator" in alert(one.last_page)
    assert user(act, "hal").failures == 2
    assert user(act, "hal").last_failure_at == clock()


def test_another_nodes_clock_ahead_never_makes_the_wait_longer_than_the_delay(act, clock):
    """The failure was counted by a node whose clock runs 100 s ahead of this one's: the user
    waits the delay their failures earn (2 s after the fourth), not 102 s."""
    first, _ = act.enroll("ida")
    clock.advance(30)
    login = returning(act, "ida", first.secret)
    for _ in range(4):
        act.post(login, "totp", otp=wrong_code(first.secret, clock()))
    with act.bridge.store.engine.begin() as conn:
        conn.execute(sa.update(schema.users).where(schema.users.c.subject == "ida")
                     .values(last_failure_at=clock() + 100))
    early = act.post(login, "totp", otp=act.code_now(login))
    assert early.status_code == 429
    assert re.search(r"Wait (\d+) seconds", alert(login.last_page)).group(1) == "2"


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
    # The operator hears of it once, when the window closed (codes sprayed over users from
    # one address), not per refused attempt.
    assert events(act).count("ip_window_closed") == 1
    act.post(login, "totp", otp=act.code_now(login))
    assert events(act).count("ip_window_closed") == 1
    with act.bridge.store.engine.begin() as conn:
        closed = conn.execute(sa.select(schema.audit_events).where(
            schema.audit_events.c.event == "ip_window_closed")).one()
    assert (closed.subject, closed.client_id, closed.ip) == (None, IDP_ID, "127.0.0.1")

    # Another address is not affected.
    token = act.csrf(login.last_page)
    other = act.client.post(f"{login.flow_url}/totp",
                            data={"otp": act.code_now(login), "csrf_token": token},
                            environ_overrides={"REMOTE_ADDR": "192.0.2.7"})
    assert is_callback(other)


def test_the_help_desk_reopens_an_addresss_windows(make_act, clock, stepup):  # noqa: F811
    """An office behind one address that a few mistakes (or a guesser) closed: `stepup ip
    unblock` lets its users in now rather than when the failures age out; with --client, an
    IdP's authentication window after its secret is fixed. Audited, with the operator."""
    act = make_act(ip_limit=2)
    secrets = {name: act.enroll(name)[0].secret for name in ("o1", "o2")}
    clock.advance(30)
    for _ in range(2):
        login = returning(act, "o1", secrets["o1"])
        act.post(login, "totp", otp=wrong_code(secrets["o1"], clock()))
    login = returning(act, "o2", secrets["o2"])
    assert act.post(login, "totp", otp=act.code_now(login)).status_code == 429
    act.push("o2", auth=(IDP_ID, "wrong-secret-guess-1"))
    act.push("o2", auth=(IDP_ID, "wrong-secret-guess-2"))
    assert act.push("o2")[0].status_code == 429

    said = ok(stepup("ip", "unblock", "::ffff:127.0.0.1"))  # as the bridge counts it
    assert said == ("Unblocked 127.0.0.1 (code window): 2 recent failures forgotten; if the "
                    "nodes count in Redis, give this command their STEPUP_REDIS_URL.\n")
    assert is_callback(act.post(login, "totp", otp=act.code_now(login)))
    assert act.push("o2")[0].status_code == 429  # the client's window is apart
    said = ok(stepup("ip", "unblock", "127.0.0.1", "--client", IDP_ID))
    assert "client idp's authentication window): 2 recent failures" in said
    assert act.push("o2")[0].status_code == 201
    with act.bridge.store.begin() as tx:
        trail = tx.audit_events(subject=None, event="ip_unblocked", before=None, since=None,
                                limit=5)
    assert [(e["ip"], e["client_id"], e["detail"]["failures"]) for e in trail] == [
        ("127.0.0.1", IDP_ID, 2), ("127.0.0.1", None, 2)]
    assert all(e["detail"]["operator"] for e in trail)
    assert one_line_error(stepup("ip", "unblock", "office")) == (
        "stepup: error: 'office' is not an IP address (nor an IPv6 /64)")
    # Nothing to forget (a typo, another address): said, not audited; an unknown client: 1.
    # Either way, a Redis this command was not given may still hold the window.
    said = ok(stepup("ip", "unblock", "192.0.2.99"))
    assert said == ("192.0.2.99 has no recent failures in the code window; if the nodes count "
                    "in Redis, give this command their STEPUP_REDIS_URL.\n")
    assert one_line_error(stepup("ip", "unblock", "127.0.0.1", "--client", "nobody"),
                          code=1) == ("stepup: error: no client 'nobody' is registered "
                                      "(stepup client list)")
    with act.bridge.store.begin() as tx:
        assert len(tx.audit_events(subject=None, event="ip_unblocked", before=None, since=None,
                                   limit=5)) == 2
    # --client '' is the window of ids that are not registered (found by review: it said
    # "code window", which it did not clear).
    act.push("o2", auth=("no-such-idp", "guess-1"))
    assert ok(stepup("ip", "unblock", "127.0.0.1", "--client", "")) == (
        "Unblocked 127.0.0.1 (authentication window of unknown client ids): 1 recent failure "
        "forgotten.\n")


def test_an_ipv6_clients_windows_are_its_64(make_act, clock, stepup):  # noqa: F811
    """Each address of a /64 is one subscriber's to use (RFC 6177): a window per address
    would give a guesser 2**64 fresh ones (found by review). The /64 shares one window; the
    next /64 is apart; the audit keeps each whole address; `ip unblock` takes any of them."""
    act = make_act(ip_limit=2)
    secrets = {name: act.enroll(name)[0].secret for name in ("v1", "v2", "v3")}
    clock.advance(30)

    def post_from(login, address: str, otp: str):
        return act.client.post(f"{login.flow_url}/totp",
                               data={"otp": otp, "csrf_token": act.csrf(login.last_page)},
                               environ_overrides={"REMOTE_ADDR": address})
    for name, address in (("v1", "2001:db8:1:2::1"), ("v2", "2001:db8:1:2:ffff::9")):
        login = returning(act, name, secrets[name])
        assert post_from(login, address, wrong_code(secrets[name], clock())).status_code == 400
    login = returning(act, "v3", secrets["v3"])
    assert post_from(login, "2001:db8:1:2::abcd", act.code_now(login)).status_code == 429
    limiter = act.bridge.challenge.attempts.limiter
    with act.bridge.store.begin() as tx:
        assert not limiter.blocked(tx, "2001:db8:1:3::1", clock())
        failed = tx.audit_events(subject="v2", event="failure", before=None, since=None,
                                 limit=1)
    assert failed[0]["ip"] == "2001:db8:1:2:ffff::9"

    said = ok(stepup("ip", "unblock", "2001:db8:1:2::77"))
    assert said.startswith("Unblocked 2001:db8:1:2::/64 (code window): 2 recent failures")
    # What it printed (and the log names) is taken as well; a wider network is not.
    assert ok(stepup("ip", "unblock", "2001:db8:1:2::/64")).startswith(
        "2001:db8:1:2::/64 has no recent failures")
    one_line_error(stepup("ip", "unblock", "2001:db8:1::/48"))
    assert is_callback(post_from(login, "2001:db8:1:2::abcd", act.code_now(login)))

    for address in ("2001:db8:1:2::1", "2001:db8:1:2::2"):
        act.bridge.client_auth.hit(address, IDP_ID, clock())
    assert client_failures(act.bridge, IDP_ID, "2001:db8:1:2::/64") == 2
    with act.bridge.store.begin() as tx:
        assert act.bridge.client_auth.blocked(tx, "2001:db8:1:2::3", IDP_ID, clock())
        assert not act.bridge.client_auth.blocked(tx, "2001:db8:1:3::3", IDP_ID, clock())


def test_ids_past_32_bits_still_count_failures_and_audit_sign_ins(make_act, clock):
    """The failure and audit tables only grow: past 2**31 ids a 32-bit sequence (PostgreSQL
    before 0009) failed every insert, so wrong codes went uncounted (a 500, no lock) and
    every sign-in failed (found by review)."""
    act = make_act(lockout_limit=2)
    first, _ = act.enroll("alice")
    with act.bridge.store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in (schema.ip_failures, schema.audit_events):
                conn.execute(sa.select(sa.func.setval(f"{table.name}_id_seq", 2**31 - 1)))
        else:  # the next rowid follows the largest
            conn.execute(schema.ip_failures.insert().values(id=2**31 - 1, ip="192.0.2.1",
                                                            at=0.0))
            conn.execute(schema.audit_events.insert().values(id=2**31 - 1, at=0.0,
                                                             event="test", detail={}))
    clock.advance(30)
    login = returning(act, "alice", first.secret)
    assert act.post(login, "totp", otp=wrong_code(first.secret, clock())).status_code == 400
    assert user(act, "alice").failures == 1
    clock.advance(30)
    login = returning(act, "alice", first.secret)
    assert is_callback(act.post(login, "totp", otp=totp.code_at(first.secret, clock())))
    with act.bridge.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.min(schema.ip_failures.c.id)).where(
            schema.ip_failures.c.ip == "127.0.0.1")).scalar_one() >= 2**31
        assert conn.execute(sa.select(sa.func.max(schema.audit_events.c.id))).scalar_one() >= 2**31


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


def client_failures(bridge, client_id: str = IDP_ID, ip: str = "127.0.0.1") -> int:
    with bridge.store.autocommit() as tx:
        return tx.count_ip_failures(ip, float("-inf"), client_id)


def push_from(act, address: str, subject: str = "alice"):
    """A push with the right secret from another address, over https (only this machine may
    use plain http)."""
    form = {"response_type": "code", "scope": "openid", "client_id": IDP_ID,
            "redirect_uri": CALLBACK, "nonce": "n", "login_hint": subject,
            "code_challenge": "a" * 43, "code_challenge_method": "S256"}
    return act.client.post("/par", data=form, auth=(IDP_ID, IDP_SECRET),
                           base_url="https://bridge.example",
                           environ_overrides={"REMOTE_ADDR": address})


def test_failed_client_authentication_closes_the_callers_back_channel(make_act, clock, caplog):
    """RFC 6749 §10.10: past the limit an address is refused for that client before any
    credential is looked at, the right one too, so further guesses learn nothing; another
    address is not affected, and the failures age out."""
    act = make_act(ip_limit=3)
    login, callback = act.enroll("alice")
    code = callback_params(callback)["code"]
    guesses = [act.push("alice", auth=(IDP_ID, "wrong-secret-guess-1"))[0],
               act.push("alice", auth=None, client_secret="wrong-secret-guess-2")[0],
               act.redeem(code, login, auth=(IDP_ID, "wrong-secret-guess-3"))]
    assert [r.status_code for r in guesses] == [401, 401, 401]
    assert client_failures(act.bridge) == 3
    [closed] = [r for r in caplog.records if "client authentication failed" in r.getMessage()]
    assert "127.0.0.1" in closed.getMessage()
    assert "wrong-secret-guess" not in caplog.text

    for refused in (act.push("alice")[0], act.redeem(code, login),
                    act.push("alice", auth=(IDP_ID, "wrong-secret-guess-4"))[0]):
        assert refused.status_code == 429
        assert refused.get_json()["error"] == "temporarily_unavailable"
        assert "failed client authentications" in refused.get_json()["error_description"]
        assert refused.headers["Retry-After"] == str(act.bridge.settings.ip_window)
        assert refused.headers["Cache-Control"] == "no-store"
    assert client_failures(act.bridge) == 3  # refused attempts are not counted

    assert push_from(act, "192.0.2.7").status_code == 201

    clock.advance(act.bridge.settings.ip_window)
    assert act.push("alice")[0].status_code == 201


def test_each_client_has_its_own_window_and_unknown_ids_share_one(make_act):
    """One Keycloak serves several realms from one address, a client each: one realm's wrong
    secret must not close another's back channel. Made-up client ids all count together."""
    act = make_act(ip_limit=2)
    with act.bridge.store.begin() as tx:
        tx.add_client(new_client(act.bridge.secrets.pepper, "keycloak-other",
                                 secret="other-secret-0123456789", jwks_uri=None,
                                 redirect_uris=[CALLBACK], redirect_uri_prefixes=[]))
    for _ in range(2):
        assert act.push("alice", auth=(IDP_ID, "not-the-secret-at-all"))[0].status_code == 401
    assert act.push("alice")[0].status_code == 429
    other = act.push("alice", auth=("keycloak-other", "other-secret-0123456789"),
                     client_id="keycloak-other")[0]
    assert other.status_code == 201, other.get_json()

    for made_up in ("nobody-1", "nobody-2"):
        assert act.push("alice", auth=(made_up, "x" * 20), client_id=made_up)[0].status_code \
            == 401
    assert client_failures(act.bridge, "") == 2
    assert act.push("alice", auth=("nobody-3", "x" * 20),
                    client_id="nobody-3")[0].status_code == 429


def test_a_request_that_tries_no_credential_is_not_counted(make_act):
    """No credentials, or Basic credentials without a secret: nothing was guessed, and anyone
    sharing the IdP's address must not be able to close its back channel that way."""
    act = make_act(ip_limit=2)
    for auth in [None, (IDP_ID, ""), ("", "some-secret")] * 2:
        assert act.push("alice", auth=auth)[0].status_code == 401
    assert client_failures(act.bridge) == client_failures(act.bridge, "") == 0
    assert act.push("alice")[0].status_code == 201


def test_a_failure_the_database_cannot_count_still_answers_invalid_client(make_act,
                                                                         monkeypatch, caplog):
    """A 503 only for wrong credentials would tell the caller the guess was wrong."""
    act = make_act()

    def down(*_args):
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(act.bridge.client_auth, "hit", down)
    refused = act.push("alice", auth=(IDP_ID, "not-the-secret-at-all"))[0]
    assert refused.status_code == 401
    assert refused.get_json()["error"] == "invalid_client"
    assert "a failed client authentication was not counted" in caplog.text


def test_client_failures_and_code_guesses_count_apart(make_act, clock):
    """An IdP's bad secret never blocks its users' codes, and users guessing codes behind the
    IdP's address never close its back channel: the test client is one address for both."""
    act = make_act(ip_limit=2)
    first, _ = act.enroll("alice")
    clock.advance(30)
    login = returning(act, "alice", first.secret)
    for _ in range(2):
        assert act.push("alice", auth=(IDP_ID, "not-the-secret-at-all"))[0].status_code == 401
    assert act.push("bob")[0].status_code == 429
    assert act.post(login, "totp", otp=wrong_code(first.secret, clock())).status_code == 400

    clock.advance(act.bridge.settings.ip_window)  # both windows empty again
    login = returning(act, "alice", first.secret)
    for _ in range(2):
        assert act.post(login, "totp", otp=wrong_code(first.secret, clock())).status_code == 400
    assert act.post(login, "totp", otp=act.code_now(login)).status_code == 429
    assert act.push("bob")[0].status_code == 201


def test_successful_client_authentications_are_not_counted(make_act):
    act = make_act(ip_limit=2)
    assert [act.push(f"user-{i}")[0].status_code for i in range(5)] == [201] * 5
    assert client_failures(act.bridge) == 0
