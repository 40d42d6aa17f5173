"""Delivery of the outbox to a real SMTP server (aiosmtpd) and a real webhook receiver
(werkzeug), both on 127.0.0.1: exactly the expected mail and signed webhook per event, and
nothing lost or sent twice when either is down, refusing, failing or hanging."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from bridge.notify import webhooks
from bridge.notify.mail import CLOSING, IF_NOT_YOU, WHAT
from bridge.settings import ConfigError, load_settings
from bridge.store import NOTIFIED_EVENTS, schema
from tests.bridge.conftest import is_callback, returning, shown, wrong_code
from tests.bridge.test_outbox import metric, outbox, sweep
from tests.receivers import (
    WEBHOOK_SECRET,
    DripServer,
    SmtpSink,
    WebhookReceiver,
    tls_files,
    verify,
)


@pytest.fixture
def smtp():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def receiver():
    hook = WebhookReceiver().start()
    yield hook
    hook.stop()


@pytest.fixture
def notifying(make_act, smtp, receiver):
    """Actions on an app that mails ``smtp`` and posts to ``receiver``, retrying after 10 s."""
    def make(**config):
        return make_act(**{"smtp_url": smtp.url, "smtp_from": "stepup@bridge.example",
                           "webhook_urls": receiver.url, "webhook_secret": WEBHOOK_SECRET,
                           "smtp_timeout": 2, "webhook_timeout": 1, "notify_retry_base": 10,
                           "notify_retry_max": 40, **config})
    return make


def pending(act) -> list[dict]:
    with act.bridge.store.engine.begin() as conn:
        return [dict(r) for r in conn.execute(
            sa.select(schema.events).where(schema.events.c.done_at.is_(None))).mappings()]


def body_of(message) -> str:
    return message.get_payload(decode=True).decode()


def test_each_event_gives_one_mail_and_one_signed_webhook(notifying, smtp, receiver, clock):
    act = notifying()
    first, _ = act.enroll("ann", email="ann@example.org", ui_locales="de")
    login = returning(act, "ann", first.secret)
    act.post(login, "recovery", recovery_code=first.recovery_code)
    new_code = shown(login.last_page, "recovery-code")
    act.post(login, "saved", saved="yes")
    assert act.bridge.sender.run_once() == 3
    assert act.bridge.sender.run_once() == 0  # all done: nothing is sent again
    assert pending(act) == []

    kinds = ["enrollment", "recovery_code_used", "rotation"]
    hooks = [json.loads(e["body"]) for e in receiver.received]
    assert [h["type"] for h in hooks] == [f"stepup.{k}" for k in kinds]
    assert all(e["valid"] for e in receiver.received) and receiver.duplicates == 0
    with act.bridge.store.engine.begin() as conn:
        ids = {r.event: r.id for r in conn.execute(sa.select(schema.events))}
    for entry, kind in zip(receiver.received, kinds, strict=True):
        assert entry["headers"]["Webhook-Id"] == ids[kind]
        assert json.loads(entry["body"])["data"] == {
            "id": ids[kind], "event": kind, "subject": "ann", "client_id": "idp",
            "at": clock()}

    assert len(smtp.messages) == 3
    for message, kind in zip(smtp.messages, kinds, strict=True):
        assert message["X-Envelope-To"] == "ann@example.org"
        assert message["From"] == "stepup@bridge.example"
        assert message["Subject"] == "Sicherheitshinweis zu Ihrem Konto"  # ui_locales=de
        assert message["Message-ID"] == f"<{ids[kind]}@bridge.example>"
        assert message["Content-Language"] == "de"
        text = body_of(message)
        assert "Anmeldung für: \u2068idp\u2069" in text and "UTC" in text
        for secret in (first.secret, first.recovery_code, new_code):
            assert secret not in text
    assert "Wiederherstellungscode wurde zur Anmeldung" in body_of(smtp.messages[1])


def test_a_sign_in_that_only_guesses_cannot_move_the_users_notices(notifying, smtp, clock):
    """Any registered client may push any user with any address: the address is kept only
    once the sign-in passes a factor. The lockout a guesser causes is told to the user's own
    address; a sign-in that passes moves the address, before its own notice is written."""
    act = notifying(lockout_limit=3)
    ivy, _ = act.enroll("ivy", email="ivy@example.org")
    clock.advance(30)
    guessing = act.start("ivy", email="mallory@evil.example", ui_locales="fr")
    for _ in range(3):
        act.post(guessing, "totp", otp=wrong_code(ivy.secret, clock()))
    joe, _ = act.enroll("joe", email="joe@old.example")
    clock.advance(30)
    moved = act.start("joe", email="joe@new.example")
    act.post(moved, "recovery", recovery_code=joe.recovery_code)
    act.bridge.sender.run_once()
    sent = [(m["X-Envelope-To"], m["Content-Language"]) for m in smtp.messages]
    assert ("ivy@example.org", "en") in sent and len(sent) >= 4  # enrollment, lockout, ...
    assert all(to != "mallory@evil.example" and language == "en" for to, language in sent)
    assert sent[-1] == ("joe@new.example", "en")  # recovery_code_used, to the new address


def test_a_new_address_is_told_to_the_kept_one(notifying, smtp, receiver, clock):
    """Whoever passed a factor and can change the address the IdP pushes must not take the
    user's notices away unseen: the kept address hears, in its language, that notices go to
    another one from now on (never which); the sign-in's own notices go to the new one. The
    same address in another case is no change."""
    act = notifying()
    first, _ = act.enroll("kai", email="kai@old.example", ui_locales="de")
    clock.advance(30)
    same = act.start("kai", email="KAI@Old.Example", ui_locales="de")  # kept as now spelt
    same.secret = first.secret
    assert is_callback(act.post(same, "totp", otp=act.code_now(same)))
    moved = act.start("kai", email="kai@new.example", ui_locales="fr")
    act.post(moved, "recovery", recovery_code=first.recovery_code)
    act.bridge.sender.run_once()

    with act.bridge.store.engine.begin() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(schema.events).where(
            schema.events.c.subject == "kai").order_by(schema.events.c.at)).mappings()]
    assert [r["event"] for r in rows] == ["enrollment", "contact_changed", "recovery_code_used"]
    changed = rows[1]
    [told] = [m for m in smtp.messages if m["Message-ID"].startswith(f"<{changed['id']}@")]
    assert (told["X-Envelope-To"], told["Content-Language"]) == ("KAI@Old.Example", "de")
    assert "new.example" not in body_of(told) and "/not-me/" in body_of(told)
    [used] = [m for m in smtp.messages if m["Message-ID"].startswith(f"<{rows[2]['id']}@")]
    assert (used["X-Envelope-To"], used["Content-Language"]) == ("kai@new.example", "fr")
    [hook] = [json.loads(e["body"]) for e in receiver.received
              if e["headers"]["Webhook-Id"] == changed["id"]]
    assert hook["type"] == "stepup.contact_changed" and "@" not in json.dumps(hook)


def test_the_outbox_backlog_and_the_version_are_scraped(notifying, smtp, receiver):
    """A channel down shows as a growing backlog on /metrics while the node itself is fine;
    the running version is there to tell nodes apart during an upgrade."""
    act = notifying()

    def scraped(name: str) -> str:
        text = act.client.get("/metrics").get_data(as_text=True)
        return next(line for line in text.splitlines() if line.startswith(name))

    assert scraped("stepup_outbox_pending_events") == "stepup_outbox_pending_events 0.0"
    assert scraped("stepup_build_info").startswith('stepup_build_info{version="')
    act.enroll("bea", email="bea@example.org")
    assert scraped("stepup_outbox_pending_events") == "stepup_outbox_pending_events 1.0"
    act.bridge.sender.run_once()
    assert smtp.messages and receiver.by_id
    assert scraped("stepup_outbox_pending_events") == "stepup_outbox_pending_events 0.0"


def test_no_address_means_webhooks_only(notifying, smtp, receiver):
    act = notifying()
    act.enroll("bo")
    act.bridge.sender.run_once()
    assert smtp.messages == [] and len(receiver.by_id) == 1 and pending(act) == []


def test_an_address_that_is_not_one_is_ignored_and_logged_without_it(notifying, smtp, caplog):
    act = notifying()
    with caplog.at_level(logging.WARNING, "stepup"):
        act.enroll("cy", email="cy@@evil <x>")
    act.bridge.sender.run_once()
    assert smtp.messages == []
    assert "ignored an 'email' that is not an address" in caplog.text
    assert "evil" not in caplog.text


@pytest.mark.parametrize("address", [
    "dee@example.org", "d" * 64 + "@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 57 + ".org"],
    ids=["short", "254-characters"])
def test_an_address_with_a_final_newline_is_ignored(notifying, smtp, receiver, address):
    """A pattern ending in "$" let it through: the blank line after "To:" ended the headers
    (subject, date and id in the body), and PostgreSQL refused 254 characters plus one."""
    assert len(address) <= 254
    act = notifying()
    act.enroll("dee", email=address + "\n")
    act.bridge.sender.run_once()
    assert smtp.messages == [] and len(receiver.by_id) == 1 and pending(act) == []


@pytest.mark.parametrize("address", [
    "=?utf-8?q?c?=@example.org",  # read as c@example.org
    "=?utf-8?b?dmljdGltQHguY29tLCBi?=@example.org",  # shown as "victim@x.com, b@example.org"
    "=?utf-8?b?YQ0KQmNjOiB4QGV2aWwuY29t?=@example.org",  # a CR LF: every attempt failed
    "=?utf-8?q??=@example.org",  # the parser raised
], ids=["other-mailbox", "a-list", "crlf", "empty-word"])
def test_an_address_the_mail_header_would_read_otherwise_is_ignored(notifying, smtp, receiver,
                                                                    address):
    """The mail parser decodes an RFC 2047 encoded word even in an address: the notice would
    go to another mailbox than the one pushed, or never go."""
    act = notifying()
    act.enroll("dee", email=address)
    act.bridge.sender.run_once()
    assert smtp.messages == [] and len(receiver.by_id) == 1 and pending(act) == []


def test_dots_in_a_row_are_mailed_as_given(notifying, smtp):
    """Old Japanese mobile addresses have them; the header and the envelope keep them."""
    act = notifying()
    act.enroll("taro", email="taro..yamada@docomo.example")
    act.bridge.sender.run_once()
    [message] = smtp.messages
    assert message["To"] == message["X-Envelope-To"] == "taro..yamada@docomo.example"


@pytest.mark.parametrize(("address", "mailed"), [
    ("joerg@müller.example", "joerg@xn--mller-kva.example"),
    ("ann@straße.example", "ann@xn--strae-oqa.example"),  # IDNA 2003 would say strasse
    ("bo@ÉCOLE.example", "bo@xn--cole-9oa.example"),  # UTS 46 maps case, as browsers do
], ids=["umlaut", "sharp-s", "upper-case"])
def test_an_internationalised_domain_is_mailed_in_its_ascii_form(notifying, smtp, address,
                                                                 mailed):
    """Keycloak keeps such an address as the user typed it; every mail server routes the
    domain's A-labels, and none without SMTPUTF8 takes the Unicode."""
    act = notifying()
    act.enroll("ida", email=address)
    act.bridge.sender.run_once()
    [message] = smtp.messages
    assert message["To"] == message["X-Envelope-To"] == mailed


