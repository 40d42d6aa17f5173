"""TOTP clock drift per user (RFC 6238 §6) and the step a wrong-clock hint revealed.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
#: It only adds, but nodes on the revision before ignore ``totp_hinted_step``: one of them
#: could accept the future step a new node's wrong-clock hint revealed. Stop them all first.
rolling = False


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("totp_drift", sa.Integer, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("totp_hinted_step", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("totp_hinted_step")
        batch.drop_column("totp_drift")
