"""``stepup db``: the database schema and backups."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import click
import sqlalchemy as sa

from ..keyring import secrets_file
from ..store import Store, create_engine, migrate
from .base import NOT_FOUND, _exists, _fail, _safe_url, _settings, main

INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for "permission denied", "must be owner"


@main.group()
def db() -> None:
    """Database schema and backups."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to this version (alembic)."""
    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # the SQLite file's
    engine = create_engine(settings.database)
    try:
        migrate.upgrade(engine)
    except sa.exc.ProgrammingError as e:
        if getattr(e.orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
            raise
        # The nodes' own role, which only reads and writes rows; or, on a new database, a
        # role that does not own it (PostgreSQL 15 gives others no CREATE on public).
        _fail(f"the database refused the upgrade: {str(e.orig).splitlines()[0]}: run it as "
              "the database's owner, the role that owns it and its tables (docs/operations.md, "
              "Running two nodes on PostgreSQL)")
    click.echo(f"Database at revision {migrate.current(engine)}")


@db.command("status")
def db_status() -> None:
    """Which schema the database has, and what `stepup db upgrade` would change (reads only).
    Exits 0 when there is nothing to do, 1 when there is, 2 on a newer schema or when the
    database or the settings could not be read."""
    settings = _settings()
    click.echo(f"Database: {_safe_url(settings.database)}")
    found, todo = (migrate.pending(create_engine(settings.database))
                   if _exists(settings.database) else (None, []))
    if found is None:
        click.echo(f"No schema yet: `stepup db upgrade` creates schema {migrate.HEAD}.")
        sys.exit(NOT_FOUND)
    if not todo:
        click.echo(f"Schema {found}: the one this bridge runs on. Nothing to upgrade.")
        return
    click.echo(f"Schema {found}; this bridge runs on {migrate.HEAD}. `stepup db upgrade` "
               "applies:")
    for step in todo:
        click.echo(textwrap.fill(step.summary, 100, initial_indent=f"  {step.revision}  ",
                                 subsequent_indent=" " * 8))
    if all(step.rolling for step in todo):
        click.echo(f"Nodes on {found} keep working beside each: upgrade, then restart the "
                   "nodes one by one.")
    else:
        click.echo(f"Nodes on {found} cannot run beside "
                   + ", ".join(step.revision for step in todo if not step.rolling)
                   + ": stop every node, upgrade, then start the new version.")
    sys.exit(NOT_FOUND)


@db.command("backup")
@click.argument("target", metavar="FILE", type=click.Path(path_type=Path))
def db_backup(target: Path) -> None:
    """Copy the embedded SQLite database to a new file FILE, consistently, while nodes run
    (back up keys/secrets.json too: without it the copy is useless)."""
    settings = _settings()
    if target.exists() or target.is_symlink():
        _fail(f"{target} exists: name a new file")
    source = Store(create_engine(settings.database)).backup(target)
    # The copy opens only with the pepper and the encryption keys, each where this deployment
    # keeps it apart from the copy: a variable, or else the secrets file.
    keys = secrets_file(settings)
    needed = ("pepper", "encryption_keys")
    given = [f"STEPUP_{name.upper()}" for name in needed if getattr(settings, name)]
    rest = [f"STEPUP_{name.upper()}" for name in needed if not getattr(settings, name)]
    if rest and keys.is_file():
        rest = [f"{keys} (back it up too)"]
    kept = " and ".join(given + rest)
    click.echo(f"Backed up {source} to {target}. It opens only with the secrets in {kept}.")