@pytest.mark.parametrize("address", ["jörg@example.org", "a@☃.example", "a@ex ample.de",
                                     "a@bad\u200d.example", "a@" + "ü" * 250 + ".de"],
                         ids=["unicode-local-part", "symbol", "space", "joiner", "long"])
def test_an_address_no_mail_server_takes_is_ignored(notifying, smtp, receiver, address):
    act = notifying()
    act.enroll("dee", email=address)
    act.bridge.sender.run_once()
    assert smtp.messages == [] and len(receiver.by_id) == 1 and pending(act) == []


def test_an_address_stored_before_the_check_is_not_mailed(notifying, smtp, receiver, clock,
                                                          caplog):
    act = notifying()
    act.enroll("old", email="old@example.org")
    act.bridge.sender.run_once()
    with act.bridge.store.begin() as tx:
        tx.set_contact("old", "=?utf-8?q?c?=@example.org", None, 1.0)
        tx.audit("lockout", clock(), subject="old", client_id="idp")
    act.bridge.sender.run_once()
    assert len(smtp.messages) == 1 and len(receiver.by_id) == 2 and pending(act) == []
    assert "not one the bridge mails" in caplog.text and "=?utf-8" not in caplog.text


@pytest.mark.parametrize(("issuer", "sender"), [
    ("https://bücher.example", "stepup@xn--bcher-kva.example"),
    ("https://straße.example", "stepup@xn--strae-oqa.example"),  # IDNA 2003: strasse.example
], ids=["umlaut", "sharp-s"])
def test_the_default_sender_of_an_internationalised_issuer_is_ascii(issuer, sender):
    """A mail server without SMTPUTF8 refused every notice from stepup@bücher.example; the
    domain is the one browsers reach, not Python's IDNA 2003 reading of it."""
    assert load_settings({}, {"issuer": issuer}).smtp_sender == sender


