"""The help desk's verbs, shared by the CLI (``stepup user …``) and the API (``/admin/api``).
No Flask here. Each verb runs inside the caller's transaction and audits itself with the
actor: the API client's id, or none for the command line on the bridge's host."""

from __future__ import annotations

from typing import Any

from .store import Tx

#: Audit events that count as a use of the second factor.
USES = ("success", "recovery_code_used", "enrollment", "reenrollment")


class NotEnrolled(LookupError):
    """The subject has no second factor."""


class NotLocked(ValueError):
    """Unlock asked for a user who is not locked."""


def show(tx: Tx, subject: str) -> dict[str, Any]:
    """Enrolled factors, lock and last use — never a secret, code or digest."""
    user = tx.find_user(subject)
    if user is None:
        raise NotEnrolled(subject)
    last_use = next(iter(tx.audit_events(subject=subject, event=None, before=None, since=None,
                                         limit=1, events=USES)), None)
    return {
        "subject": user.subject,
        "display_name": user.display_name,
        "enrolled_at": None if user.barred else user.created_at,
        "factors": [] if user.barred else ["totp", "recovery_code"],
        "recovery_code_version": user.recovery_version,
        "locked": user.locked_at is not None,
        "locked_at": user.locked_at,
        "failures": user.failures,
        "last_used_at": last_use["at"] if last_use else None,
    }


def unlock(tx: Tx, subject: str, now: float, actor: str | None, ip: str | None = None) -> bool:
    """Lift a lock; the authenticator and recovery code stay valid. A subject barred with no
    factor (a disowned reset) may enroll again: True then. ``actor`` and ``ip``: the API
    client and its address (None from the command line)."""
    user = tx.find_user(subject, for_update=True)
    if user is None:
        raise NotEnrolled(subject)
    if user.locked_at is None:
        raise NotLocked(subject)
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
