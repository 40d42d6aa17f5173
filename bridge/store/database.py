"""The database (:class:`Store`): transactions, and the audit lines of what committed."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Engine

from .sql import Session, checkout
from .tx import Tx

#: Audit events are also logged here (never with a code, secret or token in them), once their
#: transaction has committed; the Prometheus metrics count these lines (``ops.AuditMetrics``).
audit_log = logging.getLogger("stepup.audit")


class Store:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        #: Told ``"statement"`` after each statement and ``"transaction"`` at each
        #: :meth:`begin` (the benchmark counts them per request); None in service.
        self.trace: Callable[[str], None] | None = None
        #: Who runs this process's commands (the command line sets it): in every audit event.
        self.operator: str | None = None

    @contextmanager
    def begin(self, durable: bool = True) -> Iterator[Tx]:
        """A transaction: committed when the block ends, rolled back if it raises. Its audit
        events are logged (and so counted) only after the commit succeeded. On SQLite it
        takes the write lock at once (BEGIN IMMEDIATE), so concurrent writers queue under the
        busy timeout instead of failing when a read lock cannot be upgraded; psycopg opens
        the transaction with the first statement.

        ``durable=False``: on SQLite the commit does not wait for the disk (``synchronous=
        NORMAL`` for this connection, then FULL again). It survives a crash of the process; a
        power cut may take it back, with any unsynced commits after it, but not the commits
        before it: the WAL is one file, and the next synced commit of any connection syncs it
        all. A synced commit cost about 0.25 ms here, and the writer holds the database's lock
        through it. Only for writes whose loss spends nothing: the user just starts again."""
        with self._session(autocommit=False, durable=durable) as db:
            if not self._postgres:
                db.run("BEGIN IMMEDIATE")
            if self.trace:
                self.trace("transaction")
            tx = Tx(db, self.operator)
            try:
                yield tx
            except BaseException:
                db.rollback()
                raise
            db.commit()
        _log_committed(tx)

    @contextmanager
    def autocommit(self, durable: bool = True) -> Iterator[Tx]:
        """Statements that each stand alone — a read, or one conditional write such as taking
        a code — and need no common snapshot: each one is atomic and commits by itself, so
        there is no explicit transaction. On SQLite no BEGIN IMMEDIATE (a read takes no write
        lock; a write still waits for the lock under the busy timeout), on PostgreSQL no
        BEGIN/COMMIT round trips. Statements that must hold together use :meth:`begin`.
        ``durable`` as for :meth:`begin`."""
        with self._session(autocommit=True, durable=durable) as db:
            tx = Tx(db, self.operator)
            yield tx
        _log_committed(tx)

    def ping(self) -> None:
        """A round trip to the database (readiness), taking no lock; raises SQLAlchemyError if
        none."""
        with self._session(autocommit=True, durable=True) as db:
            db.run("SELECT 1")

    def backup(self, target: Path) -> Path:
        """A consistent copy of the embedded SQLite database into the new file ``target``,
        owner-only, while nodes run: ``VACUUM INTO`` reads one snapshot, commits still in the
        WAL included, which copying the file would miss. PostgreSQL has ``pg_dump``. Returns
        the database file copied."""
        if self._postgres:
            raise ValueError("stepup db backup copies the embedded SQLite database; back up "
                             "PostgreSQL with pg_dump or your service's snapshots")
        source = Path(self.engine.url.database or "")
        if not source.is_file():  # connecting would create an empty one, and back that up
            raise ValueError(f"no database at {source}")
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # empty: allowed
        try:
            connection = checkout(self.engine)
            try:
                connection.driver_connection.execute("VACUUM INTO ?", (str(target),))
            finally:
                connection.close()
        except BaseException:
            target.unlink(missing_ok=True)  # never a half-written backup left to restore
            raise
        return source

    @contextmanager
    def _session(self, autocommit: bool, durable: bool) -> Iterator[Session]:
        """A pooled connection; back in the pool afterwards, which rolls back what is left.
        SQLite's connections are in the driver's autocommit mode throughout (we issue BEGIN
        ourselves); psycopg's are switched for :meth:`autocommit` and back."""
        connection = checkout(self.engine)
        driver = connection.driver_connection
        switch = autocommit and self._postgres
        relaxed = not durable and not self._postgres
        try:
            if relaxed:
                driver.execute("PRAGMA synchronous=NORMAL")
            if switch:
                driver.autocommit = True
            yield Session(self.engine, connection, self.trace, autocommit)
        finally:
            if relaxed and connection.is_valid:
                try:  # every connection in the pool syncs, whoever checks it out next
                    driver.execute("PRAGMA synchronous=FULL")
                except self.engine.dialect.loaded_dbapi.Error:
                    connection.invalidate()  # e.g. still in a transaction: not back unsynced
            if switch and connection.is_valid:
                try:
                    driver.autocommit = False
                except self.engine.dialect.loaded_dbapi.Error:
                    # Still in a transaction (an interrupted statement) or closed: it must not
                    # go back to the pool self-committing, where a transaction would not hold.
                    connection.invalidate()
            connection.close()


def _log_committed(tx: Tx) -> None:
    """Audit lines (and the metrics counted from them) only for what was committed."""
    for record in tx.committed_audit:
        audit_log.info("%s", record["event"], extra={"audit": record})
