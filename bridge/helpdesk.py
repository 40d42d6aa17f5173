"""The help desk's verbs, shared by the CLI (``stepup user …``) and the API (``/admin/api``).
No Flask here. Each verb runs inside the caller's transaction and audits itself with the
actor: the API client's id, or none for the command line on the bridge's host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import takewhile
from typing import Any

from .store import Store, Tx

#: Audit events that count as a use of the second factor.
USES = ("success", "recovery_code_used", "enrollment", "reenrollment")
#: Events after which someone holds factors that work: new ones, or a recovery code seen.
FACTOR_CHANGES = ("enrollment", "reenrollment", "rotation", "recovery_code_used")
#: Events whose "this wasn't me" leaves the factors the user's own (someone guessed, the help
#: desk was talked into an unlock, or the lock at the user's request is disowned too), unless
#: factors changed after the event.
FACTORS_UNTOUCHED = frozenset({"lockout", "failure_burst", "helpdesk_unlock", "not_me"})
#: Help-desk actions after which the account starts clean.
CLEARED = ("helpdesk_unlock", "helpdesk_reset")
#: The help desk's own reads: audited, but no part of what happened to the user.
LOOK_UPS = ("helpdesk_show", "helpdesk_events")
#: Events read to judge a lock (their kinds are rare: no failures among them).
TRAIL = 500
#: Longest subject the database keeps (``users.subject``, ``audit_events.subject``).
SUBJECT_LIMIT = 255


def is_subject(value: str) -> bool:
    """What a help desk may name a user by: the IdP's subject, printable, at most
    :data:`SUBJECT_LIMIT` characters (the API and the CLI check it before any audit row)."""
    return bool(value) and len(value) <= SUBJECT_LIMIT and is_printable(value)


def is_printable(value: str) -> bool:
    """Printable, and never U+FFFD: werkzeug decodes bytes that are not UTF-8 to it, a value
    nobody sent (``%FE`` and ``%FF`` would name the same one)."""
    return value.isprintable() and "\ufffd" not in value


class Refused(Exception):
    """A help-desk change that cannot be made; ``reason`` is its code (the API's error)."""

    reason = "refused"


class NotEnrolled(Refused, LookupError):
    """The subject has no second factor."""

    reason = "not_enrolled"


class NotLocked(Refused, ValueError):
    """Unlock asked for a user who is not locked."""

    reason = "not_locked"


class FactorsDisowned(Refused, ValueError):
    """Unlock asked for a user locked because they said a use or change of their factors was
    not them: only a reset (new factors) gives the account back to them alone."""

    reason = "factors_disowned"


def change(store: Store, action: Callable[..., Any], subject: str, now: float,
           actor: str | None, ip: str | None = None) -> Any:
    """One help-desk change (:func:`unlock`, :func:`reset`) in its own transaction, for the API
    and the command line alike. A refusal is audited all the same (``helpdesk_refused``), in a
    transaction of its own, the change's having rolled back, then raised: someone who talks a
    help desk into unlocking a user who disowned their factors leaves the attempt in the
    trail."""
    try:
        with store.begin() as tx:
            return action(tx, subject, now, actor=actor, ip=ip)
    except Refused as refusal:
        with store.begin() as tx:
            tx.audit("helpdesk_refused", now, subject=subject, client_id=actor, ip=ip,
                     action=action.__name__, reason=refusal.reason)
        raise


@dataclass(frozen=True)
class Lock:
    """Why a user is locked: ``reason`` ``"failures"`` or ``"not_me"`` (None: not recorded);
    for ``"not_me"`` the event the user disowned (the one that decides, if several) and when
    it happened; and whether an unlock gives the factors back to the user alone."""

    reason: str | None
    disowned: str | None
    disowned_at: float | None
    factors_safe: bool


def why_locked(tx: Tx, subject: str) -> Lock:
    """Judged on the "this wasn't me"s since the help desk last unlocked or reset the user.
    Every one counts, not only the last (a user may follow several links): one over a use or
    change of the factors, or over any event after which factors changed (a help-desk unlock,
    then someone enrolled), makes them unsafe; so does one whose event is no longer known.
    Changes are looked for from the disowned event on, however far back that is: a link in an
    older notice disowns an event from before the latest unlock, and what changed between the
    two counts as much as what changed since."""
    trail = tx.audit_events(subject=subject, event=None, before=None, since=None, limit=TRAIL,
                            events=("lockout", "not_me", *CLEARED, *FACTOR_CHANGES))
    window = list(takewhile(lambda e: e["event"] not in CLEARED, trail))
    [last] = [e for e in window if e["event"] in ("lockout", "not_me")][:1] or [None]
    reason = None if last is None else "failures" if last["event"] == "lockout" else "not_me"
    changes = [e["at"] for e in trail if e["event"] in FACTOR_CHANGES]
    # The trail read is the newest TRAIL events: before its oldest, changes are not known.
    known_from = trail[-1]["at"] if len(trail) == TRAIL else float("-inf")
    disowned = [_disowned(tx, e["detail"] or {}) for e in window if e["event"] == "not_me"]
    # The plainest reason first: a disowned use or change of the factors, then factors that
    # changed after a disowned event.
    for kind, at in disowned:
        if kind not in FACTORS_UNTOUCHED or at is None:
            return Lock(reason, kind, at, False)
    for kind, at in disowned:
        if at < known_from or any(change >= at for change in changes):
            return Lock(reason, kind, at, False)
    return Lock(reason, *(disowned[0] if disowned else (None, None)), True)


def _disowned(tx: Tx, detail: dict) -> tuple[str | None, float | None]:
    """The kind and time of the event a ``not_me`` disowned; from the outbox row for one
    recorded before they were (while the row is kept), else unknown."""
    if "disowned_event" in detail and "disowned_event_at" in detail:
        return detail["disowned_event"], detail["disowned_event_at"]
    event = tx.find_event(detail["disowned"]) if detail.get("disowned") else None
    return (event["event"], event["at"]) if event else (None, None)


def show(tx: Tx, subject: str, now: float, actor: str | None,
         ip: str | None = None) -> dict[str, Any] | None:
    """Enrolled factors, lock and last use — never a secret, code or digest; None for a
    subject not enrolled. The look-up is audited either way (who looked at whom)."""
    tx.audit("helpdesk_show", now, subject=subject, client_id=actor, ip=ip)
    user = tx.find_user(subject)
    if user is None:
        return None
    last_use = next(iter(tx.audit_events(subject=subject, event=None, before=None, since=None,
                                         limit=1, events=USES)), None)
    lock = (why_locked(tx, subject) if user.locked_at is not None else
            Lock(None, None, None, True))
    return {
        "subject": user.subject,
        "display_name": user.display_name,
        "enrolled_at": None if user.barred else user.created_at,
        "factors": [] if user.barred else ["totp", "recovery_code"],
        "recovery_code_version": user.recovery_version,
        "locked": user.locked_at is not None,
        "locked_at": user.locked_at,
        "lock_reason": lock.reason,
        "disowned_event": lock.disowned,
        "disowned_event_at": lock.disowned_at,
        "failures": user.failures,
        "last_used_at": last_use["at"] if last_use else None,
    }


def unlock(tx: Tx, subject: str, now: float, actor: str | None, ip: str | None = None) -> bool:
    """Lift a lock; the authenticator and recovery code stay valid. A subject barred with no
    factor (a disowned reset) may enroll again: True then. ``actor`` and ``ip``: the API
    client and its address (None from the command line).

    Refused (FactorsDisowned) when the user said a use or change of their factors was not
    them (:func:`why_locked`): whoever did it holds factors that would work again. A reset is
    the way back then."""
    user = tx.find_user(subject, for_update=True)
    if user is None:
        raise NotEnrolled(subject)
    if user.locked_at is None:
        raise NotLocked(subject)
    if not user.barred and not why_locked(tx, subject).factors_safe:
        raise FactorsDisowned(subject)
    if user.barred:
        tx.remove_user(subject)
    else:
        tx.unlock_user(subject)
    tx.audit("helpdesk_unlock", now, subject=subject, client_id=actor, ip=ip)
    return user.barred


def reset(tx: Tx, subject: str, now: float, actor: str | None, ip: str | None = None) -> None:
    """Revoke TOTP and recovery code (the user enrolls again), ending open sign-ins."""
    if not tx.remove_user(subject):
        raise NotEnrolled(subject)
    tx.audit("helpdesk_reset", now, subject=subject, client_id=actor, ip=ip)
