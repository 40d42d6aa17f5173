"""64-bit ids for the audit trail and the per-IP failures on PostgreSQL, whose 32-bit sequences
would run out (then every sign-in, and every failure count, fails); SQLite's are 64-bit already.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None
#: Nodes still on 0008 read and write the wider ids as they did. On PostgreSQL each table is
#: rewritten under an exclusive lock: sign-ins wait while audit_events is copied
#: (docs/operations.md, Upgrading).
rolling = True

TABLES = ("audit_events", "ip_failures")


def upgrade() -> None:
    _retype("BIGINT")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            ids = sa.table(table, sa.column("id"))
            if (op.get_bind().execute(sa.select(sa.func.max(ids.c.id))).scalar() or 0) >= 2**31:
                raise RuntimeError(f"cannot downgrade below 0009: {table} holds ids past 32 "
                                   "bits, which the older schema cannot keep")
    _retype("INTEGER")


def _retype(sql_type: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE {sql_type}")
        op.execute(f"ALTER SEQUENCE {table}_id_seq AS {sql_type}")
