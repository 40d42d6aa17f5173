"""The per-IP failure table also holds failed client authentications at /par and /token, one
window per claimed client (``client_id``); the rows so far, with none, are failed code attempts.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None
#: It only adds: nodes still on the revision before keep working on it (`stepup db status`),
#: counting the new nodes' failed client authentications in an address's code window too
#: (more refusals for that while, never fewer).
rolling = True


def upgrade() -> None:
    op.add_column("ip_failures", sa.Column("client_id", sa.String(255)))


def downgrade() -> None:
    op.execute("DELETE FROM ip_failures WHERE client_id IS NOT NULL")  # not code attempts
    with op.batch_alter_table("ip_failures") as batch:  # SQLite: copy-and-move
        batch.drop_column("client_id")
