"""An index on the audit trail by event: the help desk's ``/admin/api/events?event=…`` (a tool
polling for lockouts, say) read the whole table for an event that is rare, ever slower as the
trail grows.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None
#: It only adds an index: nodes still on 0009 keep working beside it. Writes to audit_events
#: (every sign-in) wait while it is built (docs/operations.md, Upgrading).
rolling = True


def upgrade() -> None:
    op.create_index("ix_audit_events_event", "audit_events", ["event", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_event", "audit_events")
