"""Tables. Alembic migrations in ``migrations/`` create them; this file is what the code reads.

Times are epoch seconds (float); single-use rows carry ``expires_at`` and are deleted when
consumed, so every "use once" rule is one conditional DELETE or UPDATE.
"""

import sqlalchemy as sa

metadata = sa.MetaData()

#: Ids of tables that only grow: 64 bits (a 32-bit sequence runs out, and then every insert
#: fails: audit_events in months at full load, ip_failures as fast as anyone fails); SQLite's
#: INTEGER PRIMARY KEY is its 64-bit rowid already.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.String(255), primary_key=True),
    sa.Column("secret_digest", sa.String(64)),  # HMAC-SHA-256 of the secret, or NULL
    sa.Column("jwks_uri", sa.Text),  # private_key_jwt clients
    sa.Column("redirect_uris", sa.JSON, nullable=False),
    sa.Column("redirect_uri_prefixes", sa.JSON, nullable=False),
    sa.Column("id_token_alg", sa.String(10), nullable=False),
    sa.Column("allow_enrollment", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # May use the help-desk API (client credentials, scope ``stepup:admin``).
    sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
    # What the notices call its sign-ins (RFC 7591 ``client_name``); NULL: the client id.
    sa.Column("client_name", sa.String(255)),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("display_name", sa.String(255)),
    sa.Column("totp_secret", sa.Text, nullable=False),  # AES-GCM sealed
    sa.Column("totp_last_step", sa.BigInteger, nullable=False),
    # RFC 6238 §6: the device's clock offset in steps, bounded (factors.totp.MAX_DRIFT).
    sa.Column("totp_drift", sa.Integer, nullable=False, server_default="0"),
    # The step whose code a wrong-clock hint confirmed: never accepted afterwards.
    sa.Column("totp_hinted_step", sa.BigInteger),
    sa.Column("recovery_digest", sa.String(64), nullable=False),
    sa.Column("recovery_version", sa.Integer, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_failure_at", sa.Float),
    sa.Column("locked_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
)

pushed_requests = sa.Table(
    "pushed_requests",
    metadata,
    sa.Column("uri_digest", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(255), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

flows = sa.Table(
    "flows",
    metadata,
    sa.Column("flow_id", sa.String(64), primary_key=True),
    sa.Column("binding", sa.String(64), nullable=False),  # digest of the browser's session nonce
    sa.Column("client_id", sa.String(255), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("stage", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("pending_secret", sa.Text),  # sealed TOTP secret being enrolled
    sa.Column("pending_step", sa.BigInteger),  # time step of the enrollment's first code
    sa.Column("staged_code", sa.Text),  # sealed replacement recovery code
    sa.Column("replaces_version", sa.Integer),  # recovery_version the staged code replaces
    sa.Column("factor", sa.String(10)),
    sa.Column("auth_time", sa.Float),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.Index("ix_flows_subject", "subject"),
)

codes = sa.Table(
    "codes",
    metadata,
    sa.Column("code_digest", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(255), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("nonce", sa.Text, nullable=False),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("auth_time", sa.Float, nullable=False),
    sa.Column("acr", sa.Text, nullable=False),
    sa.Column("amr", sa.JSON, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.Index("ix_codes_subject", "subject"),
)

client_assertions = sa.Table(
    "client_assertions",
    metadata,
    sa.Column("jti_digest", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("subject", sa.String(255)),
    sa.Column("client_id", sa.String(255)),
    sa.Column("ip", sa.String(64)),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_audit_events_subject", "subject", "id"),
    sa.Index("ix_audit_events_event", "event", "id"),  # the help desk's look-up by event
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("alg", sa.String(10), nullable=False),
    sa.Column("sealed_jwk", sa.Text, nullable=False),  # AES-GCM, bound to the kid
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("activates_at", sa.Float, nullable=False),  # published before, used from then
)

#: One row per failure, by client IP: the per-IP windows (``throttle.py``) count them, so every
#: worker and node on this database shares one limit. ``client_id`` keeps the windows apart:
#: NULL for a failed code attempt; for a failed client authentication at /par or /token, the
#: registered client it claimed to be ('' for an unknown one), so users guessing codes behind
#: an IdP's address never close its back channel, and one client's failures never another's.
ip_failures = sa.Table(
    "ip_failures",
    metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("client_id", sa.String(255)),
    sa.Index("ix_ip_failures_ip_at", "ip", "at"),
    sa.Index("ix_ip_failures_at", "at"),
)

#: The outbox: one row per security event worth telling someone about, written in the same
#: transaction as the change (so a rolled-back change leaves none). ``id`` is stable across
#: retries so receivers can de-duplicate; the sender claims rows whose ``next_attempt_at`` has
#: come and sets ``done_at`` once every channel took the event.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("subject", sa.String(255)),
    sa.Column("client_id", sa.String(255)),
    sa.Column("detail", sa.JSON, nullable=False),
    # The user's contact when the event happened (``contacts``): a reset user keeps theirs.
    sa.Column("email", sa.String(254)),
    sa.Column("locale", sa.String(256)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("done_at", sa.Float),
    # Channels that took the event already (never sent again; a "!" before one refused for
    # good, never tried again), the sender holding it (its
    # claim ends at ``next_attempt_at``), why the last attempt failed (no address in it), and
    # when the user followed the event's "this wasn't me" link (once).
    sa.Column("sent", sa.JSON),
    sa.Column("claim", sa.String(36)),
    sa.Column("last_error", sa.String(200)),
    sa.Column("disowned_at", sa.Float),
    sa.Index("ix_events_pending", "done_at", "next_attempt_at"),
)
#: The sender's claim order (``Tx.claim_events``): events never tried, then retries, each by
#: due time and id. Partial, so a claim reads its first entry rather than sorting the backlog.
sa.Index("ix_events_due", (events.c.attempts > sa.literal_column("0")).self_group(),
         events.c.next_attempt_at, events.c.id,
         postgresql_where=events.c.done_at.is_(None), sqlite_where=events.c.done_at.is_(None))

#: The address and language the IdP last pushed for a user (PAR ``email``, ``ui_locales``).
contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("locale", sa.String(256)),
    sa.Column("updated_at", sa.Float, nullable=False),
)

#: Help-desk API access tokens (client credentials), by digest; they live minutes.
access_tokens = sa.Table(
    "access_tokens",
    metadata,
    sa.Column("token_digest", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(255), nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

#: Fingerprints of the secrets kept outside the database (an HMAC of a fixed text under each,
#: which reveals nothing of it): a node started with another pepper is refused, before it
#: would fail every recovery code and client secret while its health checks pass.
secret_checks = sa.Table(
    "secret_checks",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
