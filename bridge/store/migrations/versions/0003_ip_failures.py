"""Per-IP failure window in the database (shared by every worker and node), codes and flows
looked up by subject (a lock or a help-desk reset ends them).

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


def downgrade() -> None:
    op.drop_index("ix_flows_subject", "flows")
    op.drop_index("ix_codes_subject", "codes")
    op.drop_table("ip_failures")
