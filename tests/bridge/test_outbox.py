"""The events outbox (DESIGN "Events, notifications and the help desk"): every notified event
is written in the transaction of its change, with a stable id; log lines and metrics come
only from committed events, so a rolled-back change emits nothing."""

from __future__ import annotations

import logging
import uuid

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from bridge.store import schema
from bridge.store.tx import ordered_id
from tests.bridge.conftest import is_callback, returning, shown, wrong_code
from tests.bridge.test_cli import ok, stepup  # noqa: F401  (fixture)


def outbox(act, subject: str | None = None) -> list[dict]:
    query = sa.select(schema.events).order_by(schema.events.c.at)
    if subject is not None:
        query = query.where(schema.events.c.subject == subject)
    with act.bridge.store.engine.begin() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


class AuditLines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[dict] = []

    def emit(self, record):
        self.records.append(record.audit)


@pytest.fixture
def audit_lines():
    handler = AuditLines()
    logger = logging.getLogger("stepup.audit")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_each_notified_event_enters_the_outbox_with_a_stable_id(act, clock, audit_lines):
    first, _ = act.enroll("erin")
    login = returning(act, "erin", first.secret)
    act.post(login, "recovery", recovery_code=first.recovery_code)
    act.post(login, "saved", saved="yes", next="reenroll")
    new_secret = shown(login.last_page, "totp-secret")
    login.secret = new_secret
    assert is_callback(act.post(login, "reenroll", otp=act.code_now(login)))

    rows = outbox(act, "erin")
    assert [r["event"] for r in rows] == ["enrollment", "recovery_code_used", "rotation",
                                          "reenrollment"]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)  # made in this order
    for row in rows:
        assert uuid.UUID(row["id"]).version == 7
        assert row["client_id"] == "idp" and row["done_at"] is None and row["attempts"] == 0
        assert row["next_attempt_at"] == row["at"]
    # The log line of a notified event names its outbox id; others (success) have none.
    logged = {r["event_id"]: r["event"] for r in audit_lines if "event_id" in r}
    assert logged == {r["id"]: r["event"] for r in rows}
    assert "success" not in {r["event"] for r in rows}
    # Nothing secret in the outbox.
    text = repr(rows)
    for secret in (first.secret, new_secret, first.recovery_code):
        assert secret not in text


def test_events_due_together_are_sent_in_the_order_they_happened(act, clock):
    """One transaction's events share their time (a recovery code used, then its rotation):
    the outbox takes them in the order they were made, whatever order the database holds them
    in (here the first is stored again, after the others)."""
    with act.bridge.store.begin() as tx:
        made = [tx.audit(kind, clock(), subject="ord", client_id="idp")
                for kind in ("enrollment", "recovery_code_used", "rotation", "reenrollment")]
    with act.bridge.store.engine.begin() as conn:  # the first one written again: stored last
        first = conn.execute(sa.select(schema.events).where(schema.events.c.id == made[0])
                             ).mappings().one()
        conn.execute(sa.delete(schema.events).where(schema.events.c.id == made[0]))
        conn.execute(sa.insert(schema.events).values(**first))
    with act.bridge.store.begin() as tx:
        taken = tx.claim_events(clock(), 60, "test", 10)
    assert [row["id"] for row in taken] == made


def test_events_never_tried_are_taken_before_overdue_retries(act, clock):
    """A fresh notice does not wait behind a backlog of retries (a receiver down for a day):
    events never tried come first, then the retries by due time."""
    with act.bridge.store.begin() as tx:
        retries = [tx.audit("rotation", clock() - 3600 + i, subject=f"r{i}", client_id="idp")
                   for i in range(3)]
    with act.bridge.store.engine.begin() as conn:
        for i, event_id in enumerate(retries):
            conn.execute(sa.update(schema.events).where(schema.events.c.id == event_id)
                         .values(attempts=2, next_attempt_at=clock() - 60 + i))
    clock.advance(1)
    with act.bridge.store.begin() as tx:
        fresh = tx.audit("lockout", clock(), subject="new", client_id="idp")
    with act.bridge.store.begin() as tx:
        taken = tx.claim_events(clock(), 60, "test", 10)
    assert [row["id"] for row in taken] == [fresh, *retries]


def test_event_ids_sort_in_the_order_they_were_made():
    ids = [ordered_id() for _ in range(10_000)]  # many within one millisecond
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {uuid.UUID(i).version for i in ids} == {7}


