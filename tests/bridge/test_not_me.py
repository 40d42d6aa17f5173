""""This wasn't me" (DESIGN "Events, notifications and the help desk"): the link in every
notice e-mail, mailed through a real SMTP server; GET only shows a confirmation; the
confirmation locks once; an expired, altered or reused link does nothing harmful."""

from __future__ import annotations

import re
import time
from html import unescape as html_unescape

import pytest
import sqlalchemy as sa

from bridge import helpdesk
from bridge.store import Tx, schema
from tests.bridge.conftest import alert, shown, user, wrong_code
from tests.bridge.test_notify import body_of, notifying, receiver, smtp  # noqa: F401
from tests.bridge.test_outbox import outbox


@pytest.fixture
def mailed(notifying, smtp):  # noqa: F811
    """A user enrolled with an address, a second sign-in open, and the notice's link."""
    act = notifying(not_me_ttl=3600)
    act.enroll("nia", email="nia@example.org", ui_locales="fr")
    open_login = act.start("nia")
    act.bridge.sender.run_once()
    [message] = smtp.messages
    link = re.search(r"https://bridge\.example/not-me/\S+", body_of(message)).group(0)
    return act, link.removeprefix("https://bridge.example"), open_login


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_get_shows_a_confirmation_and_changes_nothing(mailed):
    act, path, _ = mailed
    page = act.client.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'lang="fr"' in html and "Verrouiller la validation en deux étapes" in html
    # A user who recognises the event is told there is nothing to do (found by a user probe:
    # the only thing offered was the lock).
    assert "vous n\u2019avez rien à faire" in html
    assert user(act, "nia").locked_at is None
    assert [e["event"] for e in outbox(act, "nia")] == ["enrollment"]


def test_the_page_says_which_notice_it_is_about(mailed, smtp):  # noqa: F811
    """A user with several notices locks for the one they did not do: the page repeats what
    that notice said (event, time, application), in the same words as the mail."""
    act, path, _ = mailed
    html = act.client.get(path).get_data(as_text=True)
    facts = re.findall(r"<p>([^<]+)</p>",
                       re.search(r'<blockquote class="notice">(.*?)</blockquote>', html).group(1))
    assert facts[0] == "La validation en deux étapes a été configurée pour votre compte."
    assert facts[1].startswith("Quand") and facts[1].endswith(" UTC")
    assert facts[2] == "Compte\u00a0: \u2068nia@example\u2069"  # the name the IdP gave
    assert facts[3] == "Connexion pour\u00a0: \u2068idp\u2069"
    mailed_lines = body_of(smtp.messages[0]).splitlines()
    assert all(html_unescape(fact) in mailed_lines for fact in facts)


def test_confirming_locks_once_and_ends_open_sign_ins(mailed, clock):
    act, path, open_login = mailed
    token = csrf_of(act.client.get(path).get_data(as_text=True))
    done = act.client.post(path, data={"csrf_token": token})
    assert done.status_code == 200
    assert "Two-step verification is locked" not in done.get_data(as_text=True)  # it is in French
    # Done as asked: told as news (role=status), not as an error.
    assert 'role="status"' in done.get_data(as_text=True)
    assert 'role="alert"' not in done.get_data(as_text=True)
    assert user(act, "nia").locked_at == clock()
    events = outbox(act, "nia")
    assert [e["event"] for e in events] == ["enrollment", "not_me"]
    assert events[1]["detail"] == {"disowned": events[0]["id"], "disowned_event": "enrollment",
                                   "disowned_event_at": events[0]["at"],
                                   "disowned_client": events[0]["client_id"]}
    # The user acted, from a link: no client did (the trail must not show the IdP's, or the
    # help desk's tool for a disowned reset, as the one that locked).
    assert events[0]["client_id"] == "idp" and events[1]["client_id"] is None
    with act.bridge.store.engine.connect() as conn:  # where the lock came from, for the help desk
        assert conn.execute(sa.select(schema.audit_events.c.ip).where(
            schema.audit_events.c.event == "not_me")).scalar_one() == "127.0.0.1"
    # The sign-in that was open shows the locked page now.
    assert "locked" in act.client.get(open_login.flow_url).get_data(as_text=True).lower()
    # A second use (a double click, a second tab): nothing more happens, and the page says
    # what the first did, as news: the user who clicked twice must not read an alarm.
    locked_on = time.strftime("%H:%M:%S UTC", time.gmtime(clock()))  # the lock's, not the click's
    clock.advance(61)
    again = act.client.post(path, data={"csrf_token": token})
    assert again.status_code == 409
    assert [e["event"] for e in outbox(act, "nia")] == ["enrollment", "not_me"]
    assert 'role="status"' in again.get_data(as_text=True)
    assert 'role="alert"' not in again.get_data(as_text=True)
    assert locked_on in html_unescape(again.get_data(as_text=True))
    # Followed again, the link says so at once, in the user's language, and asks nothing.
    opened = act.client.get(path)
    page = html_unescape(opened.get_data(as_text=True))
    assert opened.status_code == 200 and 'lang="fr"' in page
    assert "Vous l\u2019avez déjà signalé" in page and locked_on in page
    assert 'name="csrf_token"' not in page and 'role="alert"' not in page


