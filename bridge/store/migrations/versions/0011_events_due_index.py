"""An index for the sender's claim, events never tried first: a fresh notice no longer waits
behind every overdue retry, and a claim reads one index entry instead of sorting the whole
backlog.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None
#: It only adds an index: nodes still on 0010 keep working beside it (their claim keeps its
#: old order). Writes to events wait while it is built; it holds only pending events.
rolling = True


def upgrade() -> None:
    pending = sa.text("done_at IS NULL")
    op.create_index("ix_events_due", "events",
                    [sa.text("(attempts > 0)"), "next_attempt_at", "id"],
                    postgresql_where=pending, sqlite_where=pending)


def downgrade() -> None:
    op.drop_index("ix_events_due", "events")