@pytest.mark.parametrize(("issuer", "sender"), [
    ("http://[::1]:5000", "stepup@[IPv6:::1]"),
    ("http://[0:0:0:0:0:0:0:1]:5000", "stepup@[IPv6:::1]"),
    ("http://127.0.0.1:5000", "stepup@[127.0.0.1]"),
])
def test_the_default_sender_of_an_issuer_at_an_address_is_an_address_literal(issuer, sender):
    """stepup@::1 is no address: the From header came out empty (<>). RFC 5321 §4.1.3."""
    assert load_settings({}, {"issuer": issuer}).smtp_sender == sender
    message = EmailMessage()
    message["From"] = sender
    assert message["From"].addresses[0].domain == sender.split("@", 1)[1]


def test_only_the_configured_events_are_sent(notifying, smtp, receiver, clock):
    act = notifying(lockout_limit=3, failure_burst=2, email_events="lockout",
                    webhook_events="failure_burst,lockout")
    first, _ = act.enroll("di", email="di@example.org")
    login = returning(act, "di", first.secret)
    for _ in range(3):
        clock.advance(120)
        act.post(login, "totp", otp=wrong_code(first.secret, clock()))
    act.bridge.sender.run_once()
    assert [json.loads(e["body"])["type"] for e in receiver.received] == [
        "stepup.failure_burst", "stepup.lockout"]
    assert len(smtp.messages) == 1 and "locked" in body_of(smtp.messages[0])
    assert pending(act) == []


def test_a_failing_receiver_gets_it_later_and_the_mail_goes_once(notifying, smtp, receiver,
                                                                   clock, caplog):
    act = notifying()
    receiver.mode = "fail"
    failed = metric("stepup_notifications_total", channel="webhook", outcome="failed")
    delivered = metric("stepup_notifications_total", channel="webhook", outcome="delivered")
    act.enroll("ed", email="ed@example.org")
    with caplog.at_level(logging.WARNING, "stepup.notify"):
        act.bridge.sender.run_once()
    assert len(smtp.messages) == 1  # the mail went; only the webhook waits
    [event] = pending(act)
    assert event["attempts"] == 1 and event["sent"] == ["email"]
    assert event["last_error"] == f"webhook: 127.0.0.1:{receiver.port}: HTTP 500"
    assert event["next_attempt_at"] == clock() + 10
    assert "ed@example.org" not in caplog.text and "HTTP 500" in caplog.text
    clock.advance(5)
    assert act.bridge.sender.run_once() == 0  # not due yet
    clock.advance(5)
    act.bridge.sender.run_once()  # second failure: the wait doubles
    assert pending(act)[0]["next_attempt_at"] == clock() + 20
    receiver.mode = "ok"
    clock.advance(20)
    act.bridge.sender.run_once()
    assert pending(act) == [] and len(receiver.by_id) == 1 and len(smtp.messages) == 1
    assert len(receiver.received) == 3
    assert metric("stepup_notifications_total", channel="webhook", outcome="failed") == (
        failed + 2)
    assert metric("stepup_notifications_total", channel="webhook",
                  outcome="delivered") == delivered + 1


def test_a_stopped_receiver_and_a_stopped_mail_server_lose_nothing(notifying, smtp, receiver,
                                                                     clock):
    act = notifying()
    smtp.stop()
    receiver.stop()  # connection refused
    act.enroll("flo", email="flo@example.org")
    act.bridge.sender.run_once()
    [event] = pending(act)
    assert event["sent"] == [] and "email: ConnectionRefusedError" in event["last_error"]
    smtp.start()
    receiver.start()
    for _ in range(3):  # backoff capped at notify_retry_max
        clock.advance(40)
        act.bridge.sender.run_once()
    assert pending(act) == []
    assert len(smtp.messages) == 1 and len(receiver.by_id) == 1 and receiver.duplicates == 0


def test_a_channel_failing_past_the_give_up_time_is_a_dead_letter(notifying, smtp, receiver,
                                                                  clock, caplog):
    """Retried with backoff until ``notify_give_up`` after the event, then given up: done,
    its last error kept and counted, never sent again; the channel that took it keeps it."""
    act = notifying(notify_give_up=3600)
    receiver.mode = "fail"
    abandoned = metric("stepup_notifications_total", channel="webhook", outcome="abandoned")
    act.enroll("gil", email="gil@example.org")
    act.bridge.sender.run_once()
    clock.advance(3590)
    act.bridge.sender.run_once()
    [event] = pending(act)  # still retried just before the give-up time
    assert event["attempts"] == 2
    assert event["last_error"] == f"webhook: 127.0.0.1:{receiver.port}: HTTP 500"
    clock.advance(40)
    with caplog.at_level(logging.ERROR, "stepup.notify"):
        assert act.bridge.sender.run_once() == 1
    assert pending(act) == []
    with act.bridge.store.engine.begin() as conn:
        [dead] = conn.execute(sa.select(schema.events).where(
            schema.events.c.done_at.is_not(None),
            schema.events.c.last_error.is_not(None))).mappings()
    assert dead["last_error"] == f"gave up: webhook: 127.0.0.1:{receiver.port}: HTTP 500"
    assert dead["attempts"] == 3
    assert dead["sent"] == ["email"] and len(smtp.messages) == 1
    [line] = [r.getMessage() for r in caplog.records
              if r.name == "stepup.notify" and r.levelno == logging.ERROR]
    assert "gave up after 3 attempts" in line and "gil@example.org" not in line
    assert metric("stepup_notifications_total", channel="webhook",
                  outcome="abandoned") == abandoned + 1
    tried = len(receiver.received)
    receiver.mode = "ok"
    clock.advance(7200)
    assert act.bridge.sender.run_once() == 0 and len(receiver.received) == tried


def test_a_notice_first_due_after_the_give_up_time_is_never_sent(notifying, smtp, receiver,
                                                                   clock):
    """Notifications were off, or no sender ran, for a while: when one runs, month-old
    notices (their "this wasn't me" links expired) are dead letters, not a burst of mail."""
    act = notifying(notify_give_up=3600)
    act.enroll("old", email="old@example.org")
    clock.advance(30 * 86400)
    assert act.bridge.sender.run_once() == 1
    assert smtp.messages == [] and receiver.received == [] and pending(act) == []
    with act.bridge.store.engine.begin() as conn:
        [dead] = conn.execute(sa.select(schema.events)).mappings()
    assert dead["last_error"].startswith("gave up: email: not sent, older than")
    assert dead["sent"] in (None, []) and dead["attempts"] == 1


