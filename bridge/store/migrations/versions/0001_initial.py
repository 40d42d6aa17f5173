"""Initial schema: clients, users, pushed requests, flows, codes, client assertions, audit.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(255), primary_key=True),
        sa.Column("secret_digest", sa.String(64)),
        sa.Column("jwks_uri", sa.Text),
        sa.Column("redirect_uris", sa.JSON, nullable=False),
        sa.Column("redirect_uri_prefixes", sa.JSON, nullable=False),
        sa.Column("id_token_alg", sa.String(10), nullable=False),
        sa.Column("allow_enrollment", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("display_name", sa.String(255)),
        sa.Column("totp_secret", sa.Text, nullable=False),
        sa.Column("totp_last_step", sa.BigInteger, nullable=False),
        sa.Column("recovery_digest", sa.String(64), nullable=False),
        sa.Column("recovery_version", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_failure_at", sa.Float),
        sa.Column("locked_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "pushed_requests",
        sa.Column("uri_digest", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
    )
    op.create_table(
        "flows",
        sa.Column("flow_id", sa.String(64), primary_key=True),
        sa.Column("binding", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pending_secret", sa.Text),
        sa.Column("pending_step", sa.BigInteger),
        sa.Column("staged_code", sa.Text),
        sa.Column("staged_version", sa.Integer),
        sa.Column("factor", sa.String(10)),
        sa.Column("auth_time", sa.Float),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
    )
    op.create_table(
        "codes",
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
    )
    op.create_table(
        "client_assertions",
        sa.Column("jti_digest", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False, index=True),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(255)),
        sa.Column("client_id", sa.String(255)),
        sa.Column("ip", sa.String(64)),
        sa.Column("detail", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    for table in ("audit_events", "client_assertions", "codes", "flows", "pushed_requests",
                  "users", "clients"):
        op.drop_table(table)
