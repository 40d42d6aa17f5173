"""The engine per backend: SQLite's pragmas and file rights, PostgreSQL's pings and timeouts."""

from __future__ import annotations

import contextlib
import os
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

#: A pooled PostgreSQL connection idle longer than this is pinged before use (a database
#: restart or fail-over while idle); a busy connection is not, which saves a round trip
#: per transaction. A connection that breaks mid-use is answered by the outage handler.
PING_AFTER_IDLE = 5.0


def _owner_only(path: str) -> None:
    """The SQLite file, created if need be, and its -wal and -shm files, readable by the
    owner only, whatever the folder's rights or an earlier version left: it holds e-mail and
    IP addresses. A folder that is missing is left to SQLite's own error."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError:
        return
    for name in (path, f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)


#: libpq's waits on a PostgreSQL server that stops answering, unless the URL sets its own: a
#: new connection gives up after 5 s, and one whose sent data goes unacknowledged for 15 s
#: (a network partition, a host gone) is closed, keep-alives finding a silent one idle. Without
#: them a request waited until the worker was killed, and /healthz with it: now the outage is
#: a 503 that says "try again". A server that accepts but never answers (frozen, not gone) is
#: bounded by gunicorn's worker timeout, after which new connections meet connect_timeout.
PG_TIMEOUTS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 30,
               "keepalives_interval": 10, "keepalives_count": 3, "tcp_user_timeout": 15000}


def _pg_options(given: str, lock_wait: float) -> str:
    """libpq's ``options``: ``lock_wait`` for a lock another session holds (a psql session, a
    stuck transaction, a migration's ALTER or index build) and for any statement, each then a
    503 that says try again, where the request waited until gunicorn killed its worker (a
    502); then the URL's own ``options`` (else ``PGOPTIONS``, which libpq ignores once
    options are given): later settings win, so the operator's do."""
    wait = int(lock_wait * 1000)
    ours = f"-c lock_timeout={wait} -c statement_timeout={wait}"
    return f"{ours} {given or os.environ.get('PGOPTIONS', '')}".strip()


#: execution_options flag of a connection that only reads (migrate's look at the schema): on
#: SQLite its transaction takes no write lock.
READS_ONLY = "stepup_reads_only"


def create_engine(url: str, lock_wait: float = 30) -> Engine:
    """An engine tuned per backend: SQLite gets WAL, a busy timeout and write-locking
    transactions (BEGIN IMMEDIATE) so concurrent writers queue instead of failing, and commits
    synced to disk (``synchronous=FULL``: in WAL mode NORMAL may lose the last commits to a
    power cut, which would bring back a spent time step or recovery code and drop a
    replacement code the user has already confirmed; only writes that may be lost opt out);
    PostgreSQL gets a ping for connections that were idle (see ``PING_AFTER_IDLE``), and
    bounded waits on a server that stops answering (:data:`PG_TIMEOUTS`).

    ``lock_wait``: seconds a SQLite writer waits for the lock before "database is locked", and
    the longest a PostgreSQL statement runs or waits for a lock (each a 503 that says try
    again); a server passes less than its worker timeout, or the worker would be killed
    first."""
    if not url.startswith("sqlite"):
        given = sa.engine.make_url(url).query
        engine = sa.create_engine(url, connect_args={
            **{k: v for k, v in PG_TIMEOUTS.items() if k not in given},
            "options": _pg_options(given.get("options", ""), lock_wait)})

        @sa.event.listens_for(engine.pool, "checkout")
        def _ping_if_idle(dbapi_conn, record, _proxy):
            if time.monotonic() - record.info.get("used_at", 0.0) > PING_AFTER_IDLE:
                try:
                    engine.dialect.do_ping(dbapi_conn)
                except engine.dialect.loaded_dbapi.Error as e:
                    raise sa.exc.DisconnectionError() from e  # the pool retries afresh
            record.info["used_at"] = time.monotonic()

        @sa.event.listens_for(engine.pool, "checkin")
        def _used(_dbapi_conn, record):
            record.info["used_at"] = time.monotonic()

        return engine
    parsed = sa.engine.make_url(url)
    if parsed.database and parsed.database != ":memory:" and "uri" not in parsed.query:
        _owner_only(parsed.database)
    engine = sa.create_engine(url, connect_args={"timeout": lock_wait,
                                                  "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(lock_wait * 1000)}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - trivial
        # SQLAlchemy's own transactions (migrations); a read of the schema takes no write lock
        reads = conn.get_execution_options().get(READS_ONLY)
        conn.exec_driver_sql("BEGIN" if reads else "BEGIN IMMEDIATE")

    return engine
