"""The verbs of one transaction (:class:`Tx`): everything the bridge keeps goes through
them; each single-use thing is taken by one conditional DELETE or UPDATE."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from .records import (
    NOTIFIED_EVENTS,
    Client,
    Code,
    Flow,
    User,
    spent_key,
    token_digest,
)
from .schema import (
    access_tokens,
    audit_events,
    client_assertions,
    clients,
    codes,
    contacts,
    events,
    flows,
    ip_failures,
    pushed_requests,
    secret_checks,
    signing_keys,
    users,
)
from .sql import Row, Session, Statement
from .statements import (
    ACCEPT_STEP,
    ADVANCE_FLOW,
    CLEAR_FAILURES,
    CONSUME_PUSHED,
    COUNT_CLIENT_FAILURES,
    COUNT_IP_FAILURES,
    END_FLOW,
    FIND_CLIENT,
    FIND_CLIENT_HELD,
    FIND_CONTACT,
    FIND_FLOW,
    FIND_USER,
    FIND_USER_FOR_UPDATE,
    FINISH_FLOW,
    FLOW_COLUMNS,
    INSERT_AUDIT,
    INSERT_CODE,
    INSERT_CONTACT,
    INSERT_EVENT,
    INSERT_FLOW,
    INSERT_IP_FAILURE,
    INSERT_PUSHED,
    INSERT_USER,
    LOCK_IP,
    NAMED_EVENTS,
    REDEEM_CODE,
    REDEEMED_CODE,
    ROTATE_RECOVERY,
    SEALED,
    SIGNING_KEYS,
    UPDATE_CONTACT,
    UPDATE_SAME_CONTACT,
)

#: PostgreSQL advisory lock key held while a node makes the first signing keys ("STEPUK").
SIGNING_KEYS_LOCK = 0x53544550554B


class Tx:
    """One database transaction and the verbs the bridge uses inside it.

    Writers take rows in one order — the user's row, then their flows, then their codes — so
    two transactions on one user never wait on each other in a cycle (PostgreSQL deadlock).
    """

    def __init__(self, db: Session, operator: str | None = None):
        self._db = db
        self._operator = operator
        #: Audit records to log once the transaction commits (``Store.begin``).
        self.committed_audit: list[dict[str, Any]] = []

    # -- clients ------------------------------------------------------------------------
    def add_client(self, client: Client) -> None:
        self._db.execute(sa.insert(clients).values(**client.__dict__))

    def find_client(self, client_id: str, hold: bool = False) -> Client | None:
        """``hold`` keeps the row from changing until the transaction ends (PostgreSQL): a
        removal or a new registration waits for what this transaction saves under the old
        one, and then removes it too (:meth:`remove_client`); other holders do not wait."""
        query = FIND_CLIENT_HELD if hold else FIND_CLIENT
        row = self._db.execute(query, {"b_client_id": client_id}).first()
        return Client(**row) if row else None

    def name_client(self, client_id: str, name: str | None) -> bool:
        return self._changed(sa.update(clients).where(clients.c.client_id == client_id)
                             .values(client_name=name))

    def list_clients(self) -> list[Client]:
        rows = self._db.execute(sa.select(clients).order_by(clients.c.client_id)).rows
        return [Client(**row) for row in rows]

    def remove_client(self, client_id: str) -> bool:
        """The registration goes, and with it everything it was given: access tokens, pushed
        requests, open sign-ins and unredeemed codes. A client registered again (a new secret
        after a leak, a redirect URI taken away) starts with none, so nothing taken under the
        old registration still works or still reaches an old redirect URI. A recovery code
        staged in a dropped sign-in never worked; the user's code stays the one they have.
        The registration's row goes first: on PostgreSQL that waits for a transaction holding
        it (``find_client(hold=True)``), and the deletes after it then see what that
        one saved. A request pushed under the old registration but saved after this (its
        client checked just before) names that registration, and opens no sign-in."""
        removed = self._changed(sa.delete(clients).where(clients.c.client_id == client_id))
        for table in (access_tokens, pushed_requests, flows, codes):
            self._db.execute(sa.delete(table).where(table.c.client_id == client_id))
        return removed

    # -- pushed authorization requests (RFC 9126) ---------------------------------------
    def save_pushed(self, request_uri: str, client_id: str, params: dict, expires_at: float):
        self._db.execute(INSERT_PUSHED, {"uri_digest": token_digest(request_uri),
                                          "client_id": client_id, "params": params,
                                          "expires_at": expires_at})

    def consume_pushed(self, request_uri: str, client_id: str, now: float) -> dict | None:
        """Take a pushed request once; None if unknown, used, expired or another client's."""
        row = self._db.execute(CONSUME_PUSHED, {"b_digest": token_digest(request_uri)}).first()
        if row is None or row["client_id"] != client_id or row["expires_at"] <= now:
            return None
        return row["params"]

    # -- login flows ----------------------------------------------------------------------
    def save_flow(self, flow: Flow) -> None:
        self._db.execute(INSERT_FLOW, flow.__dict__)

    def find_flow(self, flow_id: str, now: float) -> Flow | None:
        row = self._db.execute(FIND_FLOW, {"b_flow_id": flow_id, "b_now": now}).first()
        return Flow(**row) if row else None

    def find_ended_flow(self, flow_id: str, now: float) -> Flow | None:
        """A flow that ran out or was finished, while it is kept (``purge_expired``): for what
        its page says of it only."""
        row = self._db.execute(sa.select(flows).where(flows.c.flow_id == flow_id,
                                                      flows.c.expires_at <= now)).first()
        return Flow(**row) if row else None

    def advance_flow(self, flow_id: str, from_stage: str, **changes: Any) -> bool:
        """Compare-and-set on the stage: a flow moves on once, even if a form is posted twice."""
        if not changes or not changes.keys() <= FLOW_COLUMNS:  # SET is what is named here
            raise ValueError(f"advance_flow: not columns of flows: {sorted(changes)}")
        return self._changed(ADVANCE_FLOW, {"b_flow_id": flow_id, "b_stage": from_stage,
                                            **changes})

    def count_flow_attempt(self, flow_id: str) -> int:
        self._db.execute(
            sa.update(flows).where(flows.c.flow_id == flow_id)
            .values(attempts=flows.c.attempts + 1)
        )
        return self._db.execute(
            sa.select(flows.c.attempts).where(flows.c.flow_id == flow_id)
        ).scalar() or 0

    def extend_flow(self, flow_id: str, stage: str, now: float, expires_at: float,
                    params: dict[str, Any] | None = None) -> bool:
        """Give a flow that has not expired, still at ``stage``, a later end (and ``params``,
        when given); False if it has ended (or moved on: a finish that came between must stay
        as it ended)."""
        values: dict[str, Any] = {"expires_at": expires_at}
        if params is not None:
            values["params"] = params
        return self._changed(
            sa.update(flows)
            .where(flows.c.flow_id == flow_id, flows.c.stage == stage, flows.c.expires_at > now)
            .values(**values)
        )

    def end_flow(self, flow_id: str, stage: str) -> bool:
        """Delete a flow that is still at ``stage``: the step that wins this, ends it."""
        return self._changed(END_FLOW, {"b_flow_id": flow_id, "b_stage": stage})

    def finish_flow(self, flow_id: str, stage: str, done: str, now: float,
                    kept: dict[str, Any]) -> bool:
        """Finish a flow that is still at ``stage`` (its code is issued): as :meth:`end_flow`,
        but the row stays, at stage ``done``, ended now, without its secrets and with only the
        ``kept`` params, as a flow that ran out does (``find_ended_flow``), so its page can
        say the sign-in is complete."""
        return self._changed(FINISH_FLOW, {"b_flow_id": flow_id, "b_stage": stage,
                                           "b_done": done, "b_now": now, "b_params": kept})

    # -- users ----------------------------------------------------------------------------
    def find_user(self, subject: str, for_update: bool = False) -> User | None:
        """``for_update`` holds the row until the transaction ends (PostgreSQL); SQLite's
        write-locking transactions already serialize writers."""
        query = FIND_USER_FOR_UPDATE if for_update else FIND_USER
        row = self._db.execute(query, {"b_subject": subject}).first()
        return User(**row) if row else None

    def add_user(self, user: User) -> bool:
        """Insert a newly enrolled user; False if the subject enrolled meanwhile."""
        try:
            with self._db.savepoint():
                self._db.execute(INSERT_USER, user.__dict__)
        except sa.exc.IntegrityError:
            return False
        return True

    def add_users(self, rows: list[User], emails: list[str] | None = None) -> None:
        """Bulk enrollment, one batched INSERT (the benchmark seeds its users this way), with
        the address each user's IdP pushes, if given, as a sign-in would have kept it."""
        self._db.execute(INSERT_USER, many=[row.__dict__ for row in rows])
        if emails:
            self._db.execute(INSERT_CONTACT, many=[
                {"subject": row.subject, "email": email, "locale": None,
                 "updated_at": row.created_at} for row, email in zip(rows, emails, strict=True)])

    def accept_totp_step(self, subject: str, step: int, drift: int = 0) -> bool:
        """Compare-and-set of the last accepted step: each step is accepted once (RFC 6238 §5.2).
        ``drift`` is the device's clock offset to centre the next check on (§6)."""
        return self._changed(ACCEPT_STEP, {"b_subject": subject, "b_step": step,
                                           "b_drift": drift})

    def hint_totp_step(self, subject: str, step: int, live_from: int) -> bool:
        """Remember a step whose code a wrong-clock hint just confirmed: it never works. There
        is room for one: False (give no hint) while another hinted step at or above
        ``live_from`` could still be accepted, so a second hint never frees the first."""
        return self._changed(
            sa.update(users).where(
                users.c.subject == subject,
                sa.or_(users.c.totp_hinted_step.is_(None), users.c.totp_hinted_step < live_from,
                       users.c.totp_hinted_step == step))
            .values(totp_hinted_step=step))

    def replace_totp(self, subject: str, sealed_secret: str, step: int) -> bool:
        return self._changed(
            sa.update(users).where(users.c.subject == subject)
            .values(totp_secret=sealed_secret, totp_last_step=step, totp_drift=0,
                    totp_hinted_step=None)
        )

    def rotate_recovery(self, subject: str, from_version: int, new_digest: str) -> bool:
        """Swap in the staged recovery code if nobody rotated since it was staged."""
        return self._changed(ROTATE_RECOVERY, {"b_subject": subject, "b_version": from_version,
                                               "recovery_digest": new_digest,
                                               "recovery_version": from_version + 1})

    def record_failure(self, subject: str, now: float, limit: int) -> int:
        """Count one failed attempt; lock at ``limit``. Returns the new count."""
        self._db.execute(
            sa.update(users).where(users.c.subject == subject)
            .values(failures=users.c.failures + 1, last_failure_at=now)
        )
        self._db.execute(
            sa.update(users)
            .where(users.c.subject == subject, users.c.failures >= limit,
                   users.c.locked_at.is_(None))
            .values(locked_at=now)
        )
        return self._db.execute(
            sa.select(users.c.failures).where(users.c.subject == subject)
        ).scalar() or 0

    def clear_failures(self, subject: str) -> None:
        self._db.execute(CLEAR_FAILURES, {"b_subject": subject})

    def unlock_user(self, subject: str) -> bool:
        return self._changed(
            sa.update(users).where(users.c.subject == subject, users.c.locked_at.is_not(None))
            .values(locked_at=None, failures=0, last_failure_at=None))

    def lock_user(self, subject: str, now: float) -> bool:
        return self._changed(sa.update(users).where(users.c.subject == subject,
                                                    users.c.locked_at.is_(None))
                             .values(locked_at=now))

    def bar_user(self, subject: str, now: float) -> bool:
        """A locked row with no factor for a subject that has none (a help-desk reset that
        the user disowned): no sign-in can enroll until the help desk lets it. False if the
        subject has a row."""
        return self.add_user(User(subject=subject, display_name=None, totp_secret="",
                                  totp_last_step=0, recovery_digest="", recovery_version=0,
                                  failures=0, last_failure_at=None, locked_at=now,
                                  created_at=now))

    def remove_user(self, subject: str) -> bool:
        """Help-desk reset: the factors go, and so does every sign-in in progress for the
        subject and every unredeemed code, so none of them can finish against the reset (or
        a re-enrolled) user. The user's row goes first: on PostgreSQL that waits for a check
        holding it, so the code that check issues is committed, and seen, before it is
        deleted here."""
        removed = self._changed(sa.delete(users).where(users.c.subject == subject))
        self._db.execute(sa.delete(flows).where(flows.c.subject == subject))
        self._db.execute(sa.delete(codes).where(codes.c.subject == subject))
        return removed

    def lock_sign_ins(self, subject: str, locked_stage: str, done_stage: str) -> None:
        """A lock ends every sign-in of the subject (each shows ``locked_stage`` from now on,
        with nothing staged left in it) and voids its unredeemed codes. Called with the
        user's row held (``find_user(for_update=True)``). Chosen by stage, not by the clock
        (another node's may be behind this one's, its flows still open): only a finished one
        (``done_stage``) stays as it ended, so its page still says it is complete."""
        self._db.execute(
            sa.update(flows).where(flows.c.subject == subject, flows.c.stage != done_stage)
            .values(stage=locked_stage, staged_code=None, pending_secret=None))
        self._db.execute(sa.delete(codes).where(codes.c.subject == subject))

    # -- per-IP failure window ----------------------------------------------------------
    def lock_ip_window(self, ip: str) -> None:
        """Hold the IP's failure window until the transaction ends, so concurrent attempts
        from one address are counted one after another, never all against the same count.
        PostgreSQL: a transaction-scoped advisory lock (taken after the user's row); SQLite's
        write-locking transactions already run one at a time."""
        if self._db.dialect.name == "postgresql":
            self._db.execute(LOCK_IP, {"ip": ip[:64]})

    def record_ip_failure(self, ip: str, now: float, client_id: str | None = None) -> None:
        """A failed code attempt, or with ``client_id`` a failed authentication of that client
        ('' for an unknown one): ``schema.ip_failures``."""
        self._db.execute(INSERT_IP_FAILURE, {"ip": ip[:64], "at": now, "client_id": client_id})

    def count_ip_failures(self, ip: str, since: float, client_id: str | None = None) -> int:
        if client_id is None:
            return self._db.execute(COUNT_IP_FAILURES, {"b_ip": ip[:64], "b_since": since}
                                    ).scalar()
        return self._db.execute(COUNT_CLIENT_FAILURES, {"b_ip": ip[:64], "b_since": since,
                                                        "b_client_id": client_id}).scalar()

    def clear_ip_failures(self, ip: str, client_id: str | None = None) -> int:
        """Forget an address's failed codes, or with ``client_id`` its failed authentications
        of that client (the help desk reopens a window): how many there were."""
        match = (ip_failures.c.client_id.is_(None) if client_id is None
                 else ip_failures.c.client_id == client_id)
        return self._db.execute(sa.delete(ip_failures).where(ip_failures.c.ip == ip[:64],
                                                             match)).rowcount

    # -- authorization codes ------------------------------------------------------------
    def save_code(self, code: Code) -> None:
        self._db.execute(INSERT_CODE, code.__dict__ | {"amr": list(code.amr)})

    def consume_code(self, code: str, client_id: str, now: float) -> Code | None:
        """Redeem an authorization code once (UPDATE ... RETURNING): of two concurrent
        redemptions exactly one gets the row. An expired code gives None; another client's
        code gives None and stays, so a client that saw it cannot spend it for the one it was
        issued to (RFC 6749 §4.1.3).

        The redeemed row is not deleted: it stays until it expires, under a key no lookup can
        produce (:func:`spent_key`). So a code presented again is found by
        :meth:`redeemed_code` and can be told from a guess (RFC 6749 §4.1.2: a reused code is
        a stolen one), while no node, one still on the release that deleted codes included,
        can redeem it again."""
        digest = token_digest(code)
        row = self._db.execute(REDEEM_CODE, {
            "b_digest": digest, "b_spent": spent_key(digest), "b_client_id": client_id,
            "b_now": now}).first()
        return Code(**row) if row else None

    def redeemed_code(self, code: str, now: float) -> Row | None:
        """The subject and client of ``code`` if it was redeemed and has not expired yet."""
        return self._db.execute(REDEEMED_CODE, {
            "b_spent": spent_key(token_digest(code)), "b_now": now}).first()

    def use_assertion_id(self, client_id: str, jti: str, expires_at: float) -> bool:
        """Record a client assertion's ``jti`` (RFC 7523 §3 item 7); False on reuse."""
        try:
            with self._db.savepoint():
                self._db.execute(
                    sa.insert(client_assertions).values(
                        jti_digest=token_digest(f"{client_id}\0{jti}"), expires_at=expires_at
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    # -- signing keys and secrets at rest ------------------------------------------------
    def lock_signing_keys(self) -> None:
        """Hold the key ring until the transaction ends: nodes starting at once on a new
        database make its first keys once, and rotations take turns. PostgreSQL: an advisory
        lock; SQLite's write-locking transactions already run one at a time."""
        if self._db.dialect.name == "postgresql":
            self._db.execute(sa.select(sa.func.pg_advisory_xact_lock(SIGNING_KEYS_LOCK)))

    def signing_keys(self) -> list[dict]:
        return self._db.execute(SIGNING_KEYS).rows

    def add_signing_key(self, kid: str, alg: str, sealed_jwk: str, now: float,
                        activates_at: float) -> None:
        self._db.execute(sa.insert(signing_keys).values(
            kid=kid, alg=alg, sealed_jwk=sealed_jwk, created_at=now, activates_at=activates_at))

    def bring_forward_signing_key(self, kid: str, activates_at: float) -> None:
        self._db.execute(sa.update(signing_keys).where(signing_keys.c.kid == kid)
                         .values(activates_at=activates_at))

    def remove_signing_key(self, kid: str) -> None:
        self._db.execute(sa.delete(signing_keys).where(signing_keys.c.kid == kid))

    def totp_secrets_after(self, after: str, limit: int) -> list[tuple[str, str]]:
        """A batch of (subject, sealed TOTP secret), in subject order, for re-encryption."""
        rows = self._db.execute(
            sa.select(users.c.subject, users.c.totp_secret)
            .where(users.c.subject > after).order_by(users.c.subject).limit(limit)).rows
        return [(row["subject"], row["totp_secret"]) for row in rows]

    def totp_secrets_by_key(self, other_than: Collection[str]) -> dict[str, int]:
        """How many users' TOTP secrets each encryption key id other than ``other_than``
        seals (the id is the text before the sealed value's first '.'; a barred subject's
        row holds none): one scan of ``users``, grouping only the rows it keeps."""
        secret = users.c.totp_secret
        key_id = (sa.func.split_part(secret, ".", 1) if self._db.dialect.name == "postgresql"
                  else sa.func.substr(secret, 1, sa.func.instr(secret, ".") - 1))
        rows = self._db.execute(
            sa.select(key_id.label("key_id"), sa.func.count().label("users"))
            .where(secret != "", key_id.not_in(list(other_than)))
            .group_by(key_id).order_by(key_id)).rows
        return {row["key_id"]: row["users"] for row in rows}

    def flow_secrets(self) -> list[tuple[str, str | None, str | None]]:
        """(flow id, sealed pending TOTP secret, sealed staged code) of every flow holding
        either (those that ran out lose them at the next sweep)."""
        rows = self._db.execute(sa.select(flows.c.flow_id, flows.c.pending_secret,
                                          flows.c.staged_code).where(
            sa.or_(flows.c.pending_secret.is_not(None), flows.c.staged_code.is_not(None)))).rows
        return [(row["flow_id"], row["pending_secret"], row["staged_code"]) for row in rows]

    def reseal(self, column: str, key: str, old: str, new: str) -> bool:
        """Replace a ciphertext only if nobody changed it meanwhile (compare-and-set).

        ``column`` is one of the sealed columns listed in ``SEALED``."""
        table, key_column = SEALED[column]
        return self._changed(sa.update(table).where(
            table.c[key_column] == key, table.c[column] == old).values({column: new}))

    # -- fingerprints of the secrets kept outside the database -------------------------------
    def secret_fingerprint(self, name: str) -> str | None:
        return self._db.execute(sa.select(secret_checks.c.fingerprint)
                                .where(secret_checks.c.name == name)).scalar()

    def holds_accounts(self) -> bool:
        """Whether any user or client is stored (made with some pepper already)."""
        return any(self._db.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).rows
                   for table in (users, clients))

    def keep_secret_fingerprint(self, name: str, fingerprint: str, now: float) -> bool:
        """Record the first fingerprint of ``name``; False if one is kept already."""
        try:
            with self._db.savepoint():
                self._db.execute(sa.insert(secret_checks).values(
                    name=name, fingerprint=fingerprint, created_at=now))
        except sa.exc.IntegrityError:
            return False
        return True

    # -- audit and housekeeping -----------------------------------------------------------
    def audit(self, event: str, now: float, *, subject: str | None = None,
              client_id: str | None = None, ip: str | None = None,
              recipient: Row | None = None, **detail: Any) -> str | None:
        """Record an audit event in this transaction; a notified one also enters the outbox
        under a new stable id (returned), for the subject's kept contact or ``recipient`` (an
        ``email`` and ``locale``). Nothing is logged until the transaction commits."""
        if self._operator:
            detail["operator"] = self._operator
        event_id = ordered_id() if event in NOTIFIED_EVENTS else None
        # The audit row keeps the outbox's id too: the help-desk API's trail then matches the
        # webhooks' ``webhook-id`` and a ``not_me``'s ``disowned``.
        self._db.execute(INSERT_AUDIT, {
            "at": now, "event": event, "subject": subject, "client_id": client_id, "ip": ip,
            "detail": {**detail, "event_id": event_id} if event_id else detail})
        if event_id:
            contact = recipient or self._db.execute(
                FIND_CONTACT, {"b_subject": subject}).first() or {}
            self._db.execute(INSERT_EVENT, {
                "id": event_id, "at": now, "event": event, "subject": subject,
                "client_id": client_id, "detail": detail, "next_attempt_at": now,
                "email": contact.get("email"), "locale": contact.get("locale")})
        self.committed_audit.append({"event": event, "subject": subject, "client_id": client_id,
                                     "ip": ip, **detail,
                                     **({"event_id": event_id} if event_id else {})})
        return event_id

    # -- the outbox's sender --------------------------------------------------------------
    def set_contact(self, subject: str, email: str, locale: str | None, now: float
                    ) -> Row | None:
        """Remember the address (and language) the IdP just pushed for ``subject``. Returns
        the contact it replaces when that had another address (``email``, ``locale``); None
        when the address is the same (in any case), or the first."""
        values = {"email": email, "locale": locale, "updated_at": now}
        if self._changed(UPDATE_SAME_CONTACT, {"b_subject": subject, "b_email": email,
                                               **values}):
            return None  # a returning user's address, as every sign-in pushes it: one statement
        if (previous := self._db.execute(FIND_CONTACT, {"b_subject": subject}).first()):
            self._db.execute(UPDATE_CONTACT, {"b_subject": subject, **values})
            return previous
        try:
            with self._db.savepoint():
                self._db.execute(INSERT_CONTACT, {"subject": subject, **values})
        except sa.exc.IntegrityError:
            pass  # a concurrent sign-in stored one just now: as good as ours
        return None

    def forget_contact(self, subject: str) -> None:
        """No address for ``subject`` until a sign-in that passes pushes one."""
        self._db.execute(sa.delete(contacts).where(contacts.c.subject == subject))

    def count_pending_events(self) -> int:
        """Events not yet delivered or given up (``ix_events_pending``)."""
        return self._db.execute(sa.select(sa.func.count()).select_from(events)
                                .where(events.c.done_at.is_(None))).scalar()

    def claim_events(self, now: float, lease: float, claim: str, limit: int) -> list[dict]:
        """Take up to ``limit`` due events for ``lease`` seconds: events never tried first, so
        a fresh notice does not wait behind a backlog of retries, then by due time and id.
        PostgreSQL skips rows another node holds (FOR UPDATE SKIP LOCKED); SQLite's one writer
        needs nothing more. A sender that dies leaves its claim to lapse: the events are due
        again at ``now + lease``."""
        rows = self._db.execute(
            NAMED_EVENTS.where(events.c.done_at.is_(None), events.c.next_attempt_at <= now)
            # ``ix_events_due``'s expression, spelled alike (a literal 0, not a parameter) so
            # the planner reads the index in this order.
            .order_by(events.c.attempts > sa.literal_column("0"), events.c.next_attempt_at,
                      events.c.id).limit(limit)
            .with_for_update(of=events, skip_locked=True)).rows
        if rows:
            self._db.execute(sa.update(events).where(events.c.id.in_([r["id"] for r in rows]))
                              .values(claim=claim, next_attempt_at=now + lease))
        return rows

    def find_event(self, event_id: str) -> dict | None:
        return self._db.execute(NAMED_EVENTS.where(events.c.id == event_id)).first()

    def disown_event(self, event_id: str, now: float) -> bool:
        """The user says an event was not them: true once per event (compare-and-set)."""
        return self._changed(sa.update(events).where(events.c.id == event_id,
                                                     events.c.disowned_at.is_(None))
                             .values(disowned_at=now))

    def mark_sent(self, event_id: str, claim: str, sent: list[str]) -> bool:
        """Note the channels that took the event so far, so a sender that dies next does not
        make the one after it send them again."""
        return self._changed(sa.update(events).where(events.c.id == event_id,
                                                     events.c.claim == claim).values(sent=sent))

    def finish_event(self, event_id: str, claim: str, *, sent: list[str], done_at: float | None,
                     attempts: int, next_attempt_at: float, error: str | None) -> bool:
        """Record a delivery attempt, only if this sender still holds the claim."""
        return self._changed(
            sa.update(events).where(events.c.id == event_id, events.c.claim == claim)
            .values(sent=sent, done_at=done_at, attempts=attempts, claim=None,
                    next_attempt_at=next_attempt_at, last_error=error))

    # -- help-desk API --------------------------------------------------------------------
    def save_access_token(self, token: str, client_id: str, scope: str,
                          expires_at: float) -> None:
        self._db.execute(sa.insert(access_tokens).values(
            token_digest=token_digest(token), client_id=client_id, scope=scope,
            expires_at=expires_at))

    def find_access_token(self, token: str, now: float) -> dict | None:
        return self._db.execute(sa.select(access_tokens).where(
            access_tokens.c.token_digest == token_digest(token),
            access_tokens.c.expires_at > now)).first()

    def audit_events(self, *, subject: str | None, event: str | None, before: int | None,
                     since: float | None, limit: int, events: tuple[str, ...] = (),
                     leave_out: tuple[str, ...] = ()) -> list[dict]:
        """Audit events, newest first, filtered; ``before`` is the id to page back from."""
        return self._db.execute(audit_events_query(
            subject=subject, event=event, before=before, since=since, limit=limit,
            events=events, leave_out=leave_out)).rows

    def audit_trail(self, subject: str, limit: int = 20,
                    leave_out: tuple[str, ...] = ()) -> list[dict]:
        return self._db.execute(
            sa.select(audit_events).where(audit_events.c.subject == subject,
                                          audit_events.c.event.not_in(leave_out))
            .order_by(audit_events.c.id.desc()).limit(limit)
        ).rows

    def purge_expired(self, now: float, ip_failures_before: float, events_before: float,
                      unsent_before: float | None, flows_before: float,
                      ran_out: tuple[float, float]) -> None:
        """Expired rows; and outbox events done (delivered or given up) before
        ``events_before``, so the user's address is not kept for ever (the audit trail keeps
        the event itself). An event is done after it happened, so its "this wasn't me" link
        has expired by then; one given up stays that long for the operator to look into.
        Where no sender runs (no channel is set), events that happened before
        ``unsent_before`` are given up as a sender would give them up unsent: else they, and
        the addresses in them, were kept for ever. Outbox rows go :data:`SWEEP_BATCH` at a
        time: a backlog (a year of them, at the first sweep after an upgrade) is worked off
        over a few sweeps, each statement well within the request's statement timeout.

        A flow that ran out within ``ran_out`` (since the sweeps before, which took the rest;
        until the nodes' clock skew ago, so none whose clock is behind still uses it) loses its
        sealed secrets now, but stays until ``flows_before``: a user back at its page still
        gets its way back to the IdP."""
        for table in (pushed_requests, codes, client_assertions, access_tokens):
            self._db.execute(sa.delete(table).where(table.c.expires_at <= now))
        self._db.execute(
            sa.update(flows)
            .where(flows.c.expires_at > ran_out[0], flows.c.expires_at <= ran_out[1],
                   sa.or_(flows.c.pending_secret.is_not(None), flows.c.staged_code.is_not(None)))
            .values(pending_secret=None, staged_code=None))
        self._db.execute(sa.delete(flows).where(flows.c.expires_at <= flows_before))
        self._db.execute(sa.delete(ip_failures).where(ip_failures.c.at <= ip_failures_before))
        if unsent_before is not None:
            self._db.execute(
                sa.update(events)
                .where(events.c.id.in_(_batch(events.c.done_at.is_(None),
                                              events.c.at < unsent_before)))
                .values(done_at=now, claim=None,
                        last_error="gave up: no channel is set (STEPUP_NOTIFY_GIVE_UP)"))
        self._db.execute(sa.delete(events).where(
            events.c.id.in_(_batch(events.c.done_at < events_before))))

    def _changed(self, statement: Statement | sa.Executable, params: dict | None = None) -> bool:
        return self._db.execute(statement, params).rowcount == 1


_ordered = threading.Lock()
_last_id = (0, 0)  # the millisecond and counter of this process's latest ordered_id()


def ordered_id() -> str:
    """A UUIDv7 (RFC 9562 §5.7, the counter of §6.2 method 1 in ``rand_a``): ids this process
    makes later sort after earlier ones, within one millisecond too. The outbox sends events
    due at the same time in id order, so one transaction's (a recovery code used, then its
    rotation) go out in the order they happened; random ids let PostgreSQL return them in
    whatever order its pages held them."""
    global _last_id
    with _ordered:
        ms, counter = time.time_ns() // 1_000_000, 0
        if ms <= _last_id[0]:  # the same millisecond, or a clock set back: count on from it
            ms, counter = _last_id[0], _last_id[1] + 1
            if counter > 0xFFF:
                ms, counter = ms + 1, 0
        _last_id = (ms, counter)
    random_bits = int.from_bytes(os.urandom(8), "big") >> 2
    return str(uuid.UUID(int=ms << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | random_bits))


#: Outbox rows one sweep gives up or deletes, at most (:meth:`Tx.purge_expired`).
SWEEP_BATCH = 5000


def _batch(*conditions: sa.ColumnElement[bool]) -> sa.Select:
    # Oldest first (the ids are UUIDv7): a backlog goes in the order it came.
    return sa.select(events.c.id).where(*conditions).order_by(events.c.id).limit(SWEEP_BATCH)


def audit_events_query(*, subject: str | None, event: str | None, before: int | None,
                       since: float | None, limit: int, events: tuple[str, ...] = (),
                       leave_out: tuple[str, ...] = ()) -> sa.Select:
    """:meth:`Tx.audit_events`'s query (its plan is tested: the trail grows without end)."""
    query = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
    if leave_out:
        query = query.where(audit_events.c.event.not_in(leave_out))
    if subject is not None:
        query = query.where(audit_events.c.subject == subject)
    if event is not None:
        query = query.where(audit_events.c.event == event)
    if events:
        query = query.where(audit_events.c.event.in_(events))
    if before is not None:
        query = query.where(audit_events.c.id < before)
    if since is not None:
        query = query.where(audit_events.c.at >= since)
    return query
