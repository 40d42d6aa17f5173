"""Per-IP failure window in the database (shared by every worker and node), codes and flows
looked up by subject (a lock or a help-desk reset ends them), and ``flows.staged_version``
renamed ``replaces_version``: it is the recovery version the staged code replaces.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ip_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_ip_failures_ip_at", "ip_failures", ["ip", "at"])
    op.create_index("ix_ip_failures_at", "ip_failures", ["at"])
    op.create_index("ix_codes_subject", "codes", ["subject"])
    op.create_index("ix_flows_subject", "flows", ["subject"])
    with op.batch_alter_table("flows") as batch:  # SQLite: copy-and-move, in the transaction
        batch.alter_column("staged_version", new_column_name="replaces_version")


def downgrade() -> None:
    with op.batch_alter_table("flows") as batch:
        batch.alter_column("replaces_version", new_column_name="staged_version")
    op.drop_index("ix_flows_subject", "flows")
    op.drop_index("ix_codes_subject", "codes")
    op.drop_table("ip_failures")
