"""The store runs SQLAlchemy-built statements on the driver's connection (``store/sql.py``):
values come back as SQLAlchemy would give them, errors keep SQLAlchemy's classes without the
parameters, and a transaction is all or nothing. On SQLite and on PostgreSQL. (A broken
connection leaving the pool: tests/production/test_outage.py.)"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bridge.store import User, schema
from bridge.store.tx import audit_events_query
from tests.bridge.conftest import IDP_ID


def _user(subject: str, digest: str = "d" * 64) -> User:
    return User(subject=subject, display_name="Zoë", totp_secret="sealed", totp_last_step=0,
                recovery_digest=digest, recovery_version=1, failures=0, last_failure_at=None,
                locked_at=None, created_at=1.5)


def test_values_come_back_typed(app):
    store = app.extensions["stepup"].store
    with store.autocommit() as tx:
        client = tx.find_client(IDP_ID)
    assert client.allow_enrollment is True and client.admin is False  # not SQLite's 1 and 0
    assert isinstance(client.redirect_uris, list) and client.redirect_uris  # JSON, decoded
    with store.begin() as tx:
        tx.add_user(_user("typed"))
        tx.audit("success", 2.0, subject="typed", client_id=IDP_ID, factor="otp")
    with store.autocommit() as tx:
        user = tx.find_user("typed")
        assert user == _user("typed")
        assert type(user.created_at) is float and type(user.totp_last_step) is int
        assert user.last_failure_at is None
        assert tx.audit_trail("typed")[0]["detail"] == {"factor": "otp"}


def test_duplicate_key_is_integrity_error_without_the_values(app):
    store = app.extensions["stepup"].store
    with store.begin() as tx:
        tx.add_user(_user("twice"))
    with pytest.raises(sa.exc.IntegrityError) as raised, store.begin() as tx:
        tx.add_users([_user("twice", digest="secret-digest-value")])
    assert "secret-digest-value" not in str(raised.value)
    # Inside a savepoint the duplicate is an answer, and the transaction goes on.
    with store.begin() as tx:
        assert tx.add_user(_user("twice")) is False
        assert tx.add_user(_user("third")) is True
    with store.autocommit() as tx:
        assert tx.find_user("third") is not None


def test_a_failed_transaction_leaves_nothing(app):
    """Also after self-committing blocks: PostgreSQL connections are switched to autocommit
    for ``Store.autocommit`` and must be back in transactions when the pool hands them out."""
    store = app.extensions["stepup"].store
    for _ in range(3):
        with store.autocommit() as tx:
            tx.find_user("nobody")
    with pytest.raises(RuntimeError), store.begin() as tx:
        tx.add_user(_user("half"))
        raise RuntimeError("after the first write")
    with store.autocommit() as tx:
        assert tx.find_user("half") is None


def test_trace_counts_statements_and_transactions(app):
    store = app.extensions["stepup"].store
    seen: list[str] = []
    store.trace = seen.append
    try:
        with store.autocommit() as tx:
            tx.find_user("a")
            tx.find_client(IDP_ID)
        with store.begin() as tx:
            tx.find_user("a")
    finally:
        store.trace = None
    assert seen == ["statement", "statement", "transaction", "statement"]


def test_statements_built_per_call(app):
    """The outbox's claim: IN (...) written out, FOR UPDATE SKIP LOCKED."""
    store = app.extensions["stepup"].store
    with store.begin() as tx:
        for subject in ("e1", "e2", "e3"):
            tx.audit("lockout", 1.0, subject=subject, client_id=IDP_ID)
    with store.begin() as tx:
        claimed = tx.claim_events(now=5.0, lease=30.0, claim="me", limit=2)
    assert len(claimed) == 2 and {e["subject"] for e in claimed} <= {"e1", "e2", "e3"}
    with store.engine.connect() as conn:
        claims = conn.execute(sa.select(schema.events.c.claim)).scalars().all()
    assert sorted(claims, key=str) == [None, "me", "me"]


@pytest.mark.parametrize("filters", [{"event": "lockout"},
                                     {"event": "lockout", "leave_out": ("helpdesk_show",)}])
def test_the_help_desks_look_up_by_event_reads_an_index(app, filters):
    """Found by review: ``/admin/api/events?event=…`` read the whole audit trail (0.6 s at two
    million rows on PostgreSQL, and it grows without end). Its plan, with table scans made
    as dear as the database allows, goes through the index by event."""
    engine = app.extensions["stepup"].store.engine
    query = audit_events_query(subject=None, before=None, since=None, limit=50, **filters)
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = conn.exec_driver_sql(f"EXPLAIN {sql}").scalars().all()
        else:
            plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    assert "ix_audit_events_event" in " ".join(plan), plan


def test_a_flow_moves_on_only_with_columns_it_has(app):
    """advance_flow's SET is the names it is given: a misspelt one must not be dropped in
    silence (the stage would move on without the change), nor an empty SET reach the driver."""
    store = app.extensions["stepup"].store
    with store.begin() as tx:
        for changes in ({"stge": "locked"}, {"stage": "locked", "staged_cod": None}, {}):
            with pytest.raises(ValueError, match="not columns of flows"):
                tx.advance_flow("f1", "totp", **changes)


def test_seeded_users_get_the_address_their_idp_pushes(app):
    store = app.extensions["stepup"].store
    with store.begin() as tx:
        tx.add_users([_user("s1"), _user("s2")], emails=["s1@example.org", "s2@example.org"])
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.contacts.c.subject, schema.contacts.c.email)
                            .order_by(schema.contacts.c.subject)).all()
    assert [tuple(r) for r in rows] == [("s1", "s1@example.org"), ("s2", "s2@example.org")]