@pytest.mark.parametrize(("reply", "final"), [
    ("550 5.1.1 <addr>: no such user", True), ("451 4.3.0 <addr>: try again later", False),
    ("554 5.7.1 <addr>: Relay access denied", False), ("552 5.2.2 <addr>: mailbox full", False),
    ("550 <addr>: rejected", False)])
def test_a_refused_recipient_is_named_by_its_reply_code_and_a_missing_one_is_not_retried(
        make_act, smtp, clock, caplog, reply, final):
    """The mail server refused the address: the log and the event say with which codes (a
    550 5.1.1 from a 451, a 554 5.7.1), never the reply's text, which echoes the address back.
    A mailbox that does not exist (5.1.x) ends the event; a relay or policy refusal (the
    set-up's, soon fixed), a full mailbox or a temporary one is retried."""
    act = make_act(smtp_url=smtp.url, smtp_from="stepup@bridge.example", smtp_timeout=2,
                   notify_retry_base=10)
    smtp.refuse_rcpt = reply
    act.enroll("ivo", email="ivo@example.org")
    with caplog.at_level(logging.WARNING, "stepup.notify"):
        act.bridge.sender.run_once()
    with act.bridge.store.engine.begin() as conn:
        [event] = conn.execute(sa.select(schema.events)).mappings()
    code = " ".join(reply.split()[:2]) if "." in reply.split()[1] else reply.split()[0]
    if final:
        assert event["done_at"] is not None
        assert event["last_error"] == f"gave up: email: SMTPRecipientsRefused {code}, for good"
    else:
        assert event["done_at"] is None and event["next_attempt_at"] == clock() + 10
        assert event["last_error"] == f"email: SMTPRecipientsRefused {code}"
    assert f"SMTPRecipientsRefused {code}" in caplog.text
    assert "ivo@example.org" not in caplog.text and smtp.messages == []


def test_a_mailbox_refused_for_good_is_not_asked_again_while_a_webhook_retries(
        notifying, smtp, receiver, clock):
    """The mailbox does not exist (550 5.1.1) and the webhook fails: the event is retried
    for the webhook, and the mail server is not asked about that mailbox again each time."""
    act = notifying()
    smtp.refuse_rcpt, receiver.mode = "550 5.1.1 <addr>: no such user", "fail"
    act.enroll("ivo", email="ivo@example.org")
    for _ in range(3):
        act.bridge.sender.run_once()
        clock.advance(40)
    assert smtp.refused == 1 and len(receiver.received) == 3
    [event] = pending(act)
    assert "email: refused for good on an earlier attempt" in event["last_error"]
    receiver.mode = "ok"
    act.bridge.sender.run_once()
    assert smtp.refused == 1 and pending(act) == []
    with act.bridge.store.engine.begin() as conn:
        [dead] = conn.execute(sa.select(schema.events)).mappings()
    assert dead["last_error"] == "gave up: email: refused for good on an earlier attempt"


def test_a_sender_whose_claim_was_taken_sends_no_further_channel(
        notifying, receiver, clock, monkeypatch):
    """The sender's claim lapsed while it posted to the first receiver (a clock step, a long
    stall), and another sender took the event: the first one stops there, and the second
    sends what is left, so the receivers after the first do not get it twice."""
    second = WebhookReceiver().start()
    try:
        act = notifying(webhook_urls=f"{receiver.url},{second.url}")
        act.enroll("ann")
        post = webhooks.post
        taken: list[str] = []

        def post_then_lapse(url, *args, **kwargs):
            post(url, *args, **kwargs)
            if not taken:  # after the first receiver took it, the claim lapses and is taken
                clock.advance(act.bridge.sender.lease + 1)
                with act.bridge.store.begin() as tx:
                    taken.extend(e["id"] for e in tx.claim_events(
                        clock(), act.bridge.sender.lease, "other-sender", 1))

        monkeypatch.setattr(webhooks, "post", post_then_lapse)
        act.bridge.sender.run_once()
        assert taken and len(receiver.received) == 1 and second.received == []
        monkeypatch.setattr(webhooks, "post", post)
        clock.advance(act.bridge.sender.lease + 1)  # the other sender died too: its claim lapses
        act.bridge.sender.run_once()
        # The first receiver's delivery was not recorded under the lost claim: it comes again
        # (at least once, de-duplicated by id); the second gets it once.
        assert len(receiver.by_id) == 1 and len(second.received) == 1 and pending(act) == []
    finally:
        second.stop()


def test_a_mail_whose_not_me_link_has_expired_is_not_sent_on_a_retry(notifying, smtp,
                                                                      receiver, clock):
    """STEPUP_NOT_ME_TTL shorter than the give-up time: a retry after the link expired would
    mail the user a link that only says it does not work. The mail is given up instead; the
    webhook, which carries no link, went on the first attempt."""
    act = notifying(not_me_ttl=600)
    smtp.stop()  # refused: the mail waits for a retry
    act.enroll("lea", email="lea@example.org")
    act.bridge.sender.run_once()
    [event] = pending(act)
    assert [key.split(":")[0] for key in event["sent"]] == ["webhook"]
    smtp.start()
    clock.advance(600)
    assert act.bridge.sender.run_once() == 1
    assert smtp.messages == [] and pending(act) == []
    with act.bridge.store.engine.begin() as conn:
        [dead] = conn.execute(sa.select(schema.events)).mappings()
    assert dead["last_error"] == ("gave up: email: not sent, its \"this wasn't me\" link has "
                                  "expired (STEPUP_NOT_ME_TTL)")


def test_a_hanging_receiver_times_out_and_a_deduplicating_one_keeps_it_once(
        notifying, receiver, clock):
    act = notifying()
    receiver.mode, receiver.hang_s = "hang", 3  # past STEPUP_WEBHOOK_TIMEOUT=1
    act.enroll("gus")
    act.bridge.sender.run_once()
    assert (f"webhook: 127.0.0.1:{receiver.port}: no whole answer within 1 s"
            in pending(act)[0]["last_error"])
    receiver.mode = "ok"
    clock.advance(10)
    act.bridge.sender.run_once()
    assert pending(act) == []
    # The hung request finished late on the receiver's side: it got the event twice under one
    # id and kept it once.
    for _ in range(50):
        if len(receiver.received) == 2 and receiver.duplicates == 1:
            break
        time.sleep(0.1)
    assert len(receiver.by_id) == 1 and receiver.duplicates == 1