def test_a_burst_of_failures_then_a_lockout(make_act, clock):
    act = make_act(lockout_limit=5, failure_burst=3)
    first, _ = act.enroll("finn")
    login = returning(act, "finn", first.secret)
    for _ in range(5):
        clock.advance(120)  # past the growing delay between attempts
        act.post(login, "totp", otp=wrong_code(first.secret, clock()))
    names = [r["event"] for r in outbox(act, "finn")]
    assert names == ["enrollment", "failure_burst", "lockout"]
    burst = outbox(act, "finn")[1]
    assert burst["detail"] == {"failures": 3}


def test_failure_burst_zero_means_never(make_act, clock):
    act = make_act(lockout_limit=5, failure_burst=0)
    first, _ = act.enroll("gil")
    login = returning(act, "gil", first.secret)
    for _ in range(4):
        clock.advance(120)
        act.post(login, "totp", otp=wrong_code(first.secret, clock()))
    assert [r["event"] for r in outbox(act, "gil")] == ["enrollment"]


def test_the_audit_trail_names_each_notified_event_by_its_outbox_id(act):
    """The help-desk API lists the audit trail; webhooks carry the outbox's id (webhook-id,
    and a not_me's ``disowned``): the trail keeps it, so the two can be matched."""
    act.enroll("ida")
    [event] = outbox(act, "ida")
    with act.bridge.store.engine.begin() as conn:
        details = dict(conn.execute(sa.select(schema.audit_events.c.event,
                                              schema.audit_events.c.detail)
                                    .where(schema.audit_events.c.subject == "ida")).all())
    assert details["enrollment"]["event_id"] == event["id"]
    assert "event_id" not in (event["detail"] or {})  # the webhook's data.id says it already


def test_help_desk_unlock_and_reset_enter_the_outbox(make_act, clock, stepup):  # noqa: F811
    act = make_act(lockout_limit=1, failure_burst=0)
    first, _ = act.enroll("hal")
    login = returning(act, "hal", first.secret)
    act.post(login, "totp", otp=wrong_code(first.secret, clock()))
    ok(stepup("user", "unlock", "hal"))
    ok(stepup("user", "reset", "hal", "--yes"))
    assert [r["event"] for r in outbox(act, "hal")] == [
        "enrollment", "lockout", "helpdesk_unlock", "helpdesk_reset"]


@pytest.mark.parametrize("event", ["failure_burst", "not_me", "contact_changed",
                                   "helpdesk_unlock", "helpdesk_reset"])
def test_the_events_no_other_metric_counts_are_counted_by_kind(act, event):
    """Something to alert on (a run of "this wasn't me", moved notices): counted once
    committed, from 0 after a start."""
    before = metric("stepup_user_events_total", event=event)
    with act.bridge.store.begin() as tx:
        tx.audit(event, 1.0, subject="ivy", client_id="idp")
    assert metric("stepup_user_events_total", event=event) == before + 1
    assert REGISTRY.get_sample_value("stepup_user_events_total", {"event": event}) is not None


def test_a_rolled_back_change_emits_nothing(act, audit_lines):
    """Store level: an event recorded in a transaction that then fails leaves no row, no log
    line and no metric."""
    before = metric("stepup_lockouts_total")
    with pytest.raises(RuntimeError), act.bridge.store.begin() as tx:
        tx.audit("lockout", 1.0, subject="ivy", client_id="idp")
        assert audit_lines == []  # not before the commit either
        raise RuntimeError("the change fails after the event was recorded")
    assert outbox(act) == [] and audit_lines == []
    with act.bridge.store.begin() as tx:
        assert tx.audit_trail("ivy") == []
    assert metric("stepup_lockouts_total") == before
    with act.bridge.store.begin() as tx:
        tx.audit("lockout", 1.0, subject="ivy", client_id="idp")
    assert [r["event"] for r in audit_lines] == ["lockout"]
    assert metric("stepup_lockouts_total") == before + 1


