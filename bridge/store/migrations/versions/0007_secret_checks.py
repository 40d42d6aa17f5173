"""A fingerprint of the pepper (``secret_checks``), so a node started without the pepper this
database's recovery codes and client secrets were made with is refused. A database from before
keeps the first pepper a node brings once this revision runs.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None
#: It only adds: nodes still on the revision before keep working on it (`stepup db status`).
rolling = True


def upgrade() -> None:
    op.create_table(
        "secret_checks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("secret_checks")
