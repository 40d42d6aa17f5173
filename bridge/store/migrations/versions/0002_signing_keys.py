"""Signing keys in the database (shared by every node), audit lookups by subject.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("alg", sa.String(10), nullable=False),
        sa.Column("sealed_jwk", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("activates_at", sa.Float, nullable=False),
    )
    op.create_index("ix_audit_events_subject", "audit_events", ["subject", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_subject", "audit_events")
    op.drop_table("signing_keys")
