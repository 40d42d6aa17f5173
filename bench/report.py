"""What every benchmark shares: the cores and ``--out`` options, and a report headed by the
run's date, commit and machine, printed as it goes and written to ``--out`` at the end."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from pathlib import Path

from .servers import REPO


def begin(parser: argparse.ArgumentParser, title: str) -> tuple[argparse.Namespace, Report]:
    """Add the shared options, parse, pin this client to its core, start the report."""
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.client_core})
    return args, Report(title)


class Report:
    def __init__(self, title: str) -> None:
        self.lines: list[str] = []
        cpu = next((line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor())
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip()
        self(f"Stepup Bridge {title}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"commit {commit}")
        self(f"machine: {platform.node()}, {os.cpu_count()} x {cpu}, {platform.system()} "
             f"{platform.release()}, Python {platform.python_version()}")

    def __call__(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    def write(self, path: Path | None) -> None:
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(self.lines) + "\n")
