"""Shared fixtures: a controllable clock and the database engines every store test runs on."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    """Starts at real time (so authlib's own checks agree) and moves only when told."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) // 30 * 30 + 5)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def postgres_url():
    """A database of its own for this test run on a real PostgreSQL: the server at
    ``STEPUP_TEST_POSTGRES_URL``, or a private cluster started by ``scripts/postgres.sh``."""
    server = os.environ.get("STEPUP_TEST_POSTGRES_URL")
    if not server:
        server = subprocess.run([REPO / "scripts" / "postgres.sh", "start"], check=True,
                                capture_output=True, text=True).stdout.strip()
    name = f"stepup_test_{os.getpid()}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str:
    """Each store test runs on the embedded SQLite default ("") and on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return ""
    url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    from bridge.store import create_engine, migrate

    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url
