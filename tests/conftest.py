"""Shared fixtures: a controllable clock and the database engines every store test runs on."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    """Starts at real time (so authlib's own checks agree) and moves only when told.

    It starts 5 s into a TOTP step, never ahead of the real clock: a CLI run in a subprocess
    stamps its events with real time, and a fake clock ahead of it would reorder them."""

    def __init__(self) -> None:
        now = time.time()
        start = int(now) // 30 * 30 + 5
        self.now = float(start if start <= now else start - 30)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """A real PostgreSQL server for this test run: the one at ``STEPUP_TEST_POSTGRES_URL``, or
    a private cluster on 127.0.0.1 started (once, then reused) by ``scripts/postgres.sh``."""
    return os.environ.get("STEPUP_TEST_POSTGRES_URL") or start_postgres()


def start_postgres(port: int | None = None) -> str:
    """``scripts/postgres.sh start [port]``: the URL of its database, or a failure that says
    why on its first line (the one a test run's summary shows for every test that needed it)."""
    port_argument = [str(port)] if port else []
    started = subprocess.run([REPO / "scripts" / "postgres.sh", "start", *port_argument],
                             capture_output=True, text=True)
    if started.returncode:
        pytest.fail(f"PostgreSQL for the tests did not start: {' '.join(started.stderr.split())}",
                    pytrace=False)
    return started.stdout.strip()


def postgres_folder(port: int) -> Path:
    """Where ``scripts/postgres.sh`` keeps the cluster on ``port``."""
    return Path(f"/tmp/stepup-pg-{port}")  # noqa: S108 - the script's folder


def stop_postgres(port: int, *, remove: bool = False) -> None:
    """``scripts/postgres.sh stop port``; ``remove`` deletes the cluster too."""
    subprocess.run([REPO / "scripts" / "postgres.sh", "stop", str(port)], check=True)
    if remove:
        shutil.rmtree(postgres_folder(port), ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """An empty database ``name`` on the server (one left by an earlier run is dropped)."""
    _as_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    return sa.engine.make_url(server_url).set(database=name).render_as_string(False)


def _as_admin(server_url: str, *statements: str) -> None:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_url(postgres_server):
    """A database of its own for this test run's store tests, dropped at the end."""
    name = f"stepup_test_{os.getpid()}"
    yield fresh_database(postgres_server, name)
    _as_admin(postgres_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def app_template(tmp_path_factory) -> Path:
    """A data folder with secrets, a migrated SQLite file and signing keys, made once: each
    test starts from a copy instead of migrating and generating RSA keys again."""
    from bridge import create_app

    folder = tmp_path_factory.mktemp("template")
    app = create_app({"data_dir": folder}, environ={})
    app.extensions["stepup"].store.engine.dispose()
    return folder


@pytest.fixture(scope="session")
def postgres_template(postgres_url, app_template, tmp_path_factory) -> list[dict]:
    """Migrate this run's PostgreSQL database once; keep the signing-key rows to restore."""
    from bridge import create_app

    folder = tmp_path_factory.mktemp("pg-template")
    shutil.copytree(app_template, folder, dirs_exist_ok=True)
    from bridge.store import create_engine, migrate

    engine = create_engine(postgres_url)
    migrate.upgrade(engine)
    engine.dispose()
    app = create_app({"data_dir": folder, "database_url": postgres_url}, environ={})
    engine = app.extensions["stepup"].store.engine
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.text("SELECT * FROM signing_keys")).mappings()]
    engine.dispose()
    return rows


DATABASES = ("sqlite", "postgresql")


def _databases() -> list[str]:
    """``STEPUP_TEST_DATABASES``: the databases the store tests run on, comma-separated. Unset
    (as in CI): both. ``sqlite`` alone is the fast loop, with no PostgreSQL started."""
    names = [n.strip() for n in os.environ.get("STEPUP_TEST_DATABASES", "").split(",")
             if n.strip()] or list(DATABASES)
    unknown = sorted(set(names) - set(DATABASES))
    if unknown:
        raise pytest.UsageError(f"STEPUP_TEST_DATABASES: unknown {', '.join(unknown)} "
                                f"(choose from {', '.join(DATABASES)})")
    return names


@pytest.fixture(params=_databases())
def database_url(request, tmp_path, app_template) -> str:
    """Each store test runs on the embedded SQLite default ("") and on PostgreSQL (or on those
    ``STEPUP_TEST_DATABASES`` names), both starting empty but for the template's signing keys
    (same secrets: copied into tmp_path)."""
    shutil.copytree(app_template, tmp_path, dirs_exist_ok=True)
    if request.param == "sqlite":
        return ""
    url = request.getfixturevalue("postgres_url")
    keys = request.getfixturevalue("postgres_template")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]
        conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        conn.execute(sa.text(
            "INSERT INTO signing_keys (kid, alg, sealed_jwk, created_at, activates_at) "
            "VALUES (:kid, :alg, :sealed_jwk, :created_at, :activates_at)"), keys)
    engine.dispose()
    return url
