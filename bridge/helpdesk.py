"""The help desk's verbs, shared by the CLI (``stepup user …``) and the API (``/admin/api``).
No Flask here. Each verb runs inside the caller's transaction and audits itself with the
actor: the API client's id, or none for the command line on the bridge's host."""

from __future__ import annotations

from typing import Any

from .store import Tx

#: Audit events that count as a use of the second factor.
USES = ("success", "recovery_code_used", "enrollment", "reenrollment")
#: Events whose "this wasn't me" leaves the factors the user's own: someone guessed, or the
#: help desk was talked into an unlock. Any other (a sign-in, a new or rotated factor, a reset
#: after which someone set up factors) means whoever did it holds factors that work.
FACTORS_UNTOUCHED = frozenset({"lockout", "failure_burst", "helpdesk_unlock"})


class NotEnrolled(LookupError):
    """The subject has no second factor."""


class NotLocked(ValueError):
    """Unlock asked for a user who is not locked."""


class FactorsDisowned(ValueError):
    """Unlock asked for a user locked because they said a use or change of their factors was
    not them: only a reset (new factors) gives the account back to them alone."""


def why_locked(tx: Tx, subject: str) -> tuple[str | None, str | None]:
    """Why a locked user is locked: ``"failures"`` or ``"not_me"`` (None: not recorded), and
    for ``"not_me"`` which event the user disowned (None if that is no longer known)."""
    [last] = tx.audit_events(subject=subject, event=None, before=None, since=None, limit=1,
                             events=("lockout", "not_me")) or [None]
    if last is None:
        return None, None
    if last["event"] == "lockout":
        return "failures", None
    detail = last["detail"] or {}
    if kind := detail.get("disowned_event"):
        return "not_me", kind
    # Recorded before the kind was: the outbox row, while it is kept.
    event = tx.find_event(detail["disowned"]) if detail.get("disowned") else None
    return "not_me", event["event"] if event else None


def show(tx: Tx, subject: str) -> dict[str, Any]:
    """Enrolled factors, lock and last use — never a secret, code or digest."""
    user = tx.find_user(subject)
    if user is None:
        raise NotEnrolled(subject)
    last_use = next(iter(tx.audit_events(subject=subject, event=None, before=None, since=None,
                                         limit=1, events=USES)), None)
    reason, disowned = why_locked(tx, subject) if user.locked_at is not None else (None, None)
    return {
        "subject": user.subject,
        "display_name": user.display_name,
        "enrolled_at": None if user.barred else user.created_at,
        "factors": [] if user.barred else ["totp", "recovery_code"],
        "recovery_code_version": user.recovery_version,
        "locked": user.locked_at is not None,
        "locked_at": user.locked_at,
        "lock_reason": reason,
        "disowned_event": disowned,
        "failures": user.failures,
        "last_used_at": last_use["at"] if last_use else None,
    }


def unlock(tx: Tx, subject: str, now: float, actor: str | None, ip: str | None = None) -> bool:
    """Lift a lock; the authenticator and recovery code stay valid. A subject barred with no
    factor (a disowned reset) may enroll again: True then. ``actor`` and ``ip``: the API
    client and its address (None from the command line).

    Refused (FactorsDisowned) when the user locked it by saying a use or change of their
    factors was not them (or an older lock whose event is no longer known): whoever did it
    holds factors that would work again. A reset is the way back then."""
    user = tx.find_user(subject, for_update=True)
    if user is None:
        raise NotEnrolled(subject)
    if user.locked_at is None:
        raise NotLocked(subject)
    reason, disowned = why_locked(tx, subject)
    if reason == "not_me" and not user.barred and disowned not in FACTORS_UNTOUCHED:
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
