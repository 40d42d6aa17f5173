"""Races a real deployment meets: two sign-ins spending one recovery code or one TOTP step,
and a double-posted form. Each browser is its own test client on its own thread; a barrier
releases them together, and the database decides the winner."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from bridge.challenge.errors import ChallengeError, FlowGone
from bridge.factors import OTP, RECOVERY_CODE, recovery
from bridge.store import schema
from tests.bridge.conftest import (
    CALLBACK,
    SESSION_COOKIE,
    Actions,
    callback_params,
    returning,
    shown,
    wrong_code,
)

ROUNDS = 3  # each race is run a few times, on fresh users, to vary the interleaving


def race(*calls: Callable[[], object]) -> list:
    """Run the calls on their own threads, released at once; return their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        except BaseException as error:  # re-raised on the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    if errors:
        raise errors[0]
    return results


def browser(app, act: Actions) -> Actions:
    """Another browser: its own test client, cookie jar and session."""
    return Actions(app.test_client(), act.bridge, act.clock)


def same_browser(app, act: Actions) -> Actions:
    """A second client sharing ``act``'s session cookie: one browser posting twice."""
    twin = Actions(app.test_client(), act.bridge, act.clock)
    cookie = act.client.get_cookie(SESSION_COOKIE)
    assert cookie is not None
    twin.client.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    return twin


def is_callback(response) -> bool:
    return response.status_code == 303 and response.headers["Location"].startswith(CALLBACK)


def count(act: Actions, table: sa.Table, **where) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    for name, value in where.items():
        query = query.where(table.c[name] == value)
    with act.bridge.store.engine.begin() as conn:
        return conn.execute(query).scalar_one()


def audit_count(act: Actions, subject: str, event: str) -> int:
    return count(act, schema.audit_events, subject=subject, event=event)


def user(act: Actions, subject: str):
    with act.bridge.store.begin() as tx:
        return tx.find_user(subject)


# -- one recovery code, two sign-ins --------------------------------------------------------
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_flows_confirming_one_recovery_code_exactly_one_wins(app, act, round_):
    subject = f"ann-{round_}"
    first, _ = act.enroll(subject)
    browsers = [browser(app, act), browser(app, act)]
    logins = [b.start(subject) for b in browsers]
    for b, login in zip(browsers, logins, strict=True):
        assert b.post(login, "recovery", recovery_code=first.recovery_code).status_code == 303
    staged = [shown(login.last_page, "recovery-code") for login in logins]
    tokens = [b.csrf(login.last_page) for b, login in zip(browsers, logins, strict=True)]
    assert staged[0] != staged[1]

    results = race(*(lambda b=b, login=login: b.post(login, "saved", saved="yes")
                     for b, login in zip(browsers, logins, strict=True)))

    winners = [i for i, response in enumerate(results) if is_callback(response)]
    assert len(winners) == 1, [r.status_code for r in results]
    win, lose = winners[0], 1 - winners[0]
    assert 400 <= results[lose].status_code < 500
    assert "replaced in another sign-in" in logins[lose].last_page
    assert 'role="alert"' in logins[lose].last_page
    assert user(act, subject).recovery_version == 2
    assert audit_count(act, subject, "rotation") == 1
    claims = browsers[win].finish(logins[win], results[win].headers["Location"])
    assert claims["amr"] == [RECOVERY_CODE]

    # Only the winner's new code works afterwards.
    probe = act.start(subject)
    assert act.post(probe, "recovery", recovery_code=staged[lose]).status_code == 400
    assert act.post(probe, "recovery", recovery_code=first.recovery_code).status_code == 400
    assert act.post(probe, "recovery", recovery_code=staged[win]).status_code == 303
    # The loser cannot try again with its staged code either.
    retry = browsers[lose].client.post(f"{logins[lose].flow_url}/saved",
                                       data={"saved": "yes", "csrf_token": tokens[lose]})
    assert retry.status_code == 404
    assert user(act, subject).recovery_version == 2


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_flows_verifying_and_confirming_at_once(app, act, round_):
    """The whole recovery path raced: verify at once, then confirm at once."""
    subject = f"ben-{round_}"
    first, _ = act.enroll(subject)
    browsers = [browser(app, act) for _ in range(3)]
    logins = [b.start(subject) for b in browsers]
    verified = race(*(lambda b=b, login=login: b.post(login, "recovery",
                                                        recovery_code=first.recovery_code)
                      for b, login in zip(browsers, logins, strict=True)))
    assert [r.status_code for r in verified] == [303, 303, 303]  # staging changes nothing
    confirmed = race(*(lambda b=b, login=login: b.post(login, "saved", saved="yes")
                       for b, login in zip(browsers, logins, strict=True)))
    assert sum(is_callback(r) for r in confirmed) == 1
    assert user(act, subject).recovery_version == 2
    # The enrollment's code was never redeemed, so count only recovery-login codes.
    with act.bridge.store.engine.begin() as conn:
        amrs = [row.amr for row in conn.execute(
            sa.select(schema.codes.c.amr).where(schema.codes.c.subject == subject))]
    assert amrs.count([RECOVERY_CODE]) == 1


