"""The records the store hands out, the digests its rows are keyed by, and the names of
the audit events it records."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

#: Every audit event's name (docs/audit.md describes each). tests/bridge/test_audit_events.py
#: holds the code to it: a misspelt or new name fails there, not in the metrics, the notices
#: or the help desk's filters that name events.
AUDIT_EVENTS = frozenset({
    "success", "failure", "replay", "failure_burst", "lockout", "ip_window_closed",
    "recovery_code_used", "rotation", "rotation_lost", "reenrollment", "enrollment", "cancel",
    "contact_changed", "code_reused", "not_me",
    "helpdesk_show", "helpdesk_events", "helpdesk_unlock", "helpdesk_reset", "helpdesk_refused",
    "client_registered", "client_renamed", "client_removed", "ip_unblocked",
    "signing_key_rotation", "encryption_key_rotation",
})

#: Audit events that also go to the outbox (``events``) for e-mail and webhook delivery.
NOTIFIED_EVENTS = frozenset({
    "enrollment", "recovery_code_used", "rotation", "reenrollment", "lockout",
    "failure_burst", "helpdesk_unlock", "helpdesk_reset", "not_me", "contact_changed",
})


def token_digest(value: str) -> str:
    """Plain SHA-256 hex of a high-entropy random token (≥ 128 bits): rows are keyed by it,
    never by the token itself. Unkeyed on purpose — only for values nobody can guess; codes a
    person holds use an HMAC under the pepper (``recovery.keyed_digest``)."""
    return hashlib.sha256(value.encode()).hexdigest()


def spent_key(digest: str) -> str:
    """The key of a redeemed code's row: its digest hashed again, its first character a "~".
    No :func:`token_digest` (hex) is ever that, so no code, not even the digest of one sent as
    a code, finds the row to redeem it, on this release or the one that deleted rows."""
    return "~" + hashlib.sha256(f"spent\0{digest}".encode()).hexdigest()[1:]


@dataclass(frozen=True)
class Client:
    client_id: str
    secret_digest: str | None
    jwks_uri: str | None
    redirect_uris: list[str]
    redirect_uri_prefixes: list[str]
    id_token_alg: str
    allow_enrollment: bool
    created_at: float
    admin: bool = False
    client_name: str | None = None


@dataclass(frozen=True)
class User:
    """An enrolled user; a barred subject (:meth:`Tx.bar_user`) has a locked row with no
    factor: ``totp_secret`` empty."""

    subject: str
    display_name: str | None
    totp_secret: str
    totp_last_step: int
    recovery_digest: str
    recovery_version: int
    failures: int
    last_failure_at: float | None
    locked_at: float | None
    created_at: float
    totp_drift: int = 0
    totp_hinted_step: int | None = None

    @property
    def barred(self) -> bool:
        return not self.totp_secret


@dataclass(frozen=True)
class Flow:
    flow_id: str
    binding: str
    client_id: str
    subject: str
    params: dict[str, Any]
    stage: str
    attempts: int
    pending_secret: str | None
    pending_step: int | None
    staged_code: str | None
    replaces_version: int | None
    factor: str | None
    auth_time: float | None
    expires_at: float


@dataclass(frozen=True)
class Code:
    code_digest: str
    client_id: str
    subject: str
    redirect_uri: str
    scope: str
    nonce: str
    code_challenge: str
    auth_time: float
    acr: str
    amr: list[str]
    expires_at: float