def test_an_enrollment_whose_transaction_fails_emits_nothing(act, monkeypatch, audit_lines):
    """Through the pipeline: the database fails after the enrollment was recorded (saving
    the authorization code); the user sees "try again", and nothing was logged, counted or
    queued for a change that did not happen."""
    from bridge.store import Tx

    before = metric("stepup_enrollments_total", kind="enrollment")
    login = act.start("jo")
    login.secret = shown(login.last_page, "totp-secret")
    act.post(login, "enroll", otp=act.code_now(login))

    def database_gone(self, code):
        raise sa.exc.OperationalError("INSERT INTO codes", {}, Exception("server closed"))

    monkeypatch.setattr(Tx, "save_code", database_gone)
    assert act.post(login, "saved", saved="yes").status_code == 503
    assert outbox(act, "jo") == []
    assert "enrollment" not in [r["event"] for r in audit_lines]
    assert metric("stepup_enrollments_total", kind="enrollment") == before
    monkeypatch.undo()
    login.last_page = ""  # "try again": back to the page, which still asks to confirm
    assert is_callback(act.post(login, "saved", saved="yes"))
    assert [r["event"] for r in outbox(act, "jo")] == ["enrollment"]
    assert metric("stepup_enrollments_total", kind="enrollment") == before + 1


def test_a_done_event_leaves_the_outbox_once_its_link_has_expired(make_act, clock):
    """The outbox holds the user's address: an event goes a "this wasn't me" link's lifetime
    after it was done (delivered, or given up: a dead letter stays that long to be looked
    into); one still being delivered stays."""
    act = make_act(not_me_ttl=600)
    for subject in ("ivy", "jon", "kat"):
        act.enroll(subject)
    [delivered], [given_up] = outbox(act, "ivy"), outbox(act, "kat")

    def done(event: dict, at: float, **values) -> None:
        with act.bridge.store.engine.begin() as conn:
            conn.execute(sa.update(schema.events).where(schema.events.c.id == event["id"])
                         .values(done_at=at, **values))

    def sweep() -> None:
        act.bridge._swept_at = 0  # housekeeping runs on the next pushed request
        act.push("anyone")

    done(delivered, clock())
    clock.advance(590)
    done(given_up, clock(), last_error="gave up: webhook: HTTP 500")
    sweep()
    assert len(outbox(act, "ivy")) == 1  # its link still works
    clock.advance(20)
    sweep()
    assert outbox(act, "ivy") == []
    assert outbox(act, "kat")[0]["last_error"].startswith("gave up")  # given up 20 s ago
    assert [r["event"] for r in outbox(act, "jon")] == ["enrollment"]
    clock.advance(600)
    sweep()
    assert outbox(act, "kat") == []
    assert [r["event"] for r in outbox(act, "jon")] == ["enrollment"]  # never done: kept
    assert "enrollment" in [r["event"] for r in audit_trail(act, "ivy")]  # the history stays


def sweep(act) -> None:
    act.bridge._swept_at = 0  # housekeeping runs on the next pushed request
    act.push("anyone")


def test_an_event_no_sender_takes_is_given_up_then_leaves(make_act, clock, monkeypatch):
    """Found by review: with no channel set (the embedded default) no sender runs, and the
    events, the user's address in each, stayed for ever. Once no sender would still send one
    (STEPUP_NOTIFY_GIVE_UP after the event), the sweep gives it up as a sender does; it goes a
    link's lifetime later, as every done event. A few at a time (a year's backlog, at the
    first sweep after an upgrade, would have outlasted the request's statement timeout)."""
    monkeypatch.setattr("bridge.store.tx.SWEEP_BATCH", 2)
    act = make_act(notify_give_up=3600, not_me_ttl=600)
    assert not act.bridge.sender.configured
    for subject in ("lea", "leo", "lia"):
        act.enroll(subject, email=f"{subject}@example.org")
    clock.advance(3590)
    sweep(act)
    [waiting] = outbox(act, "lea")
    assert waiting["done_at"] is None and waiting["email"] == "lea@example.org"
    clock.advance(20)
    sweep(act)
    in_order = sorted(outbox(act), key=lambda e: e["id"])  # the order they came in
    assert [e["done_at"] for e in in_order] == [clock(), clock(), None]  # two a sweep
    [given_up] = outbox(act, "lea")
    assert given_up["last_error"].startswith("gave up")
    sweep(act)
    assert all(e["done_at"] for e in outbox(act))
    clock.advance(601)
    sweep(act)
    assert len(outbox(act)) == 1
    sweep(act)
    assert outbox(act) == []
    assert "enrollment" in [r["event"] for r in audit_trail(act, "lea")]  # the history stays


def audit_trail(act, subject: str) -> list[dict]:
    with act.bridge.store.begin() as tx:
        return tx.audit_trail(subject)
