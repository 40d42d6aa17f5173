"""The sender: takes due events from the outbox, delivers them on every channel, retries with
exponential backoff, and marks them done — at least once, under the event's stable id — or,
when a channel still fails ``notify_give_up`` seconds after the event, gives it up: done, with
its last error kept (a dead letter). An event first due later than that (notifications were
off, no sender ran) is given up unsent: a late notice helps nobody.

A channel out of reach (a timeout, no connection) rests for ``notify_retry_base`` seconds: the
other events due meanwhile record a failed attempt on it without a call, so a dead receiver
costs one timeout per rest, not one per event, and the channels that work are not held up."""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from stepup_handoff.deadline import Overrun

from ..settings import Settings, event_names, is_email, mail_domain, webhook_keys
from ..store import Store
from . import mail, webhooks

log = logging.getLogger("stepup.notify")
DELIVERIES = Counter("stepup_notifications_total", "Delivery attempts by channel and outcome.",
                     ["channel", "outcome"])
#: Marks a channel in an event's ``sent`` that was refused for good (a mailbox that does not
#: exist): not tried again on the retries the other channels need.
GAVE_UP = "!"


class Sender:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], float] = time.time,
                 link: Callable[[dict], str] | None = None):
        self.store, self.settings, self.clock = store, settings, clock
        #: The "this wasn't me" link of an event (``NotMe.link``), put in its e-mail.
        self.link = link
        self.urls = settings.webhook_url_list
        self.keys = webhook_keys(settings.webhook_secret) if self.urls else []
        self.email_events = event_names(settings.email_events, "STEPUP_EMAIL_EVENTS")
        self.webhook_events = event_names(settings.webhook_events, "STEPUP_WEBHOOK_EVENTS")
        self.domain = mail_domain(settings.issuer)
        # Long enough for every channel to time out twice: a live sender never loses its
        # claim; a dead one's events are due again when it lapses.
        self.lease = 2 * (settings.smtp_timeout + settings.webhook_timeout * len(self.urls)) + 5
        #: When each resting channel (by key) last failed out of reach, and how: kept in this
        #: process only, like the sender itself (each worker finds out for itself).
        self._resting: dict[str, tuple[float, str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The series of each channel in use, at 0 from the start (bridge.ops says why).
        for channel in ["email"] * bool(settings.smtp_url) + ["webhook"] * bool(self.urls):
            for outcome in ("delivered", "failed", "abandoned"):
                DELIVERIES.labels(channel, outcome)

    @property
    def configured(self) -> bool:
        return bool(self.settings.smtp_url or self.urls)

    def channels(self, event: dict[str, Any]) -> list[tuple[str, Callable[[], None]]]:
        """(key, send) for each channel this event goes to; the key is stable across restarts
        (a webhook is known by its URL's digest, so reordering the list sends nothing twice)."""
        found: list[tuple[str, Callable[[], None]]] = []
        if (self.settings.smtp_url and event["email"] and event["event"] in self.email_events
                and self._mailable(event)):
            found.append(("email", lambda: mail.send(self.settings, mail.compose(
                event, self.settings.smtp_sender, self.domain,
                self.link(event) if self.link else None))))
        if event["event"] in self.webhook_events:
            for url in self.urls:
                key = "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16]
                found.append((key, lambda url=url: webhooks.post(
                    url, self.keys, event, self.clock(), self.settings.webhook_timeout)))
        return found

    def run_once(self) -> int:
        """Deliver due events one by one until none is due; returns how many were handled."""
        handled = 0
        while not self._stop.is_set():
            claim = str(uuid.uuid4())
            with self.store.begin() as tx:
                batch = tx.claim_events(self.clock(), self.lease, claim, limit=1)
            if not batch:
                return handled
            self._deliver(batch[0], claim)
            handled += 1
        return handled

    def _deliver(self, event: dict[str, Any], claim: str) -> None:
        sent = list(event["sent"] or [])
        errors, failed, hopeless = [], [], []
        age = self.clock() - event["at"]
        for key, send in self.channels(event):
            if key in sent:
                continue
            channel = key.split(":")[0]
            if GAVE_UP + key in sent:
                errors.append(f"{channel}: refused for good on an earlier attempt")
                failed.append(channel)
                hopeless.append(channel)
                continue
            if too_late := self._too_late(channel, event, age, tried=event["attempts"] > 0):
                errors.append(f"{channel}: not sent, {too_late}")
                failed.append(channel)
                hopeless.append(channel)
                continue
            if resting := self._rest(key):
                # Not a delivery attempt (no call, so not counted in the metric): a failed one
                # for the event, retried on its backoff, which outlasts the rest.
                errors.append(f"{channel}: {resting}")
                failed.append(channel)
                continue
            try:
                send()
            except Exception as e:
                # Any failure is this channel's: retried, then given up, while the other
                # channels go (one left to escape would stall the event for ever).
                detail, final = _failure(e)
                if _unreachable(e):
                    self._resting[key] = (self.clock(), detail)
                else:  # it answered: up, if refusing this event
                    self._resting.pop(key, None)
                errors.append(f"{channel}: {detail}" + (", for good" if final else ""))
                failed.append(channel)
                if final:
                    hopeless.append(channel)
                    sent.append(GAVE_UP + key)  # kept with the event: never tried again
                DELIVERIES.labels(channel, "failed").inc()
                continue
            DELIVERIES.labels(channel, "delivered").inc()
            self._resting.pop(key, None)
            sent.append(key)
            with self.store.begin() as tx:
                if not tx.mark_sent(event["id"], claim, sent):
                    # Another sender holds the event now (this one's claim lapsed): it sends
                    # the channels left; going on would send them twice.
                    break
        now = self.clock()
        attempts, delay, done_at = event["attempts"] + 1, 0, now
        error = "; ".join(errors) or None
        given_up = bool(error) and (now - event["at"] >= self.settings.notify_give_up
                                    or len(hopeless) == len(failed))
        if error and not given_up:
            delay = min(self.settings.notify_retry_base * 2 ** (attempts - 1),
                        self.settings.notify_retry_max)
            done_at = None
            log.warning("event %s (%s): delivery failed (%s), attempt %d, retry in %d s",
                        event["id"], event["event"], error, attempts, delay)
        recorded = f"gave up: {error}" if given_up else error
        with self.store.begin() as tx:
            kept = tx.finish_event(event["id"], claim, sent=sent, attempts=attempts,
                                   done_at=done_at, next_attempt_at=now + delay,
                                   error=recorded[:200] if recorded else None)
        if not kept:
            log.warning("event %s: claim lapsed during delivery; another sender retries it",
                        event["id"])
        elif given_up:  # reported once recorded: a lapsed claim leaves it to the next sender
            log.error("event %s (%s): gave up after %d attempts (%s)",
                      event["id"], event["event"], attempts, error)
            for channel in failed:
                DELIVERIES.labels(channel, "abandoned").inc()

    def _rest(self, key: str) -> str | None:
        """Why channel ``key`` is not tried now: it failed out of reach less than
        ``notify_retry_base`` seconds ago (its error, and how long ago), else None."""
        if key not in self._resting:
            return None
        since, detail = self._resting[key]
        ago = self.clock() - since
        if not 0 <= ago < self.settings.notify_retry_base:  # over, or the clock stepped back
            del self._resting[key]
            return None
        return f"{detail} (not tried: it failed {ago:.0f} s ago)"

    @staticmethod
    def _mailable(event: dict[str, Any]) -> bool:
        """The address is checked when pushed; one stored before a check was added (an encoded
        word, which the mail parser would read as another mailbox) is not mailed either."""
        if is_email(event["email"]):
            return True
        log.warning("event %s: the stored address is not one the bridge mails; no e-mail",
                    event["id"])
        return False

    def _too_late(self, channel: str, event: dict[str, Any], age: float,
                  tried: bool) -> str | None:
        """Why a channel does not send an event ``age`` seconds old at all: never tried and
        already past the give-up time (notifications were off, or no sender ran), a notice
        helps nobody; an e-mail, on any attempt, once its "this wasn't me" link has expired
        (``STEPUP_NOT_ME_TTL`` may be shorter than the give-up time): it would offer the user a
        link that only says it does not work. Such a channel is given up at once, a dead
        letter like one that kept failing."""
        if not tried and age >= self.settings.notify_give_up:
            return "older than STEPUP_NOTIFY_GIVE_UP"
        if (channel == "email" and self.link and mail.carries_link(event)
                and age >= self.settings.not_me_ttl):
            return "its \"this wasn't me\" link has expired (STEPUP_NOT_ME_TTL)"
        return None

    # -- the thread ---------------------------------------------------------------------
    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self._loop, name="stepup-sender", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, wait: float) -> None:
        """Start no new delivery, and give the one under way up to ``wait`` seconds to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the database is away: try again at the next poll
                log.exception("sender: cannot read the outbox")
            self._stop.wait(self.settings.notify_poll)


def _failure(error: Exception) -> tuple[str, bool]:
    """What the log and the event keep of a failed delivery, and whether it is final: a
    receiver names itself (host and port), an SMTP refusal its reply and enhanced status codes,
    never its text (it echoes the address back). Only a mailbox that does not exist (5.1.x,
    RFC 3463: bad address, no such user) is refused for good; a policy, relay or quota refusal
    (5.7.x, 552) is the set-up's, and is retried."""
    if isinstance(error, webhooks.DeliveryError | Overrun):
        return str(error), False
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        replies = sorted({(code, _enhanced(text)) for code, text in error.recipients.values()})
        said = "/".join(f"{code} {status}".strip() for code, status in replies)
        final = bool(replies) and all(
            code // 100 == 5 and status.startswith("5.1.") for code, status in replies)
        return f"SMTPRecipientsRefused {said}", final
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{type(error).__name__} {error.smtp_code}", False
    return type(error).__name__, False


def _unreachable(error: Exception) -> bool:
    """Whether a failure says the channel is out of reach (no connection, no answer in time,
    a name that does not resolve) rather than an answer refusing this event."""
    if isinstance(error, webhooks.DeliveryError):
        return error.unreachable
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True  # smtplib's name for a read timeout, or a connection the server dropped
    # An SMTPException is an OSError too, but one that the server answered with.
    return isinstance(error, OSError) and not isinstance(error, smtplib.SMTPException)


def _enhanced(text: bytes | str) -> str:
    """A reply's enhanced status code (RFC 3463, ``5.1.1``), or ""."""
    first = (text.decode("ascii", "replace") if isinstance(text, bytes) else text).split()[:1]
    return first[0] if first and re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", first[0]) else ""