# -- one TOTP step, several sign-ins -----------------------------------------------------------
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_the_same_totp_code_at_once_succeeds_exactly_once(app, act, clock, round_):
    subject = f"cat-{round_}"
    first, _ = act.enroll(subject)
    clock.advance(30)
    browsers = [browser(app, act) for _ in range(4)]
    logins = [b.start(subject) for b in browsers]
    for i, b in enumerate(browsers):
        # Each on its own address, as browsers behind different nodes are: one address would
        # let the per-address lock serialise the race, and hide a lost compare-and-set.
        b.client.environ_base["REMOTE_ADDR"] = f"192.0.2.{10 + i}"
    code = act.code_now(first)
    results = race(*(lambda b=b, login=login: b.post(login, "totp", otp=code)
                     for b, login in zip(browsers, logins, strict=True)))
    winners = [i for i, r in enumerate(results) if is_callback(r)]
    assert len(winners) == 1, [r.status_code for r in results]
    for i, response in enumerate(results):
        if i != winners[0]:
            assert response.status_code == 400
            assert "already been used" in logins[i].last_page
    assert audit_count(act, subject, "success") == 1
    assert audit_count(act, subject, "replay") == 3
    assert user(act, subject).totp_last_step == int(clock()) // 30
    win = winners[0]
    browsers[win].client.environ_base["REMOTE_ADDR"] = "127.0.0.1"  # the IdP's back channel
    claims = browsers[win].finish(logins[win], results[win].headers["Location"])
    assert claims["amr"] == [OTP]


def test_parallel_guesses_for_many_users_from_one_address_stop_at_its_limit(make_app, clock):
    """The per-address limit holds when wrong codes for different users arrive at once: each
    failure is counted against the limit before the next is judged."""
    app = make_app(ip_limit=3)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    names = [f"ip{i}" for i in range(6)]
    secrets = {name: act.enroll(name)[0].secret for name in names}
    clock.advance(30)
    browsers = [browser(app, act) for _ in names]
    logins = [returning(b, name, secrets[name]) for b, name in zip(browsers, names, strict=True)]
    results = race(*(lambda b=b, login=login, name=name:
                     b.post(login, "totp", otp=wrong_code(secrets[name], clock()))
                     for b, login, name in zip(browsers, logins, names, strict=True)))
    assert sorted(r.status_code for r in results) == [400, 400, 400, 429, 429, 429]
    assert count(act, schema.ip_failures, client_id=None) == 3


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_browsers_enrolling_one_new_user_create_one_user(app, act, round_):
    subject = f"dan-{round_}"
    browsers = [browser(app, act), browser(app, act)]
    logins = [b.start(subject) for b in browsers]
    for b, login in zip(browsers, logins, strict=True):
        login.secret = shown(login.last_page, "totp-secret")
        assert b.post(login, "enroll", otp=b.code_now(login)).status_code == 303
    results = race(*(lambda b=b, login=login: b.post(login, "saved", saved="yes")
                     for b, login in zip(browsers, logins, strict=True)))
    winners = [i for i, r in enumerate(results) if is_callback(r)]
    assert len(winners) == 1, [r.status_code for r in results]
    lose = 1 - winners[0]
    assert 400 <= results[lose].status_code < 500
    assert 'role="alert"' in logins[lose].last_page
    assert count(act, schema.users, subject=subject) == 1
    assert audit_count(act, subject, "enrollment") == 1
    # The stored factor is the winner's.
    winner = logins[winners[0]]
    stored = act.bridge.challenge._totp_secret(user(act, subject))
    assert stored == winner.secret


