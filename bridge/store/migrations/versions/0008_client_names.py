"""A name for each client (RFC 7591 ``client_name``): the security notices and the "this wasn't
me" page name the sign-in by it ("Acme staff portal") rather than by the client id.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None
#: It only adds: nodes still on the revision before keep working on it (`stepup db status`).
rolling = True


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("client_name", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("client_name")