def test_a_lapsed_claim_is_taken_by_another_sender(notifying, receiver, clock):
    """A sender that died after claiming: its claim lapses and the event is due again; the
    dead sender's late report changes nothing."""
    act = notifying()
    act.enroll("hu")
    with act.bridge.store.begin() as tx:
        [claimed] = tx.claim_events(clock(), act.bridge.sender.lease, "dead-sender", 1)
    assert act.bridge.sender.run_once() == 0  # held by the other sender
    clock.advance(act.bridge.sender.lease)
    assert act.bridge.sender.run_once() == 1
    assert pending(act) == [] and len(receiver.by_id) == 1
    with act.bridge.store.begin() as tx:
        assert not tx.finish_event(claimed["id"], "dead-sender", sent=[], done_at=None,
                                   attempts=1, next_attempt_at=clock(), error="late")
    assert pending(act) == []


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("smtp_url", "smtp://", "STEPUP_SMTP_URL has no host"),
    ("smtp_url", "http://mail.example", "STEPUP_SMTP_URL must start with smtp://"),
    ("webhook_urls", "http://hooks.example/in", "must use https (http only on localhost)"),
    ("webhook_events", "lockout,nope", "STEPUP_WEBHOOK_EVENTS: unknown event 'nope'"),
    ("email_events", "enrolment", "STEPUP_EMAIL_EVENTS: unknown event 'enrolment'"),
    ("smtp_url", "smtp://u:pw@mail.example", "a user and password need smtp+starttls://"),
    ("smtp_url", "smtp://u:@mail.example", "a user and password need smtp+starttls://"),
    ("smtp_from", "not an address", "STEPUP_SMTP_FROM must be an e-mail address"),
    ("smtp_from", "stepup@example.com, boss@evil.example", "must be an e-mail address"),
    ("smtp_from", "stepup@example.com\tx", "must be an e-mail address"),
    ("smtp_from", "=?utf-8?q?boss?=@example.com", "must be an e-mail address"),
    # requests would read the host as hooks.example, urlsplit as localhost
    ("webhook_urls", "http://hooks.example\\@localhost/in", "an entry that is not a URL"),
    ("issuer", "https://" + "ü" * 64 + ".example", "STEPUP_ISSUER's host is not a valid"),
    ("notify_give_up", "3000", "STEPUP_NOTIFY_GIVE_UP must be between 3600 and 7776000"),
    ("webhook_events", " , ", "STEPUP_WEBHOOK_EVENTS lists no event"),
    # checked when set, not first when receivers are added months later
    ("webhook_secret", "whsec_short", "STEPUP_WEBHOOK_SECRET is not valid base64"),
    ("redis_url", "http://cache.example", "STEPUP_REDIS_URL must start with redis://"),
])
def test_bad_notification_settings_stop_start_up_with_one_line(setting, value, message):
    config = {setting: value}
    if setting == "webhook_urls":
        config["webhook_secret"] = WEBHOOK_SECRET
    with pytest.raises(ConfigError) as error:
        load_settings({}, config)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("url", ["smtp://u:pw@127.0.0.1:2525", "smtp+starttls://u:pw@mail.example",
                                 "smtps://u:pw@mail.example", "smtp://mail.example"])
def test_smtp_passwords_cross_the_network_only_over_tls(url):
    assert load_settings({}, {"smtp_url": url}).smtp_url == url


def test_giving_up_before_the_longest_retry_wait_stops_start_up():
    with pytest.raises(ConfigError) as error:
        load_settings({}, {"notify_give_up": "3600", "notify_retry_max": "7200"})
    assert str(error.value) == (
        "STEPUP_NOTIFY_GIVE_UP must not be below STEPUP_NOTIFY_RETRY_MAX")


def test_a_webhook_needs_a_whsec_secret_and_the_error_never_shows_it():
    with pytest.raises(ConfigError, match="STEPUP_WEBHOOK_SECRET must be whsec_"):
        load_settings({}, {"webhook_urls": "https://hooks.example/in"})
    with pytest.raises(ConfigError, match="24 to 64 bytes") as error:
        load_settings({}, {"webhook_urls": "https://hooks.example/in",
                           "webhook_secret": "whsec_c2hvcnQ="})
    assert "c2hvcnQ" not in str(error.value)
    assert "secret-pw" not in repr(load_settings({}, {"smtp_url": "smtps://u:secret-pw@mx"}))


def test_during_a_secret_rotation_each_delivery_carries_both_signatures(make_act, clock):
    """Receivers move to the new secret one at a time: each takes the event meanwhile."""
    new = "whsec_" + base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()
    old_receiver, new_receiver = WebhookReceiver().start(), WebhookReceiver(new).start()
    try:
        act = make_act(webhook_urls=f"{old_receiver.url},{new_receiver.url}",
                       webhook_secret=f"{new} {WEBHOOK_SECRET}", webhook_timeout=1)
        with act.bridge.store.begin() as tx:
            tx.audit("lockout", clock() - 60, subject="kim", client_id="idp")
        assert act.bridge.sender.run_once() == 1
        for hook in (old_receiver, new_receiver):
            [entry] = hook.received
            assert entry["valid"]
            assert len(entry["headers"]["Webhook-Signature"].split()) == 2
    finally:
        old_receiver.stop()
        new_receiver.stop()
    # A receiver with neither secret refuses it: the check is not vacuous.
    headers = {name.lower(): value for name, value in entry["headers"].items()}
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    assert verify(new, headers, entry["body"], time.time())
    assert not verify(other, headers, entry["body"], time.time())