def test_the_lock_notice_goes_out_after_the_link_ttl_it_does_not_carry(mailed, smtp, clock):  # noqa: F811
    """The notice of the lock has no "this wasn't me" link, so STEPUP_NOT_ME_TTL (shorter here
    than the give-up time) does not end its retries: the user still learns they are locked
    and should call the help desk."""
    act, path, _ = mailed
    smtp.stop()
    disown(act, path)
    act.bridge.sender.run_once()  # the mail server is down: retried
    clock.advance(3600 + 60)
    smtp.start()
    act.bridge.sender.run_once()
    [*_, notice] = smtp.messages
    assert notice["To"] == "nia@example.org" and "/not-me/" not in body_of(notice)
    assert len(smtp.messages) == 2  # the enrollment's and the lock's


@pytest.mark.parametrize(("webhook_events", "told"), [(None, True), ("enrollment", False)])
def test_the_done_page_says_the_help_desk_was_told_only_when_it_was(notifying, smtp, clock,  # noqa: F811
                                                                    webhook_events, told):
    """Told: the "not_me" event goes to the help desk's webhook receivers. Mail alone (or
    receivers that do not take it) tells nobody but the user."""
    act = notifying(not_me_ttl=3600, **({"webhook_events": webhook_events}
                                        if webhook_events else {}))
    act.enroll("noa", email="noa@example.org")
    path = links(act, smtp)["enrollment"]
    token = csrf_of(act.client.get(path).get_data(as_text=True))
    done = " ".join(act.client.post(path, data={"csrf_token": token}).get_data(
        as_text=True).split())
    assert ("your help desk has been told" in done) == told
    assert ("Contact your help desk: they can unlock it" in done) == (not told)


def test_the_lock_is_lifted_only_by_the_help_desk(mailed, clock):
    act, path, _ = mailed
    token = csrf_of(act.client.get(path).get_data(as_text=True))
    act.client.post(path, data={"csrf_token": token})
    clock.advance(30)
    assert "locked" in act.start("nia").last_page.lower()


def test_the_locked_page_gives_the_lock_its_own_reason(mailed):
    """Not "too many wrong codes": there were none."""
    act, path, _ = mailed
    token = csrf_of(act.client.get(path).get_data(as_text=True))
    act.client.post(path, data={"csrf_token": token})
    page = act.client.get(act.start("nia", ui_locales="en").flow_url).get_data(as_text=True)
    assert alert(page) == "Two-step verification was locked from the link in a security notice."


