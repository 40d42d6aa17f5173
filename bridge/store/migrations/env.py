"""Alembic environment: the connection is handed in by ``bridge.store.migrate``."""

from alembic import context

from bridge.store.schema import metadata

attributes = context.config.attributes
context.configure(connection=attributes["connection"], target_metadata=metadata,
                  render_as_batch=True,
                  transaction_per_migration=attributes.get("transaction_per_migration", False))
with context.begin_transaction():
    context.run_migrations()
