"""The processes under test: start them pinned to one core, read their CPU time and memory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .http import Connection

REPO = Path(__file__).resolve().parents[1]
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text().split()]
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of one process: PSS splits the pages a forked worker shares with the master."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0])
    return values["Rss"] / 1024, values["Pss"] / 1024


class Server:
    """One gunicorn server (the bridge or the Flask baseline) pinned to ``core``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], port: int, core: int,
                 log: Path, ready_path: str, wrapper: Sequence[str] = ()):
        """``wrapper``: a command the server runs under (valgrind, which is slower to start)."""
        self.name, self.port = name, port
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, *args], env=env, cwd=REPO, stdout=self._log,
            stderr=self._log, preexec_fn=lambda: os.sched_setaffinity(0, {core}))
        deadline = time.monotonic() + (600 if wrapper else 60)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited: see {log}")
            try:
                if Connection("127.0.0.1", port).request("GET", ready_path).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start: see {log}")
            time.sleep(0.1)

    def workers(self) -> list[int]:
        return children(self.process.pid)

    def pids(self) -> list[int]:
        return [self.process.pid, *self.workers()]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(120)
        self._log.close()


class Postgres:
    """A private PostgreSQL cluster (scripts/postgres.sh) on a free port, pinned to ``core``."""

    def __init__(self, core: int):
        self.port = free_port()
        self.folder = Path(f"/tmp/stepup-pg-{self.port}")  # noqa: S108 - postgres.sh's folder
        try:
            started = subprocess.run([REPO / "scripts" / "postgres.sh", "start", str(self.port)],
                                     capture_output=True, text=True)
            if started.returncode:
                raise RuntimeError(f"PostgreSQL did not start: {started.stderr.strip()}")
            self.url = started.stdout.strip()
            self.postmaster = int((self.folder / "postmaster.pid").read_text().split()[0])
            for pid in [self.postmaster, *children(self.postmaster)]:
                os.sched_setaffinity(pid, {core})  # new backends inherit it from the postmaster
        except BaseException:  # Ctrl-C too: pg_ctl runs the cluster in a session of its own,
            self.stop()  # which the terminal's interrupt never reaches
            raise

    def pids(self) -> list[int]:
        return [self.postmaster, *children(self.postmaster)]

    def stop(self) -> None:
        subprocess.run([REPO / "scripts" / "postgres.sh", "stop", str(self.port)], check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