def test_disowning_a_help_desk_reset_bars_enrollment_until_the_help_desk_lets_it(
        mailed, smtp, clock):  # noqa: F811
    """The reset notice's reason to exist: someone talked the help desk into a reset and now
    enrolls their own authenticator. Confirming "this wasn't me" on it must stop that, though
    the reset left no user row to lock (before: the page said locked, and the attacker's
    enrollment went through)."""
    act, _, _ = mailed
    with act.bridge.store.begin() as tx:
        helpdesk.reset(tx, "nia", clock(), "helpdesk")
    act.bridge.sender.run_once()
    reset_notice = body_of(smtp.messages[-1])
    path = re.search(r"https://bridge\.example(/not-me/\S+)", reset_notice).group(1)
    attacker = act.start("nia")  # the password is theirs: the bridge offers enrollment
    attacker.secret = shown(attacker.last_page, "totp-secret")
    token = csrf_of(act.client.get(path).get_data(as_text=True))
    assert act.client.post(path, data={"csrf_token": token}).status_code == 200
    refused = act.post(attacker, "enroll", otp=act.code_now(attacker))
    assert refused.status_code != 303 and "locked" in attacker.last_page.lower()
    assert "locked" in act.start("nia").last_page.lower()  # no enrollment offered
    with act.bridge.store.begin() as tx:
        shown_to_help_desk = helpdesk.show(tx, "nia", clock(), None)
    assert shown_to_help_desk["factors"] == [] and shown_to_help_desk["locked"]
    assert shown_to_help_desk["enrolled_at"] is None
    # The help desk checks it is Nia and unlocks: she enrolls afresh.
    with act.bridge.store.begin() as tx:
        helpdesk.unlock(tx, "nia", clock(), "helpdesk")
    login = act.start("nia")
    assert "totp-secret" in login.last_page
    login.secret = shown(login.last_page, "totp-secret")
    assert act.post(login, "enroll", otp=act.code_now(login)).status_code == 303


def test_disowning_a_reset_just_after_someone_enrolled_locks_the_new_factor(
        mailed, smtp, clock, monkeypatch):  # noqa: F811
    """The race on PostgreSQL: the enrollment commits after the confirmation looked for a
    row and before it bars the subject. Barring fails on the new row, which is locked."""
    act, _, _ = mailed
    with act.bridge.store.begin() as tx:
        helpdesk.reset(tx, "nia", clock(), "helpdesk")
    act.bridge.sender.run_once()
    path = re.search(r"https://bridge\.example(/not-me/\S+)",
                     body_of(smtp.messages[-1])).group(1)
    act.enroll("nia")  # the attacker's new factor, committed
    token = csrf_of(act.client.get(path).get_data(as_text=True))
    looked = Tx.find_user
    monkeypatch.setattr(Tx, "find_user", lambda tx, subject, for_update=False: None)
    try:
        assert act.client.post(path, data={"csrf_token": token}).status_code == 200
    finally:
        monkeypatch.setattr(Tx, "find_user", looked)
    assert user(act, "nia").locked_at == clock()
    with pytest.raises(helpdesk.FactorsDisowned), act.bridge.store.begin() as tx:
        helpdesk.unlock(tx, "nia", clock(), "helpdesk")  # the factor is the attacker's


def test_a_disowned_use_of_the_factors_is_undone_only_by_a_reset(mailed, clock):
    """Whoever enrolled (or signed in, or rotated the code) holds factors that work: an unlock
    would give them the account back (ASVS V6.3.6). The help desk sees why it is locked, and
    only a reset, new factors for the user, lifts it."""
    act, path, _ = mailed  # the notice of Nia's enrollment
    act.client.post(path, data={"csrf_token": csrf_of(act.client.get(path).get_data(as_text=True))})
    with act.bridge.store.begin() as tx:
        seen = helpdesk.show(tx, "nia", clock(), None)
    assert (seen["lock_reason"], seen["disowned_event"]) == ("not_me", "enrollment")
    with pytest.raises(helpdesk.FactorsDisowned), act.bridge.store.begin() as tx:
        helpdesk.unlock(tx, "nia", clock(), "helpdesk")
    assert user(act, "nia").locked_at is not None
    with act.bridge.store.begin() as tx:
        helpdesk.reset(tx, "nia", clock(), "helpdesk")
    assert "totp-secret" in act.start("nia").last_page