# -- one browser, one form, posted twice ----------------------------------------------------
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_double_posting_the_totp_form_moves_the_flow_once(app, act, clock, round_):
    subject = f"eve-{round_}"
    first, _ = act.enroll(subject)
    clock.advance(30)
    login = act.start(subject)
    twin = same_browser(app, act)
    token = act.csrf(login.last_page)
    code = act.code_now(first)
    form = {"otp": code, "csrf_token": token}
    results = race(lambda: act.client.post(f"{login.flow_url}/totp", data=form),
                   lambda: twin.client.post(f"{login.flow_url}/totp", data=form))
    assert sum(is_callback(r) for r in results) == 1, [r.status_code for r in results]
    assert all(is_callback(r) or 400 <= r.status_code < 500 for r in results)
    assert audit_count(act, subject, "success") == 1
    # The second post is the user's own double click, not a guess: nothing counted.
    assert user(act, subject).failures == 0
    assert audit_count(act, subject, "replay") == 0
    with act.bridge.store.engine.begin() as conn:
        amrs = [row.amr for row in conn.execute(
            sa.select(schema.codes.c.amr).where(schema.codes.c.subject == subject))]
    assert amrs.count([OTP]) == 2  # the enrollment's and this login's, no third


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_double_posting_the_recovery_form_stages_one_code(app, act, round_):
    subject = f"fay-{round_}"
    first, _ = act.enroll(subject)
    login = act.start(subject)
    twin = same_browser(app, act)
    form = {"recovery_code": first.recovery_code, "csrf_token": act.csrf(login.last_page)}
    results = race(lambda: act.client.post(f"{login.flow_url}/recovery", data=form),
                   lambda: twin.client.post(f"{login.flow_url}/recovery", data=form))
    assert sum(r.status_code == 303 for r in results) == 1, [r.status_code for r in results]
    assert all(r.status_code < 500 for r in results)
    page = act.client.get(login.flow_url).get_data(as_text=True)
    staged = shown(page, "recovery-code")
    assert shown(twin.client.get(login.flow_url).get_data(as_text=True),
                 "recovery-code") == staged
    login.last_page = page
    assert is_callback(act.post(login, "saved", saved="yes"))
    probe = act.start(subject)
    assert act.post(probe, "recovery", recovery_code=staged).status_code == 303


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_double_posting_the_confirmation_rotates_once(app, act, round_):
    subject = f"gil-{round_}"
    first, _ = act.enroll(subject)
    login = act.start(subject)
    act.post(login, "recovery", recovery_code=first.recovery_code)
    staged = shown(login.last_page, "recovery-code")
    twin = same_browser(app, act)
    form = {"saved": "yes", "csrf_token": act.csrf(login.last_page)}
    results = race(lambda: act.client.post(f"{login.flow_url}/saved", data=form),
                   lambda: twin.client.post(f"{login.flow_url}/saved", data=form))
    assert sum(is_callback(r) for r in results) == 1, [r.status_code for r in results]
    assert all(is_callback(r) or 400 <= r.status_code < 500 for r in results)
    assert user(act, subject).recovery_version == 2
    assert audit_count(act, subject, "rotation") == 1
    with act.bridge.store.engine.begin() as conn:
        amrs = [row.amr for row in conn.execute(
            sa.select(schema.codes.c.amr).where(schema.codes.c.subject == subject))]
    assert amrs.count([RECOVERY_CODE]) == 1
    probe = act.start(subject)
    assert act.post(probe, "recovery", recovery_code=staged).status_code == 303


def test_a_double_post_of_the_save_page_never_says_the_other_sign_in_won(app, act):
    """One browser posts "I have saved it" twice (a double click) while the user's row is
    busy: both posts are in before either can rotate. The second must learn that its own sign-in
    finished, not that "another sign-in" replaced the code and the one shown "will never work"
    (it is the user's code now), and nothing records a lost rotation."""
    first, _ = act.enroll("gus")
    login = act.start("gus")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    staged = shown(login.last_page, "recovery-code")
    twin = same_browser(app, act)
    form = {"saved": "yes", "csrf_token": act.csrf(login.last_page)}
    holder = act.bridge.store.engine.connect()
    busy = holder.begin()
    if act.bridge.store.engine.dialect.name == "postgresql":  # another writer holds the row
        holder.execute(sa.select(schema.users).where(schema.users.c.subject == "gus")
                       .with_for_update())
    else:  # SQLite: another writer holds the database
        holder.exec_driver_sql("UPDATE users SET failures = failures WHERE subject = 'gus'")
    results: list = []
    posts = [threading.Thread(target=lambda c=c: results.append(
        c.post(f"{login.flow_url}/saved", data=form))) for c in (act.client, twin.client)]
    for post in posts:
        post.start()
    time.sleep(0.5)  # both are waiting on the row
    busy.commit()
    holder.close()
    for post in posts:
        post.join(30)
    assert sum(is_callback(r) for r in results) == 1, [r.status_code for r in results]
    [loser] = [r for r in results if not is_callback(r)]
    assert 400 <= loser.status_code < 500
    assert "will never work" not in loser.get_data(as_text=True)
    assert audit_count(act, "gus", "rotation_lost") == 0
    probe = act.start("gus")
    assert act.post(probe, "recovery", recovery_code=staged).status_code == 303


