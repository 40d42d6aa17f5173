"""Schema migrations with alembic, driven from code (no alembic.ini to ship or find)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

_SCRIPTS = Path(__file__).parent / "migrations"


class SchemaError(RuntimeError):
    """The database schema is not the one this version of the bridge runs on."""


def _config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head() or ""


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        config = _config()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def check(engine: Engine) -> None:
    """Refuse to serve on a schema that is missing, older or newer than this code's."""
    found, wanted = current(engine), head()
    if found == wanted:
        return
    if found is None:
        raise SchemaError("the database has no schema yet: run `stepup db upgrade`")
    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if found not in known:
        raise SchemaError(f"the database schema ({found}) is newer than this bridge ({wanted})")
    raise SchemaError(
        f"the database schema ({found}) is older than {wanted}: run `stepup db upgrade`")