def test_disowning_a_moved_address_locks_until_a_reset(notifying, smtp, clock):  # noqa: F811
    """The kept address hears that notices go elsewhere now. "This wasn't me" there means
    whoever signed in holds a factor that works: locked, and only a reset lifts it."""
    act = notifying(not_me_ttl=3600)
    first, _ = act.enroll("oda", email="oda@example.org")
    clock.advance(30)
    moved = act.start("oda", email="attacker@evil.example")
    moved.secret = first.secret
    act.post(moved, "totp", otp=act.code_now(moved))
    told = links(act, smtp)
    assert set(told) == {"enrollment", "contact_changed"}
    [message] = [m for m in smtp.messages if told["contact_changed"] in body_of(m)]
    assert message["X-Envelope-To"] == "oda@example.org"
    sent = len(smtp.messages)
    disown(act, told["contact_changed"])
    with act.bridge.store.begin() as tx:
        seen = helpdesk.show(tx, "oda", clock(), None)
    assert (seen["lock_reason"], seen["disowned_event"]) == ("not_me", "contact_changed")
    with pytest.raises(helpdesk.FactorsDisowned), act.bridge.store.begin() as tx:
        helpdesk.unlock(tx, "oda", clock(), "helpdesk")
    # Neither address gets the notices now, the lock's nor the reset's with its link: one of
    # them is not Oda's, and whoever holds it could bar Oda with that link. The help desk's
    # webhook still hears of both.
    clock.advance(60)  # the help desk's call comes later (the outbox reads in time order)
    with act.bridge.store.begin() as tx:
        helpdesk.reset(tx, "oda", clock(), "helpdesk")
    act.bridge.sender.run_once()
    assert smtp.messages[sent:] == []
    assert [e["event"] for e in outbox(act, "oda")][-2:] == ["not_me", "helpdesk_reset"]
    with act.bridge.store.engine.begin() as conn:
        assert conn.execute(sa.select(schema.contacts)).all() == []
    # The next sign-in that passes after the help desk's check keeps the address it pushes.
    clock.advance(30)
    act.enroll("oda", email="oda@example.org")
    with act.bridge.store.engine.begin() as conn:
        assert conn.execute(sa.select(schema.contacts.c.email)).scalars().all() == [
            "oda@example.org"]


def links(act, mailbox, sent_before: int = 0) -> dict[str, str]:
    """The not-me link of each notice mailed since ``sent_before``, by event kind."""
    act.bridge.sender.run_once()
    found = {}
    for message in mailbox.messages[sent_before:]:
        if not (found_link := re.search(r"https://bridge\.example(/not-me/\S+)",
                                        body_of(message))):
            continue  # the "locked at your request" notice: nothing left to lock
        path = found_link.group(1)
        event = act.bridge.not_me.event_of(path.rsplit("/", 1)[1])
        found[next(e["event"] for e in outbox(act) if e["id"] == event)] = path
    return found


def disown(act, path: str) -> None:
    token = csrf_of(act.client.get(path).get_data(as_text=True))
    assert act.client.post(path, data={"csrf_token": token}).status_code in (200, 409)


def after_a_burst_of_failures(make, clock, subject: str):
    """An app that mails a burst of two failures, and a user, enrolled with an address, who
    just had one; the app's actions and the user's enrollment."""
    act = make(not_me_ttl=3600, failure_burst=2)
    first, _ = act.enroll(subject, email=f"{subject}@example.org")
    clock.advance(30)
    guessing = act.start(subject)
    for _ in range(2):
        act.post(guessing, "totp", otp=wrong_code(first.secret, clock()))
    return act, first


@pytest.mark.parametrize("order", [("recovery_code_used", "failure_burst"),
                                   ("failure_burst", "recovery_code_used")])
