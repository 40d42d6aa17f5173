"""Schema migrations with alembic, driven from code (no alembic.ini to ship or find).

alembic (with mako) adds about 11 MB to a process, and ``stepup serve`` builds the app before
forking its workers: a database already at :data:`HEAD` is recognised with one query and
alembic is imported only when there is something to do or to explain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .engine import READS_ONLY

if TYPE_CHECKING:
    from alembic.config import Config

_SCRIPTS = Path(__file__).parent / "migrations"
#: The newest revision in ``migrations/versions`` (tests/production/test_migrations.py holds
#: it equal to alembic's head: change it with every new migration).
HEAD = "0011"
#: Seconds a migration waits for a table another session holds (PostgreSQL): every sign-in
#: would queue behind its waiting ALTER.
LOCK_TIMEOUT = 5
#: PostgreSQL advisory lock key held while migrating ("STEPUP" in ASCII).
MIGRATION_LOCK = 0x535445505550


class SchemaError(RuntimeError):
    """The database schema is not the one this version of the bridge runs on."""


class MigrationBlocked(SchemaError):
    """A migration gave up waiting for a table another session holds: nothing was changed."""


def _config(engine: Engine | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head() or ""


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        conn.execution_options(**{READS_ONLY: True})
        return MigrationContext.configure(conn).get_current_revision()


def _at_head(engine: Engine) -> bool:
    """The stored revision is :data:`HEAD` (False when unknown: alembic then looks closer)."""
    try:
        with engine.connect() as conn:
            conn.execution_options(**{READS_ONLY: True})
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == HEAD
    except sa.exc.DBAPIError:  # no table yet, or no database: alembic says which
        return False


@dataclass(frozen=True)
class Migration:
    """One revision ``upgrade`` would apply: what it changes (its docstring's first paragraph)
    and whether nodes still on the revision before keep working right on it (its ``rolling``;
    absent: no)."""

    revision: str
    summary: str
    rolling: bool


def pending(engine: Engine) -> tuple[str | None, list[Migration]]:
    """The database's revision and the migrations ``upgrade`` would apply to it, oldest first;
    a newer schema is refused (SchemaError), as by ``upgrade``. Reads only."""
    from alembic.script import ScriptDirectory

    found = current(engine)
    _refuse_newer(engine, HEAD, found)
    scripts = ScriptDirectory.from_config(_config())
    todo = [] if found == HEAD else reversed(list(scripts.iterate_revisions("head", found)))
    return found, [Migration(s.revision, " ".join(s.doc.replace("``", "`").split()),
                             getattr(s.module, "rolling", False)) for s in todo]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision``; a database a newer bridge migrated is refused (SchemaError),
    not taken apart: alembic knows no way back from a revision it has never seen."""
    if revision == "head" and _at_head(engine):
        return
    from alembic import command

    _refuse_newer(engine, head())

    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # No statement_timeout: rewriting a large table (0009) takes what it takes,
                # and another node waits here for this one's migrations to end.
                conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
                conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
                # Nodes that upgrade at once (each from its start script) take turns: creating
                # the same tables side by side fails one of them. alembic reads the revision
                # after the lock, so the later ones find the work done. SQLite's BEGIN
                # IMMEDIATE already lets one writer in at a time.
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                # A table's lock is waited for briefly: every sign-in queues behind an ALTER
                # waiting for it (behind a backup's long read, say).
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}s'")
            config = _config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    except sa.exc.OperationalError as e:
        if getattr(e.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        raise MigrationBlocked(
            f"the migration waited {LOCK_TIMEOUT} s for a table that another session holds (a "
            "long query, a backup, an open transaction: see pg_stat_activity) and changed "
            "nothing: run `stepup db upgrade` again once it ends") from e


def _refuse_newer(engine: Engine, wanted: str, found: str | None = None) -> None:
    from alembic.script import ScriptDirectory

    found = found or current(engine)
    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if found is not None and found not in known:
        raise SchemaError(f"the database schema ({found}) is newer than this bridge ({wanted}): "
                          "run the bridge version that migrated it, or restore a backup")


def check(engine: Engine) -> None:
    """Refuse to serve on a schema that is missing, older or newer than this code's."""
    if _at_head(engine):
        return
    found, wanted = current(engine), head()
    if found == wanted:
        return
    if found is None:
        raise SchemaError("the database has no schema yet: run `stepup db upgrade`")
    _refuse_newer(engine, wanted, found)
    raise SchemaError(
        f"the database schema ({found}) is older than {wanted}: run `stepup db upgrade`")
