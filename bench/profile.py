"""Where a served step-up spends its CPU: py-spy samples the gunicorn workers under load.

    .venv/bin/pip install py-spy
    .venv/bin/python -m bench.profile [--database sqlite|postgresql] [--flow totp|recovery]

Starts the bridge exactly as ``bench/run.sh`` does (pinned, seeded), drives step-ups from the
client core for ``--seconds`` while py-spy records every worker, then prints the functions
that hold the most samples, inclusive (``--top``), and writes the collapsed stacks (for a
flame graph) next to the report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from .flows import recovery_stepup, totp_stepup
from .ratio import Bridge, run_phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--flow", default="totp", choices=["totp", "recovery"])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "stepup-prof")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(os.sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("bench.profile needs py-spy: .venv/bin/pip install py-spy")
    os.sched_setaffinity(0, {args.client_core})
    args.out.mkdir(parents=True, exist_ok=True)
    target = Bridge(args.database, args, print)
    try:
        users = target.users
        step = totp_stepup if args.flow == "totp" else recovery_stepup

        def flow(i, b, r):
            step(i, b, r, users)

        run_phase(target.port, flow, args.threads, 2, target.pids)  # warm-up
        raw = args.out / f"{args.database}-{args.flow}.collapsed"
        recorder = subprocess.Popen(
            [spy, "record", "--format", "raw", "--rate", "250", "--nonblocking",
             "--duration", str(int(args.seconds)), "--subprocesses", "--output", str(raw),
             "--pid", str(target.server.process.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=lambda: os.sched_setaffinity(0, {args.client_core}))
        time.sleep(1)
        phase = run_phase(target.port, flow, args.threads, args.seconds - 1, target.pids)
        recorder.wait(60)
        print(f"{phase.rate:.1f} {args.flow} step-ups/s, {phase.cpu_ms():.2f} ms server CPU "
              f"each, {len(phase.errors)} errors (profiler attached: slower than the bench)")
    finally:
        target.stop()
    report(raw, args.top)


def report(raw: Path, top: int) -> None:
    """Inclusive share of samples per function (each function counted once per stack)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 2)[-1]
                  + ")" if " (" in f else f for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ")]
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            own[frames[-1]] += n
    print(f"\n{total} samples; inclusive share, top {top}:")
    for frame, n in inclusive.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print(f"\nself share, top {top // 2}:")
    for frame, n in own.most_common(top // 2):
        print(f"  {100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