def test_every_disowned_event_counts_not_only_the_last(notifying, smtp, clock,  # noqa: F811
                                                       order):
    """A user who follows every "this wasn't me" link in their inbox: the harmless one last
    must not make the lock over a used recovery code liftable by an unlock."""
    act, first = after_a_burst_of_failures(notifying, clock, "pia")
    clock.advance(30)
    act.post(act.start("pia"), "recovery", recovery_code=first.recovery_code)
    found = links(act, smtp)
    for kind in order:
        disown(act, found[kind])
    with act.bridge.store.begin() as tx:
        seen = helpdesk.show(tx, "pia", clock(), None)
    assert seen["disowned_event"] == "recovery_code_used"
    with pytest.raises(helpdesk.FactorsDisowned), act.bridge.store.begin() as tx:
        helpdesk.unlock(tx, "pia", clock(), "helpdesk")


def test_a_disowned_unlock_after_which_someone_enrolled_needs_a_reset(mailed, smtp, clock):  # noqa: F811
    """The help desk lifted a bar (a disowned reset) and someone enrolled at once; the user
    disowns the unlock. "Help desk unlock" alone leaves factors alone, but these factors were
    set up after it: an unlock would hand them back."""
    act, _, _ = mailed
    with act.bridge.store.begin() as tx:
        helpdesk.reset(tx, "nia", clock(), "helpdesk")
    disown(act, links(act, smtp, len(smtp.messages))["helpdesk_reset"])
    sent = len(smtp.messages)
    with act.bridge.store.begin() as tx:
        assert helpdesk.unlock(tx, "nia", clock(), "helpdesk")  # barred: may enroll again
    clock.advance(30)
    act.enroll("nia")  # not Nia
    disown(act, links(act, smtp, sent)["helpdesk_unlock"])
    with pytest.raises(helpdesk.FactorsDisowned), act.bridge.store.begin() as tx:
        helpdesk.unlock(tx, "nia", clock(), "helpdesk")


def test_a_disowned_unlock_from_before_the_last_one_still_sees_the_changes_after_it(
        notifying, smtp, clock):  # noqa: F811
    """Unlocked (U1), someone spends the recovery code and saves the new one, locked again,
    unlocked again (U2); then the user follows U1's link. The change came between U1 and U2,
    before the latest unlock: an unlock must still be refused, or the new code stays theirs."""
    act = notifying(not_me_ttl=3600, lockout_limit=2)
    victim, _ = act.enroll("uma", email="uma@example.org")

    def lock_and_unlock() -> None:
        guessing = act.start("uma")
        for _ in range(2):
            clock.advance(60)
            act.post(guessing, "totp", otp=wrong_code(victim.secret, clock()))
        assert user(act, "uma").locked_at is not None
        with act.bridge.store.begin() as tx:
            helpdesk.unlock(tx, "uma", clock(), "helpdesk")

    lock_and_unlock()  # U1
    first_unlock = links(act, smtp)["helpdesk_unlock"]
    clock.advance(60)
    thief = act.start("uma")
    assert act.post(thief, "recovery", recovery_code=victim.recovery_code).status_code == 303
    assert act.post(thief, "saved", saved="yes").status_code == 303
    clock.advance(60)
    lock_and_unlock()  # U2
    clock.advance(60)
    disown(act, first_unlock)
    with pytest.raises(helpdesk.FactorsDisowned), act.bridge.store.begin() as tx:
        helpdesk.unlock(tx, "uma", clock(), "helpdesk")
    with act.bridge.store.begin() as tx:
        seen = helpdesk.show(tx, "uma", clock(), None)
    assert (seen["lock_reason"], seen["disowned_event"]) == ("not_me", "helpdesk_unlock")


@pytest.mark.parametrize(("lockouts", "safe"), [(helpdesk.TRAIL - 2, True),
                                                 (helpdesk.TRAIL, False)])
def test_a_disowned_event_older_than_the_trail_read_counts_as_changed(act, clock, lockouts,
                                                                      safe):
    """Changes are looked for in the newest helpdesk.TRAIL events: a disowned event older than
    all of them may have been followed by changes nobody read, so the factors count as
    unsafe (a reset), never as the user's."""
    act.enroll("ivy")
    clock.advance(1)
    with act.bridge.store.begin() as tx:
        disowned_at = clock()
        for _ in range(lockouts):
            clock.advance(1)
            tx.audit("lockout", clock(), subject="ivy")
        tx.audit("not_me", clock(), subject="ivy", disowned="x",
                 disowned_event="helpdesk_unlock", disowned_event_at=disowned_at)
        assert helpdesk.why_locked(tx, "ivy").factors_safe is safe


