"""What garbage collection costs a worker, with and without the ``gc.freeze()`` that
``stepup serve``'s master does (after ``gc.collect()``) before it forks its workers.

    .venv/bin/python -m bench.gc_pauses [--flows 3000]

Each state runs in a fresh interpreter, in the order a worker lives: build the app (the master's
part), freeze or not, then warm up and run TOTP step-ups in process (Flask's test client,
SQLite). Printed: the objects a full collection walks, what one full collection costs then
(``gc.collect()``, what the collector starts by itself whenever enough objects have survived),
how many full collections the collector started during the step-ups and the longest, and the
collector's time per step-up.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .flows import Recorder, Users, register_client, totp_stepup
from .ratio import InProcess


def full_collection_ms(times: int = 5) -> float:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        gc.collect()
        spent.append(1000 * (time.perf_counter() - started))
    return statistics.median(spent)


def measure(flows: int, frozen: bool) -> str:
    from bridge import create_app

    app = create_app({"data_dir": Path(tempfile.mkdtemp(prefix="stepup-gc-")),
                      "issuer": "http://127.0.0.1:9", "ip_limit": 100_000}, environ={})
    if frozen:  # as bridge.server's pre_fork hook does
        gc.collect()
        gc.freeze()
    bridge = app.extensions["stepup"]
    register_client(app)
    users = Users("u", 2 * flows + 100)
    users.seed(bridge.store, bridge.secrets.vault, bridge.secrets.pepper, 0, users.count)
    client, recorder = InProcess(app), Recorder()
    for _ in range(20):  # warm up: imports, statement caches, templates
        totp_stepup(client, client, recorder, users)
    pause = full_collection_ms()
    tracked = len(gc.get_objects())
    pauses: list[tuple[int, float]] = []
    started = [0.0]

    def timer(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started[0]))

    gc.callbacks.append(timer)
    for _ in range(flows):
        totp_stepup(client, client, recorder, users)
    gc.callbacks.remove(timer)
    full = [seconds for generation, seconds in pauses if generation == 2]
    per_flow = 1000 * sum(seconds for _, seconds in pauses) / flows
    return (f"{'frozen' if frozen else 'not frozen':<10} walks {tracked:>7,} objects "
            f"({gc.get_freeze_count():,} frozen); a full collection {pause:5.1f} ms; in "
            f"{flows:,} step-ups the collector started {len(full)} full collections (longest "
            f"{1000 * max(full, default=0):.1f} ms) and spent {per_flow:.3f} ms per step-up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=3000)
    parser.add_argument("--state", choices=["frozen", "unfrozen"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.state:
        print(measure(args.flows, args.state == "frozen"), flush=True)
        return
    for state in ("unfrozen", "frozen"):
        subprocess.run([sys.executable, "-m", "bench.gc_pauses", "--flows", str(args.flows),
                        "--state", state], check=True)


if __name__ == "__main__":
    main()
