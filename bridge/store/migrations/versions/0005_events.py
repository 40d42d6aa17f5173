"""The events outbox (security events written with the change they record, then delivered),
the contact address the IdP pushes for each user, and the help-desk API's clients and tokens.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
#: It only adds: nodes still on the revision before keep working on it (`stepup db status`).
rolling = True


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(255)),
        sa.Column("client_id", sa.String(255)),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("email", sa.String(254)),
        sa.Column("locale", sa.String(256)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("done_at", sa.Float),
        sa.Column("sent", sa.JSON),
        sa.Column("claim", sa.String(36)),
        sa.Column("last_error", sa.String(200)),
        sa.Column("disowned_at", sa.Float),
    )
    op.create_index("ix_events_pending", "events", ["done_at", "next_attempt_at"])
    op.create_table(
        "access_tokens",
        sa.Column("token_digest", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
    )
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("admin", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
    op.create_table(
        "contacts",
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("locale", sa.String(256)),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("contacts")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("admin")
    op.drop_table("access_tokens")
    op.drop_index("ix_events_pending", "events")
    op.drop_table("events")