@pytest.mark.parametrize("event", sorted(NOTIFIED_EVENTS))
def test_every_event_kind_has_its_mail_and_webhook(notifying, smtp, receiver, clock, event):
    act = notifying()
    at = clock() - 60  # a minute ago: due, not stale, and a webhook timestamp receivers take
    with act.bridge.store.begin() as tx:
        tx.set_contact("kim", "kim@example.org", None, 1.0)
        event_id = tx.audit(event, at, subject="kim", client_id="idp")
    assert act.bridge.sender.run_once() == 1
    [message] = smtp.messages
    assert WHAT[event] in " ".join(body_of(message).split())
    day = datetime.fromtimestamp(at, UTC)
    assert f"{day:%b} {day.day}, {day.year}" in body_of(message)  # "Nov 14, 2023"
    # A help-desk action's client is the help desk's tool, which no user signed in to; a
    # "this wasn't me" lock was no sign-in either.
    assert ("Sign-in for: \u2068idp\u2069" in body_of(message)) == (
        not event.startswith("helpdesk_") and event != "not_me")
    assert "Account:" not in body_of(message)  # kim has no factor, so no name from an IdP
    # A link to lock, but where the notice says it is locked at the user's own request.
    assert (f"https://bridge.example/not-me/{event_id}." in body_of(message)) == (
        event != "not_me")
    assert " ".join(CLOSING.get(event, IF_NOT_YOU).split()) in " ".join(body_of(message).split())
    [entry] = receiver.received
    assert entry["valid"] and entry["headers"]["Webhook-Id"] == event_id
    assert json.loads(entry["body"])["type"] == f"stepup.{event}"


def test_a_notice_names_the_account_and_the_client_by_its_registered_name(notifying, smtp):
    """Found by a user probe: "Sign-in for: keycloak-acme" named the client by its id, and
    nothing said which account, for whoever has several. The client's registered name and the
    name the IdP gave the user (``preferred_username``) are what people recognise."""
    act = notifying()
    with act.bridge.store.begin() as tx:
        tx.name_client("idp", "Acme staff portal")
    act.enroll("ann", email="ann@example.org", preferred_username="Ann Lee")
    assert act.bridge.sender.run_once() == 1
    lines = body_of(smtp.messages[0]).splitlines()
    # Each name set apart (bidi isolates): a Latin name keeps its order in an Arabic notice.
    assert "Account: \u2068Ann Lee\u2069" in lines
    assert "Sign-in for: \u2068Acme staff portal\u2069" in lines
    assert "idp" not in " ".join(lines)


def test_a_notice_names_only_the_enrollment_it_was_about(notifying, clock):
    """Found by a review: the account was read from the user's row as it is now, so after a
    help-desk reset whoever enrolled next (the one who talked the help desk into it) put their
    own words on the older notices' "this wasn't me" page, the victim's way to decide."""
    from bridge import helpdesk

    act = notifying()
    act.enroll("zed", email="zed@example.org", preferred_username="Zed Victim")
    clock.advance(60)
    with act.bridge.store.begin() as tx:
        helpdesk.reset(tx, "zed", clock(), None)
    clock.advance(60)
    act.enroll("zed", preferred_username="IT test, no action needed, do not lock")
    notices = outbox(act, "zed")
    with act.bridge.store.begin() as tx:
        seen = [(e["event"], tx.find_event(e["id"])["account"]) for e in notices]
    assert seen == [("enrollment", None), ("helpdesk_reset", None),
                    ("enrollment", "IT test, no action needed, do not lock")]  # only its own


# aiosmtpd cannot tell that an smtps socket is TLS, and warns about AUTH on it.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("tls", ["starttls", "smtps"])
def test_mail_over_tls_with_smtp_auth(make_act, tmp_path, monkeypatch, tls):
    """STARTTLS and implicit TLS, the server's certificate verified (trusted here through
    SSL_CERT_FILE, as an operator's private CA would be), and SMTP AUTH with a password that
    needs URL-encoding."""
    certs = tls_files(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs[0]))
    sink = SmtpSink(tls=tls, certs=certs, login=("relay user", "p@ss:w/rd")).start()
    try:
        act = make_act(smtp_url=sink.url, smtp_timeout=5)
        act.enroll("tls", email="tls@example.org")
        assert act.bridge.sender.run_once() == 1
        assert pending(act) == [] and len(sink.messages) == 1
        assert sink.logins == ["relay user"]
    finally:
        sink.stop()


def test_a_wrong_smtp_password_is_retried_and_never_logged(make_act, caplog, tmp_path,
                                                           monkeypatch):
    certs = tls_files(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs[0]))
    sink = SmtpSink(tls="starttls", certs=certs, login=("relay", "right-pw")).start()
    try:
        act = make_act(smtp_url=sink.url.replace("right-pw", "wrong-pw"), smtp_timeout=5)
        act.enroll("pw", email="pw@example.org")
        with caplog.at_level(logging.WARNING, "stepup.notify"):
            act.bridge.sender.run_once()
        assert sink.messages == [] and "SMTPAuthenticationError" in pending(act)[0][
            "last_error"]
        assert "wrong-pw" not in caplog.text and "pw@example.org" not in caplog.text
    finally:
        sink.stop()


def test_an_unexpected_mail_error_is_retried_and_the_webhook_still_goes(
        make_act, receiver, tmp_path, monkeypatch):
    """smtplib cannot send a password that is not ASCII (UnicodeEncodeError, which no
    except clause named): the event used to stall for ever, its webhook never sent."""
    certs = tls_files(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs[0]))
    sink = SmtpSink(tls="starttls", certs=certs, login=("relay", "right-pw")).start()
    try:
        act = make_act(smtp_url=sink.url.replace("right-pw", "p%C3%A4sswort"), smtp_timeout=5,
                       webhook_urls=receiver.url, webhook_secret=WEBHOOK_SECRET,
                       notify_retry_base=10, notify_retry_max=40)
        act.enroll("uni", email="uni@example.org")
        assert act.bridge.sender.run_once() == 1
        [event] = pending(act)
        assert event["attempts"] == 1 and "UnicodeEncodeError" in event["last_error"]
        assert len(receiver.by_id) == 1 and sink.messages == []
    finally:
        sink.stop()


def test_a_mail_server_that_never_answers_times_out_and_gets_it_later(notifying, smtp,
                                                                      receiver, clock):
    """A listener that accepts the connection but never greets: the attempt ends at
    STEPUP_SMTP_TIMEOUT; the webhook is not held up, and the mail goes once the server
    works."""
    import socket

    act = notifying()
    smtp.stop()
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind(("127.0.0.1", smtp.port))
    silent.listen(8)  # the kernel completes the handshake; nobody ever speaks
    try:
        act.enroll("hank", email="hank@example.org")
        started = time.monotonic()
        act.bridge.sender.run_once()
        assert 2 <= time.monotonic() - started < 10  # STEPUP_SMTP_TIMEOUT=2
    finally:
        silent.close()
    [event] = pending(act)
    # smtplib reports its read timeout as a disconnection.
    assert event["last_error"] == "email: SMTPServerDisconnected"
    assert len(receiver.by_id) == 1  # the webhook went all the same
    smtp.start()
    clock.advance(10)
    act.bridge.sender.run_once()
    assert pending(act) == [] and len(smtp.messages) == 1 and len(receiver.received) == 1

