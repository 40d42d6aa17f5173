"""``scripts/postgres.sh``, which every PostgreSQL test starts from, on a machine unlike the one
it was written on: a locale the machine lacks, the lock files of a server that was killed with
its machine."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.servers import children
from tests.conftest import start_postgres
from tests.e2e.browser import free_port

from .conftest import REPO

pytestmark = pytest.mark.e2e


@pytest.fixture
def port():
    port = free_port()
    yield port
    subprocess.run([REPO / "scripts" / "postgres.sh", "stop", str(port)], check=True)
    shutil.rmtree(f"/tmp/stepup-pg-{port}", ignore_errors=True)  # noqa: S108 - the script's folder


def _answers(url: str) -> bool:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        answer = conn.exec_driver_sql("SELECT 1").scalar()
    engine.dispose()
    return answer == 1


def test_a_locale_the_machine_lacks_does_not_stop_it(port, monkeypatch):
    monkeypatch.setenv("LANG", "xx_XX.UTF-8")
    monkeypatch.setenv("LC_ALL", "xx_XX.UTF-8")
    assert _answers(start_postgres(port))


def _kill_with_its_children(postmaster: int) -> None:
    """SIGKILL, as when its machine goes: no shutdown, the lock files stay."""
    pids = [postmaster, *children(postmaster)]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    # Until reaped: PostgreSQL takes a zombie's PID for a live server too.
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_lock_files_naming_another_live_process_are_stale(port):
    start_postgres(port)
    folder = Path(f"/tmp/stepup-pg-{port}")  # noqa: S108 - the script's folder
    lock_files = [folder / "postmaster.pid", folder / f".s.PGSQL.{port}.lock"]
    _kill_with_its_children(int(lock_files[0].read_text().splitlines()[0]))
    # On a new machine the old PID may be any process; the cluster's owner's is the one that
    # makes pg_ctl and PostgreSQL take the file for a running server.
    owner = "postgres" if os.getuid() == 0 else None
    with subprocess.Popen(["sleep", "60"], user=owner) as other:
        for lock_file in lock_files:
            lines = lock_file.read_text().splitlines()
            lock_file.write_text("\n".join([str(other.pid), *lines[1:]]) + "\n")
        try:
            assert _answers(start_postgres(port))
        finally:
            other.kill()
