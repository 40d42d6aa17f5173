"""What a browser's requests beside a step-up's four cost the bridge, against the step-up.

    taskset -c 1 .venv/bin/python -m bench.browser_extras [--rounds 5]

In process (Flask's test client, SQLite), alternating rounds: a TOTP step-up as
``bench.instructions`` makes it, and what a browser sent beside it while every page's stylesheet
and script came with ``no-cache``: a conditional GET (304) of each, and a new browser's
``/favicon.ico`` (the 404 page). Prints the CPU of each and their ratio. Pages now name the
files by their digest and carry their icon, so a browser sends none of these
(``tests/e2e/test_browser_requests.py`` counts it): this is what that saves.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from .flows import Recorder, Users, seeded_bridge, totp_stepup
from .ratio import InProcess


def _cpu_per_call(work: Callable[[], None], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        work()
    return (time.process_time() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    users = Users("u", 5000)
    app = seeded_bridge("stepup-extras-", users)
    flows, browser = InProcess(app), app.test_client(use_cookies=False)
    tags = {path: browser.get(path).headers["ETag"]
            for path in ("/static/style.css", "/static/stepup.js")}

    def extras() -> None:
        for path, tag in tags.items():
            assert browser.get(path, headers={"If-None-Match": tag}).status_code == 304
        assert browser.get("/favicon.ico").status_code == 404

    def stepup() -> None:
        totp_stepup(flows, flows, Recorder(), users)

    measured: dict[str, list[float]] = {"extras": [], "stepup": []}
    for work in (extras, stepup):  # warm-up
        _cpu_per_call(work, 50)
    for _ in range(args.rounds):
        measured["extras"].append(_cpu_per_call(extras, args.calls))
        measured["stepup"].append(_cpu_per_call(stepup, args.calls))
    extra, step = (statistics.median(measured[k]) for k in ("extras", "stepup"))
    print(f"two revalidations and a favicon 404  {extra * 1000:.2f} ms CPU")
    print(f"TOTP step-up (4 requests)            {step * 1000:.2f} ms CPU")
    print(f"ratio                                {extra / step:.2f} of a step-up "
          f"(medians of {args.rounds} alternating rounds of {args.calls})")


if __name__ == "__main__":
    main()