# -- the same double post, made deterministic: a step run twice on a stale flow -------------------
def _stale(act: Actions, login):
    flow_id = login.flow_url.rsplit("/", 1)[1]
    with act.bridge.store.begin() as tx:
        return tx.find_flow(flow_id, act.clock())


def test_verifying_a_recovery_code_twice_on_one_flow_stages_and_audits_once(act):
    first, _ = act.enroll("hal")
    login = act.start("hal")
    flow = _stale(act, login)
    challenge = act.bridge.challenge
    challenge.verify_recovery(flow, first.recovery_code, "127.0.0.1")
    staged = challenge.staged_code(_stale(act, login))
    with pytest.raises(FlowGone):
        challenge.verify_recovery(flow, first.recovery_code, "127.0.0.1")  # the stale copy
    assert challenge.staged_code(_stale(act, login)) == staged
    assert user(act, "hal").failures == 0
    assert audit_count(act, "hal", "recovery_code_used") == 1


def test_confirming_twice_on_one_flow_issues_one_code(act):
    first, _ = act.enroll("ida")
    login = act.start("ida")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    flow = _stale(act, login)
    challenge = act.bridge.challenge
    location = challenge.confirm_saved(flow, "127.0.0.1", saved=True)
    assert "code" in callback_params(location)
    with pytest.raises(ChallengeError):
        challenge.confirm_saved(flow, "127.0.0.1", saved=True)
    assert user(act, "ida").recovery_version == 2
    assert audit_count(act, "ida", "rotation") == 1


def test_verifying_one_totp_code_twice_on_one_flow_issues_one_code(act, clock):
    first, _ = act.enroll("jan")
    clock.advance(30)
    login = act.start("jan")
    flow = _stale(act, login)
    challenge = act.bridge.challenge
    code = act.code_now(first)
    assert "code" in callback_params(challenge.verify_totp(flow, code, "127.0.0.1"))
    with pytest.raises(FlowGone, match="already complete"):
        challenge.verify_totp(flow, code, "127.0.0.1")
    assert audit_count(act, "jan", "success") == 1
    assert user(act, "jan").failures == 0 and audit_count(act, "jan", "replay") == 0

    other = act.start("jan")  # the same code on another sign-in is a replay, and counts
    with pytest.raises(ChallengeError, match="already been used"):
        challenge.verify_totp(_stale(act, other), code, "127.0.0.1")
    assert user(act, "jan").failures == 1 and audit_count(act, "jan", "replay") == 1


def test_enrolling_twice_on_one_flow_creates_one_user(act):
    login = act.start("kai")
    login.secret = shown(login.last_page, "totp-secret")
    flow = _stale(act, login)
    challenge = act.bridge.challenge
    challenge.verify_enrollment(flow, act.code_now(login), "127.0.0.1")
    with pytest.raises(FlowGone):
        challenge.verify_enrollment(flow, act.code_now(login), "127.0.0.1")
    saved = _stale(act, login)
    assert "code" in callback_params(challenge.confirm_saved(saved, "127.0.0.1", saved=True))
    with pytest.raises(ChallengeError):
        challenge.confirm_saved(saved, "127.0.0.1", saved=True)
    assert count(act, schema.users, subject="kai") == 1
    assert audit_count(act, "kai", "enrollment") == 1
    assert recovery.normalize(challenge.staged_code(saved)) is not None


# -- nodes starting at once -------------------------------------------------------------------
def test_nodes_starting_at_once_on_a_new_database_make_its_first_keys_once(bridge, monkeypatch):
    """Each checked for an empty key ring and made its own (found by review, on PostgreSQL):
    the first keys made were then "replaced at the epoch" and left the JWKS while their
    node still signed with them. Key making is slowed so both would find the ring empty."""
    from bridge.keyring import SigningKeys

    with bridge.store.begin() as tx:
        for row in tx.signing_keys():
            tx.remove_signing_key(row["kid"])
    add = SigningKeys._add

    def slow_add(self, *args):
        time.sleep(0.5)  # an RSA key takes its time; the other node checks meanwhile
        return add(self, *args)

    monkeypatch.setattr(SigningKeys, "_add", slow_add)
    rings = race(*[lambda: SigningKeys(bridge.store, bridge.secrets.vault, 300,
                                       bridge.clock)] * 2)
    with bridge.store.begin() as tx:
        assert len(tx.signing_keys()) == 2  # one ES256 and one RS256, for both nodes
    assert rings[0].active("ES256").kid == rings[1].active("ES256").kid
