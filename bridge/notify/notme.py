""""This wasn't me": the signed, single-use, expiring link in every notice e-mail. No Flask.

The link names one event and when it stops working, under an HMAC with a key derived from the
server secret; it is the same on every retry of the mail. Following it shows a confirmation
page; only the confirmation (a POST with a CSRF token) locks second-factor sign-in for the
event's user, ends their open sign-ins and records a ``not_me`` event — once per link: the
event's ``disowned_at`` is set by a compare-and-set. Disowning a ``contact_changed`` notice
also forgets the user's address: which of the two is theirs, the bridge cannot tell.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from enum import Enum

from ..challenge.stages import DONE, LOCKED
from ..store import Store

_TOKEN = re.compile(r"([0-9a-f-]{36})\.([1-9][0-9]{0,11})\.([A-Za-z0-9_-]{43})")  # one spelling


class Outcome(Enum):
    LOCKED = "locked"
    USED = "used"
    INVALID = "invalid"


class NotMe:
    def __init__(self, store: Store, server_key: bytes, ttl: int, issuer: str,
                 clock: Callable[[], float] = time.time):
        self.store, self.ttl, self.issuer, self.clock = store, ttl, issuer, clock
        self.key = hmac.new(server_key, b"stepup not-me link", hashlib.sha256).digest()

    def link(self, event: dict) -> str:
        expires = int(event["at"]) + self.ttl
        return f"{self.issuer}/not-me/{event['id']}.{expires}.{self._mac(event['id'], expires)}"

    def _mac(self, event_id: str, expires: int) -> str:
        digest = hmac.new(self.key, f"{event_id}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def event_of(self, token: str) -> str | None:
        """The event id of an authentic, unexpired link; None for anything else."""
        match = _TOKEN.fullmatch(token) if len(token) < 128 else None  # "$" allows a "\n"
        if not match:
            return None
        event_id, expires = match.group(1), int(match.group(2))
        if not hmac.compare_digest(match.group(3), self._mac(event_id, expires)):
            return None
        return event_id if self.clock() < expires else None

    def find(self, token: str) -> dict | None:
        """The event an authentic, unexpired link names, for its pages: the language of the
        user it was mailed to, and whether it was disowned already. None for anything else."""
        if (event_id := self.event_of(token)) is None:
            return None
        with self.store.autocommit() as tx:  # a read: no write lock
            event = tx.find_event(event_id)
        return dict(event) if event and event["subject"] is not None else None

    def confirm(self, token: str, ip: str | None = None) -> Outcome:
        """Lock (or bar) the event's subject, once per link; ``ip`` is the confirming
        browser's, for the help desk."""
        if (event_id := self.event_of(token)) is None:
            return Outcome.INVALID
        now = self.clock()
        with self.store.begin() as tx:
            event = tx.find_event(event_id)
            if event is None or event["subject"] is None:
                return Outcome.INVALID
            if not tx.disown_event(event_id, now):
                return Outcome.USED
            subject = event["subject"]
            # A reset left no row to lock (the help desk may have been talked into it): bar the
            # subject, so nobody enrolls meanwhile. An enrollment that committed first is locked.
            if tx.find_user(subject, for_update=True) is not None or not tx.bar_user(subject, now):
                tx.lock_user(subject, now)
            tx.lock_sign_ins(subject, LOCKED, DONE)
            forgotten = {}
            if event["event"] == "contact_changed":
                # One of the two addresses is not the user's, and the bridge cannot tell which
                # (someone moved the notices to theirs, or the user moved off a mailbox someone
                # holds): neither gets the notices, this lock's and the help desk's reset with
                # its link, until a sign-in after the help desk's check pushes one.
                tx.forget_contact(subject)
                forgotten = {"contact_forgotten": True}
            # No client acted (the user did, from a link): the disowned event's client is a
            # detail, so no trail shows it, say the help desk's tool, as the one that locked.
            tx.audit("not_me", now, subject=subject, ip=ip, disowned=event_id,
                     disowned_event=event["event"], disowned_event_at=event["at"],
                     disowned_client=event["client_id"], **forgotten)
        return Outcome.LOCKED