def overdue_retries(act, clock, count: int) -> list[str]:
    """``count`` events of the last hour, tried three times already and overdue: a backlog."""
    with act.bridge.store.begin() as tx:
        ids = [tx.audit("rotation", clock() - 3600 + i, subject=f"old-{i}", client_id="idp")
               for i in range(count)]
    with act.bridge.store.engine.begin() as conn:
        conn.execute(sa.update(schema.events).where(schema.events.c.id.in_(ids)).values(
            attempts=3, next_attempt_at=clock() - 60, last_error="webhook: earlier"))
    return ids


def test_a_dead_receiver_costs_one_timeout_per_rest_and_a_fresh_notice_goes_first(
        notifying, smtp, receiver, clock):
    """A receiver that takes the connection and never answers, and a backlog of retries: a
    fresh event is taken first (its mail and its webhooks at once), the dead receiver gets
    one call per rest period (``notify_retry_base``), not one per event, and the working
    receiver gets every event. Once the dead one answers again, the backlog goes to it."""
    dead = WebhookReceiver().start()
    dead.mode, dead.hang_s = "hang", 30  # past STEPUP_WEBHOOK_TIMEOUT=1
    try:
        act = notifying(webhook_urls=f"{dead.url},{receiver.url}")
        backlog = overdue_retries(act, clock, 20)
        act.enroll("new", email="new@example.org")
        failed = metric("stepup_notifications_total", channel="webhook", outcome="failed")
        started = time.monotonic()
        assert act.bridge.sender.run_once() == 21
        assert time.monotonic() - started < 5  # one timeout, not 21
        assert len(dead.received) == 1  # one call on the wire to the dead receiver
        assert json.loads(dead.received[0]["body"])["type"] == "stepup.enrollment"
        assert len(smtp.messages) == 1 and smtp.messages[0]["To"] == "new@example.org"
        got = [json.loads(e["body"])["data"]["id"] for e in receiver.received]
        assert got[1:] == backlog and len(receiver.by_id) == 21  # the fresh one first
        # A skipped call is a failed attempt of the event, not a delivery attempt.
        assert metric("stepup_notifications_total", channel="webhook",
                      outcome="failed") == failed + 1
        waiting = {e["id"]: e for e in pending(act)}
        assert len(waiting) == 21
        assert waiting[backlog[0]]["attempts"] == 4
        assert waiting[backlog[0]]["last_error"] == (
            f"webhook: 127.0.0.1:{dead.port}: no whole answer within 1 s "
            "(not tried: it failed 0 s ago)")
        dead.mode = "ok"
        clock.advance(40)  # the backlog's next retry (notify_retry_max), past the rest
        assert act.bridge.sender.run_once() == 21
        assert pending(act) == [] and len(dead.by_id) == 21 and len(receiver.received) == 21
    finally:
        dead.stop()


def test_a_mail_server_out_of_reach_rests_and_the_webhooks_still_go(notifying, smtp,
                                                                       receiver, clock):
    """The SMTP server takes the connection and never greets: the first notice waits its
    timeout, the next ones in the rest period record a failed attempt without a call, and
    their webhooks go at once."""
    import socket

    act = notifying()
    smtp.stop()
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind(("127.0.0.1", smtp.port))
    silent.listen(8)
    try:
        for name in ("ann", "bob", "cy"):
            act.enroll(name, email=f"{name}@example.org")
        started = time.monotonic()
        assert act.bridge.sender.run_once() == 3
        assert time.monotonic() - started < 4  # one STEPUP_SMTP_TIMEOUT (2 s), not three
    finally:
        silent.close()
    assert len(receiver.by_id) == 3
    errors = sorted(e["last_error"] for e in pending(act))
    assert errors == ["email: SMTPServerDisconnected"] + 2 * [
        "email: SMTPServerDisconnected (not tried: it failed 0 s ago)"]
    smtp.start()
    clock.advance(10)
    assert act.bridge.sender.run_once() == 3
    assert pending(act) == [] and len(smtp.messages) == 3


def test_a_refusing_receiver_is_not_rested(notifying, receiver, clock):
    """An answer that refuses (HTTP 500) says the receiver is up: every event is tried."""
    act = notifying()
    receiver.mode = "fail"
    act.enroll("ada")
    act.enroll("ben")
    act.bridge.sender.run_once()
    assert len(receiver.received) == 2


def test_a_notice_kept_from_a_resting_channel_is_still_given_up_in_time(notifying, receiver,
                                                                         clock):
    """A channel at rest is a failure like any other: past STEPUP_NOTIFY_GIVE_UP the event is
    a dead letter, counted as abandoned."""
    act = notifying(notify_give_up=3600)
    receiver.mode, receiver.hang_s = "hang", 30
    act.enroll("old")
    act.bridge.sender.run_once()  # times out: attempt 1
    clock.advance(3600)
    abandoned = metric("stepup_notifications_total", channel="webhook", outcome="abandoned")
    act.enroll("new")  # taken first; its call times out and the receiver rests
    assert act.bridge.sender.run_once() == 2
    assert len(receiver.received) == 2
    [old] = outbox(act, "old")
    assert old["done_at"] is not None and old["last_error"] == (
        f"gave up: webhook: 127.0.0.1:{receiver.port}: no whole answer within 1 s "
        "(not tried: it failed 0 s ago)")
    assert metric("stepup_notifications_total", channel="webhook",
                  outcome="abandoned") == abandoned + 1
    assert [e["subject"] for e in pending(act)] == ["new"]


#: A webhook answer that takes about 12 s at DripServer's pace.
SLOW_ANSWER = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


def cut_off(act, drip: DripServer, subject: str, **enroll) -> dict:
    """Enroll ``subject`` (an event) and run the sender once: ``drip`` must have been cut off
    mid-answer. Returns the event, still pending."""
    try:
        act.enroll(subject, **enroll)
        act.bridge.sender.run_once()
        assert drip.cut.wait(10) and not drip.finished.is_set()
    finally:
        drip.stop()
    [event] = pending(act)
    return event


