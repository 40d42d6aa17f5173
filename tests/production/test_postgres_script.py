"""``scripts/postgres.sh``, which every PostgreSQL test starts from, on a machine unlike the one
it was written on: a locale the machine lacks, the caller's libpq variables, the lock files of a
server that was killed with its machine, a cluster folder of another uid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.servers import children
from tests.conftest import postgres_folder, start_postgres, stop_postgres
from tests.e2e.browser import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def port():
    port = free_port()
    yield port
    stop_postgres(port, remove=True)


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
    folder = postgres_folder(port)
    lock_files = [folder / "postmaster.pid", folder / f".s.PGSQL.{port}.lock"]
    _kill_with_its_children(int(lock_files[0].read_text().splitlines()[0]))
    # On a new machine the old PID may be any process; one of the cluster's owner, even one
    # called postgres (another cluster's), is what pg_ctl and PostgreSQL take for the server.
    owner = "postgres" if os.getuid() == 0 else None
    # Perl (Debian's essential perl-base) renames its process when $0 is set.
    with subprocess.Popen(["perl", "-e", '$0 = "postgres"; sleep 60'], user=owner) as other:
        comm = Path(f"/proc/{other.pid}/comm")
        deadline = time.monotonic() + 10
        while comm.read_text().strip() != "postgres" and time.monotonic() < deadline:
            time.sleep(0.02)
        for lock_file in lock_files:
            lines = lock_file.read_text().splitlines()
            lock_file.write_text("\n".join([str(other.pid), *lines[1:]]) + "\n")
        try:
            assert _answers(start_postgres(port))
        finally:
            other.kill()


def test_the_callers_libpq_variables_do_not_steer_it(port, monkeypatch):
    monkeypatch.setenv("PGDATABASE", "elsewhere")
    monkeypatch.setenv("PGSSLMODE", "require")
    start_postgres(port)
    url = start_postgres(port)  # the second finds the server up and its database made
    monkeypatch.delenv("PGDATABASE")
    monkeypatch.delenv("PGSSLMODE")
    assert _answers(url)


def test_a_cluster_left_by_another_uid_is_made_anew(port):
    """As root, as scripts/test.sh runs (its apt-get needs root): only root can chown."""
    start_postgres(port)
    stop_postgres(port)
    subprocess.run(["chown", "-R", "12345:12345", postgres_folder(port)], check=True)
    assert _answers(start_postgres(port))