def test_in_lists_of_converted_values_are_refused(app):
    """IN (...) is written out as separate parameters, which would skip the conversion a
    JSON or boolean column needs: such a statement is refused, not run unconverted."""
    store = app.extensions["stepup"].store
    with pytest.raises(TypeError, match="IN"), store.autocommit() as tx:
        tx._db.execute(sa.select(schema.clients).where(schema.clients.c.admin.in_([True])))


def test_a_connection_left_in_a_transaction_does_not_return_self_committing(app):
    """A self-committing block whose connection is left inside a transaction (as an
    interrupted statement leaves it) ends cleanly, and the next transaction still holds."""
    store = app.extensions["stepup"].store
    with store.autocommit() as tx:
        tx._db.run("BEGIN")
    with pytest.raises(RuntimeError), store.begin() as tx:
        tx.add_user(_user("after"))
        raise RuntimeError("roll back")
    with store.autocommit() as tx:
        assert tx.find_user("after") is None


def test_a_connection_lost_inside_a_savepoint_is_reported_lost(app, monkeypatch):
    """The insert in a savepoint meets a lost connection: the caller gets SQLAlchemy's
    error for it (the "try again" answer), not a failure of the savepoint's clean-up."""
    store = app.extensions["stepup"].store
    with store.begin() as tx:
        tx.add_user(_user("lost"))
    monkeypatch.setattr(store.engine.dialect, "is_disconnect", lambda *args: True)
    with pytest.raises(sa.exc.DBAPIError) as raised, store.begin() as tx:
        tx.add_user(_user("lost"))  # a duplicate, taken here for a lost connection
    assert raised.value.connection_invalidated
    monkeypatch.undo()
    with store.autocommit() as tx:
        assert tx.find_user("lost") is not None


def test_verbs_that_need_a_savepoint_need_a_transaction(app):
    store = app.extensions["stepup"].store
    with pytest.raises(RuntimeError, match="savepoint"), store.autocommit() as tx:
        tx.add_user(_user("outside"))
    with store.autocommit() as tx:
        assert tx.find_user("outside") is None


def test_the_embedded_store_syncs_its_commits(tmp_path):
    """A spent time step, a used recovery code and a confirmed replacement must survive a
    power cut: WAL with synchronous=FULL (2), not NORMAL (1), which may lose the last commits,
    unless a write says its loss is harmless; the connection goes back to the pool syncing."""
    from bridge.store import Store, create_engine

    def level(tx) -> int:  # asked on the transaction's own connection
        return tx._db._connection.driver_connection.execute("PRAGMA synchronous").fetchone()[0]

    store = Store(create_engine(f"sqlite:///{tmp_path / 'stepup.db'}"))
    try:
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
        for _ in range(2):  # and again on the same pooled connection
            with store.begin() as tx:
                assert level(tx) == 2
            with store.begin(durable=False) as tx:
                assert level(tx) == 1
            with store.autocommit() as tx:
                assert level(tx) == 2
            with store.autocommit(durable=False) as tx:
                assert level(tx) == 1
            with store.engine.connect() as connection:  # back in the pool: syncing again
                assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    finally:
        store.engine.dispose()


def test_only_writes_whose_loss_is_harmless_skip_the_disk_sync(act, monkeypatch):
    """Storing a pushed request and opening a flow may be lost to a power cut (the user
    starts again). The code check, which spends the time step, taking the authorization code,
    and an enrollment's secret (shown at once, and scanned) may not."""
    from flask import has_request_context, request

    from bridge.store import Store

    asked: list[tuple[str, bool]] = []
    session = Store._session

    def recording(self, autocommit: bool, durable: bool):
        asked.append((request.path if has_request_context() else "", durable))
        return session(self, autocommit, durable)

    monkeypatch.setattr(Store, "_session", recording)
    login, callback = act.enroll("sync")
    act.finish(login, callback)
    assert ("/authorize", True) in asked  # the secret, after the flow
    assert {path for path, durable in asked if not durable} == {"/par", "/authorize"}
    act.clock.advance(30)
    asked.clear()
    again = act.start("sync")
    again.secret = login.secret
    done = act.post(again, "totp", otp=act.code_now(again))
    assert done.status_code == 303
    act.finish(again, done.headers["Location"])
    assert {path for path, durable in asked if not durable} == {"/par", "/authorize"}
    assert ("/authorize", True) not in asked  # a sign-in opens its flow in one commit
    assert {path for path, durable in asked if durable} >= {"/token", f"{again.flow_url}/totp"}


def test_reads_take_no_write_lock_on_the_embedded_database(tmp_path):
    """While another process holds SQLite's write lock (a long write, a migration), what only
    reads still answers: readiness, the schema check, a help-desk token check (found by
    review: each began BEGIN IMMEDIATE, waited out the lock and answered 503)."""
    import sqlite3

    from bridge import create_app
    from bridge.store import migrate

    app = create_app({"data_dir": tmp_path, "issuer": "https://bridge.example", "timeout": 5},
                     environ={})
    engine = app.extensions["stepup"].store.engine
    holder = sqlite3.connect(tmp_path / "stepup.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # held through every read below
        client = app.test_client()
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.get_json()
        assert migrate.current(engine) == migrate.HEAD
        refused = client.get("/admin/api/users/alice",
                             headers={"Authorization": "Bearer not-a-token"})
        assert refused.status_code == 401, refused.get_json()
        holder.execute("ROLLBACK")
    finally:
        holder.close()
        engine.dispose()
