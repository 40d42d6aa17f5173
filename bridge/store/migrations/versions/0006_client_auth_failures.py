"""The per-IP failure table keeps two windows apart: failed code attempts (``code``, every row
so far) and failed client authentications at /par and /token (``client``).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ip_failures", sa.Column("kind", sa.String(8), nullable=False,
                                           server_default="code"))


def downgrade() -> None:
    with op.batch_alter_table("ip_failures") as batch:  # SQLite: copy-and-move
        batch.drop_column("kind")
