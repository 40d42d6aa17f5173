"""Instructions per step-up, counted by valgrind: a figure a noisy machine does not move.

    apt-get install valgrind
    .venv/bin/python -m bench.instructions [--flows 20] [--tree PATH]

Runs the TOTP step-up in process (Flask's test client, SQLite, the same requests and
checks as ``bench/run.sh``) and the trivial Flask app's request through the same client, each
under callgrind, and counts the instructions of the measured requests only (after a warm-up;
the counters are zeroed and dumped around them). Prints instructions per step-up, per trivial
request, their ratio (four trivial requests ÷ one step-up, as the CPU ratio of the served
benchmark but without gunicorn), and what the step-up costs beyond as many trivial requests as
it makes; then the same four requests in bare Flask (``bench/shape.py``: session, CSRF token,
form parsing, the page, JSON, none of the bridge's own work) and how many times the shape the
step-up costs. The trivial app and the shape are this harness's own (``--tree`` changes only
the bridge).
``--served`` counts instead what the server processes execute when gunicorn (one worker, under
callgrind) serves the same units over HTTP: the totals after 20 + ``--flows`` units minus those
after 20, so start-up, warm-up and shut-down cancel out (about 10 minutes).
Repeat runs of one tree agree within about 1 %, so a change can be judged on a shared 2-core
VM where wall-clock figures move by a third; ``--tree`` measures another checkout's ``bridge``
(e.g. a ``git worktree`` of an older commit) with this harness.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARM_UP = 10


def _child(kind: str, flows: int, tree: Path) -> None:
    """Runs under callgrind: warm up, then measure ``flows`` step-ups (or 5 x trivial); print
    how many requests each made."""
    sys.path.insert(0, str(tree))  # the tree's bridge; this harness (bench/) stays ours
    from .flows import Recorder, Users, seeded_bridge, totp_stepup
    from .ratio import InProcess

    if kind == "trivial":
        from .trivial import app as trivial

        client = InProcess(trivial)

        def once() -> None:
            for _ in range(5):
                client.request("GET", "/")
    elif kind == "shape":
        from .shape import app as shape

        client, users = InProcess(shape), Users("u", 1000)

        def once() -> None:
            totp_stepup(client, client, Recorder(), users)
    else:
        users = Users("u", 1000)
        client = InProcess(seeded_bridge("stepup-ir-", users))

        def once() -> None:
            totp_stepup(client, client, Recorder(), users)

    for _ in range(WARM_UP):
        once()
    sent = client.request
    made = 0

    def request(*args, **kwargs):
        nonlocal made
        made += 1
        return sent(*args, **kwargs)

    client.request = request  # type: ignore[method-assign]
    subprocess.run(["callgrind_control", "--zero", str(os.getpid())], check=True,
                   capture_output=True)
    for _ in range(flows):
        once()
    subprocess.run(["callgrind_control", "--dump=measured", str(os.getpid())], check=True,
                   capture_output=True)
    print(f"requests per unit {made / flows}")  # an older tree's step-up may make more


def count(kind: str, flows: int, tree: Path) -> tuple[int, float]:
    """Instructions of ``flows`` measured units of ``kind`` in a callgrind run, and the
    requests each unit made."""
    folder = Path(tempfile.mkdtemp(prefix="stepup-callgrind-"))
    try:
        child = subprocess.run(
            ["valgrind", "--tool=callgrind", "--cache-sim=no",
             f"--callgrind-out-file={folder}/out.%p", sys.executable, "-m", "bench.instructions",
             "--child", kind, "--flows", str(flows), "--tree", str(tree)],
            cwd=REPO, check=True, capture_output=True, text=True)
        requests = float(child.stdout.rsplit("requests per unit ", 1)[1])
        for dump in folder.iterdir():
            text = dump.read_text(errors="replace")
            if "measured" in text.split("\nfn=", 1)[0]:
                for line in text.splitlines():
                    if line.startswith(("summary:", "totals:")):
                        return int(line.split()[1]), requests
        raise RuntimeError("callgrind wrote no measured dump")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


CALLGRIND = ("valgrind", "--tool=callgrind", "--cache-sim=no")


def served(kind: str, flows: int) -> float:
    """Instructions per unit of ``kind`` (four trivial requests, the shape's four requests, a
    TOTP step-up) in the processes of a one-worker ``stepup serve`` set-up under callgrind."""
    from .flows import Recorder, Users, totp_stepup
    from .http import Connection
    from .ratio import Baseline, Bridge

    settings = argparse.Namespace(workers=1, server_core=0, users=1000)
    totals = []
    for units in (20, 20 + flows):
        folder = Path(tempfile.mkdtemp(prefix="stepup-callgrind-"))
        wrapper = [*CALLGRIND, f"--callgrind-out-file={folder}/out.%p"]
        if kind == "totp":
            target = Bridge("sqlite", settings, lambda line: None, wrapper=wrapper)
            users = target.users
        else:
            target = Baseline(kind, f"bench.{kind}", "/" if kind == "trivial" else "/healthz",
                              settings, wrapper)
            users = Users("s", 1000)
        try:
            for _ in range(units):
                browser = Connection("127.0.0.1", target.server.port)
                if kind == "trivial":
                    for _ in range(4):
                        browser.request("GET", "/")
                else:
                    totp_stepup(browser, browser, Recorder(), users)
        finally:
            target.stop()  # callgrind writes each process's totals as it exits
        totals.append(sum(_total(dump.read_text(errors="replace"))
                          for dump in folder.iterdir()))
        shutil.rmtree(folder, ignore_errors=True)
    return (totals[1] - totals[0]) / flows


def _total(dump: str) -> int:
    for line in dump.splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=20)
    parser.add_argument("--tree", type=Path, default=REPO, help="checkout whose bridge to run")
    parser.add_argument("--served", action="store_true",
                        help="count a served one-worker gunicorn set-up instead (this tree)")
    parser.add_argument("--child", choices=["trivial", "shape", "totp"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.flows, args.tree.resolve())
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    if args.served:
        per = {kind: served(kind, args.flows) for kind in ("trivial", "shape", "totp")}
        print(f"served by one gunicorn worker under callgrind, {args.flows} units each, SQLite")
        _report(per["trivial"] / 4, per["totp"], 4, per["shape"], 4)
        return
    trivial, five = count("trivial", args.flows, REPO)
    trivial /= args.flows * five
    shape, made = count("shape", args.flows, REPO)
    shape /= args.flows
    stepup, n = count("totp", args.flows, args.tree)
    stepup /= args.flows
    commit = subprocess.run(["git", "-C", str(args.tree), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"tree {args.tree} ({commit or 'no git'}), {args.flows} measured flows each, SQLite")
    _report(trivial, stepup, n, shape, made)


def _report(trivial: float, stepup: float, n: float, shape: float, made: float) -> None:
    """Instructions per trivial request, per step-up (``n`` requests) and per shape (``made``)."""
    def millions(value: float) -> str:
        return f"{value / 1e6:7.2f} M instructions"

    rows = [("trivial request", millions(trivial)),
            (f"TOTP step-up ({n:.0f} requests)", millions(stepup)),
            ("ratio, 4 trivial / step-up", f"{4 * trivial / stepup:7.3f}"),
            (f"step-up beyond {n:.0f} trivial", millions(stepup - n * trivial)),
            (f"bare-Flask shape ({made:.0f} requests)", millions(shape)),
            ("ratio, 4 trivial / shape", f"{4 * trivial / shape:7.3f}"),
            ("step-up / shape", f"{stepup / shape:7.2f}")]
    for label, value in rows:
        print(f"  {label:<30}{value}")


if __name__ == "__main__":
    main()