def test_a_disowned_burst_of_failures_can_be_unlocked(notifying, smtp, clock):  # noqa: F811
    """Someone guessed: the factors are still the user's own, so after checking it is them
    the help desk may unlock, and the old authenticator works again."""
    act, first = after_a_burst_of_failures(notifying, clock, "oli")
    disown(act, links(act, smtp)["failure_burst"])
    with act.bridge.store.begin() as tx:
        seen = helpdesk.show(tx, "oli", clock(), None)
        assert (seen["lock_reason"], seen["disowned_event"]) == ("not_me", "failure_burst")
        helpdesk.unlock(tx, "oli", clock(), "helpdesk")
    clock.advance(30)
    again = act.start("oli")
    again.secret = first.secret
    assert act.post(again, "totp", otp=act.code_now(again)).status_code == 303


def test_disowning_the_not_me_notice_itself_keeps_the_lock_liftable(notifying, smtp, clock):  # noqa: F811
    """The "locked at your request" notice is mailed without a link (locking again is no way
    out: it says to contact the help desk). One mailed with a link by an earlier release
    changes nothing about the factors when followed, so the help desk may still unlock."""
    act, _ = after_a_burst_of_failures(notifying, clock, "ola")
    disown(act, links(act, smtp)["failure_burst"])
    sent = len(smtp.messages)
    assert links(act, smtp, sent) == {}
    notice = body_of(smtp.messages[sent])
    assert "/not-me/" not in notice and "If you need help, contact your help desk." in notice
    [locked] = [e for e in outbox(act, "ola") if e["event"] == "not_me"]
    disown(act, act.bridge.not_me.link(locked).removeprefix("https://bridge.example"))
    with act.bridge.store.begin() as tx:
        assert helpdesk.why_locked(tx, "ola").factors_safe
        helpdesk.unlock(tx, "ola", clock(), "helpdesk")


def test_without_the_csrf_token_nothing_is_locked(mailed):
    act, path, _ = mailed
    assert act.client.post(path).status_code == 400
    assert user(act, "nia").locked_at is None


@pytest.mark.parametrize("alter", [
    lambda p: p[:-2] + ("AA" if not p.endswith("AA") else "BB"),  # the MAC
    lambda p: re.sub(r"\.(\d+)\.", lambda m: f".{int(m.group(1)) + 3600}.", p),  # expiry
    lambda p: p.replace(p.split("/")[-1][:8], "00000000"),  # the event
    lambda p: p + "x" * 200,
    lambda p: p + "%0A",  # the same link and a newline: not the same link
    lambda p: "/not-me/%00%ff",
    lambda p: re.sub(r"\.(\d+)\.", r".0\1.", p),  # the same expiry spelled another way
])
def test_an_altered_link_does_nothing(mailed, alter):
    act, path, _ = mailed
    bad = alter(path)
    assert act.client.get(bad).status_code in (400, 404)
    token = csrf_of(act.client.get(path).get_data(as_text=True))
    assert act.client.post(bad, data={"csrf_token": token}).status_code in (400, 404)
    assert user(act, "nia").locked_at is None
    with act.bridge.store.engine.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.events).where(
            schema.events.c.disowned_at.is_not(None))).scalar_one() == 0


def test_an_expired_link_does_nothing(mailed, clock):
    act, path, _ = mailed
    token = csrf_of(act.client.get(path).get_data(as_text=True))
    clock.advance(3600)
    assert act.client.get(path).status_code == 400
    assert act.client.post(path, data={"csrf_token": token}).status_code == 400
    assert user(act, "nia").locked_at is None


def test_the_link_is_the_same_on_every_retry_and_holds_no_secret(mailed):
    act, path, _ = mailed
    [event] = outbox(act, "nia")
    assert act.bridge.not_me.link(event) == "https://bridge.example" + path
    assert event["id"] in path
