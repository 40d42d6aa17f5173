"""The schema's alembic migrations (``versions/``), and what more than one of them does."""

from __future__ import annotations

from typing import Any

from alembic import op


def create_index_online(name: str, table: str, columns: list[Any], **options: Any) -> None:
    """``CREATE INDEX`` that leaves the table writable while it is built, on PostgreSQL.

    A plain build takes a SHARE lock: every sign-in writing to the table waits for it (about
    1.3 s per million audit events), and first queues behind it while it waits for an open
    transaction. ``CONCURRENTLY`` takes neither; it cannot run in a transaction, so the
    migration commits what came before (``migrate`` runs each one in its own). SQLite's file
    has one writer at a time whatever the build: a plain one there.
    """
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(name, table, columns, **options)
        return
    with op.get_context().autocommit_block():
        # A concurrent build that gave up (it waits for older transactions, at most the
        # migration's lock timeout) leaves an invalid index of this name: built afresh.
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        op.create_index(name, table, columns, postgresql_concurrently=True, **options)