def webhook_to(make_act, url: str):
    return make_act(webhook_urls=url, webhook_secret=WEBHOOK_SECRET, webhook_timeout=1)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_receiver_answering_byte_by_byte_is_cut_off_at_the_webhook_timeout(
        make_act, tmp_path, monkeypatch, scheme):
    """Each read gets a byte long before a socket timeout, so only a bound on the whole answer
    ends it: STEPUP_WEBHOOK_TIMEOUT (1 s here) bounds the whole exchange, over TLS too, and the
    sender goes on to the next event instead of holding its claim until it lapses."""
    certs = None
    if scheme == "https":
        certs = tls_files(tmp_path)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs[0]))
    drip = DripServer(SLOW_ANSWER, certs=certs)
    act = webhook_to(make_act, f"{scheme}://127.0.0.1:{drip.port}/hook")
    event = cut_off(act, drip, "dora")
    assert event["last_error"] == f"webhook: 127.0.0.1:{drip.port}: no whole answer within 1 s"


def test_a_mail_server_greeting_byte_by_byte_is_cut_off_at_the_smtp_timeout(make_act,
                                                                           receiver):
    """The same for SMTP, from the greeting on: STEPUP_SMTP_TIMEOUT (2 s here) bounds the
    whole session; the webhook still goes."""
    drip = DripServer(b"220 drip.example.org ESMTP at a very slow pace\r\n")
    act = make_act(smtp_url=f"smtp://127.0.0.1:{drip.port}", smtp_from="stepup@bridge.example",
                   smtp_timeout=2, webhook_urls=receiver.url, webhook_secret=WEBHOOK_SECRET,
                   webhook_timeout=1)
    event = cut_off(act, drip, "sid", email="sid@example.org")
    assert event["last_error"] == "email: SMTPServerDisconnected"
    assert len(receiver.by_id) == 1


def slow_resolver(monkeypatch, seconds: float) -> threading.Semaphore:
    """The system resolver takes ``seconds`` for "localhost" (answered 127.0.0.1) and for every
    reverse look-up (smtplib's of this host's own name); the semaphore is released once per
    answer."""
    import socket

    resolve, reverse, answered = socket.getaddrinfo, socket.gethostbyaddr, threading.Semaphore(0)

    def slow(lookup, name, *args, **kwargs):
        time.sleep(seconds)
        try:
            return lookup(name, *args, **kwargs)
        finally:
            answered.release()

    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: (
        slow(resolve, "127.0.0.1", *args, **kwargs) if host == "localhost"
        else resolve(host, *args, **kwargs)))
    monkeypatch.setattr(socket, "gethostbyaddr", lambda name: slow(reverse, name))
    return answered


def test_a_deadline_spent_before_the_connection_exists_still_cuts_it(make_act, monkeypatch):
    """Time spent before the socket exists (a slow name look-up here) counts: the connection
    that comes after the deadline is shut down at once, and does not get a full timeout."""
    slow_resolver(monkeypatch, 1.2)  # past STEPUP_WEBHOOK_TIMEOUT=1, within its grace
    drip = DripServer(SLOW_ANSWER)
    event = cut_off(webhook_to(make_act, f"http://localhost:{drip.port}/hook"), drip, "lena")
    assert event["last_error"] == f"webhook: localhost:{drip.port}: no whole answer within 1 s"


def test_a_resolver_slower_than_the_timeout_does_not_hold_the_sender(make_act, monkeypatch,
                                                                     receiver, smtp):
    """The resolver's wait is one no socket shutdown ends: the sender stops waiting at the
    timeouts (1 s each here) and their grace, not when the resolver answers (3 s a look-up:
    the e-mail's own host name, then the server's; the webhook's); and the exchanges left
    behind send nothing once it does."""
    answered = slow_resolver(monkeypatch, 3)
    act = make_act(smtp_url=f"smtp://localhost:{smtp.port}", smtp_from="stepup@bridge.example",
                   smtp_timeout=1, webhook_urls=f"http://localhost:{receiver.port}/hook",
                   webhook_secret=WEBHOOK_SECRET, webhook_timeout=1)
    act.enroll("mona", email="mona@example.org")
    started = time.monotonic()
    act.bridge.sender.run_once()
    assert time.monotonic() - started < 6.5  # 2 x (1 s + grace), against 9 s for the resolver
    [event] = pending(act)
    assert event["last_error"] == ("email: not done within 1 s; webhook: "
                                   f"localhost:{receiver.port}: no whole answer within 1 s")
    for _ in range(3):  # the reverse look-up, then both exchanges' forward ones
        assert answered.acquire(timeout=15)
    time.sleep(1)  # what the left-behind exchanges would send, they would send by now
    assert smtp.messages == [] and receiver.received == []


_NOW = str(int(time.time()))


@pytest.mark.parametrize("headers", [
    {},
    {"webhook-id": "msg_1", "webhook-timestamp": _NOW},
    {"webhook-id": "msg_1", "webhook-timestamp": "soon", "webhook-signature": "v1,x"},
    {"webhook-id": "msg_1", "webhook-timestamp": "9" * 5000, "webhook-signature": "v1,x"},
    {"webhook-id": "msg_1", "webhook-timestamp": "\u0661\u0662", "webhook-signature": "v1,x"},
    {"webhook-id": "msg_1", "webhook-timestamp": _NOW, "webhook-signature": "v1,\u00e9t\u00e9"},
    {"webhook-id": "\udc80", "webhook-timestamp": _NOW, "webhook-signature": "v1,x"},
])
def test_the_documented_receiver_says_false_to_hostile_headers_never_raises(headers):
    assert verify(WEBHOOK_SECRET, headers, b"{}", time.time()) is False


def test_a_stopping_worker_starts_no_new_delivery(notifying):
    """gunicorn's worker_exit stops the worker's sender thread (a delivery cut off half-way
    would go out twice); the same hook run in the master, for a worker already gone, stops
    nothing there (the workers forked after it would inherit the stop)."""
    import os
    from types import SimpleNamespace

    from bridge.server import _worker_exit

    act = notifying()
    thread = act.bridge.sender.start()
    app = SimpleNamespace(application=act.client.application)
    _worker_exit(None, SimpleNamespace(app=app, pid=os.getpid() + 1))  # in the master
    assert thread.is_alive()
    _worker_exit(None, SimpleNamespace(app=app, pid=os.getpid()))
    assert not thread.is_alive()


def test_where_a_sender_runs_the_sweep_leaves_its_events_to_it(notifying, clock):
    """The sender gives up what it could not deliver, counted and logged (the dead-letter
    alert): the sweep does not take its turn (found by review)."""
    act = notifying(notify_give_up=3600)
    act.enroll("lou", email="lou@example.org")
    clock.advance(7200)
    sweep(act)
    [event] = outbox(act, "lou")
    assert event["done_at"] is None
