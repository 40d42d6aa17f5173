"""What a full garbage collection costs a worker, with and without ``gc.freeze()`` (as
``stepup serve``'s master does before it forks its workers).

    .venv/bin/python -m bench.gc_pauses [--flows 500]

Builds the app and runs TOTP step-ups in process (Flask's test client, SQLite), then times a
full collection (``gc.collect()``, what the collector runs on its own whenever enough objects
have survived) before and after freezing, and the collector's time per step-up in each state.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

from .flows import CALLBACK, CLIENT_ID, CLIENT_SECRET, Recorder, Users, totp_stepup
from .ratio import InProcess


def full_collection_ms(times: int = 5) -> float:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        gc.collect()
        spent.append(1000 * (time.perf_counter() - started))
    return statistics.median(spent)


def main() -> None:
    from bridge import create_app
    from bridge.oidc.clients import new_client

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=500)
    args = parser.parse_args()
    app = create_app({"data_dir": Path(tempfile.mkdtemp(prefix="stepup-gc-")),
                      "issuer": "http://127.0.0.1:9", "ip_limit": 100_000}, environ={})
    bridge = app.extensions["stepup"]
    with bridge.store.begin() as tx:
        tx.add_client(new_client(bridge.secrets.pepper, CLIENT_ID, secret=CLIENT_SECRET,
                                 jwks_uri=None, redirect_uris=[CALLBACK],
                                 redirect_uri_prefixes=[]))
    users = Users("u", 4 * args.flows + 100)
    users.seed(bridge.store, bridge.secrets.vault, bridge.secrets.pepper, 0, users.count)
    client, recorder = InProcess(app), Recorder()
    spent = [0.0, 0.0]

    def timer(phase: str, info: dict) -> None:
        spent[phase == "stop"] += time.perf_counter()

    for frozen in (False, True):
        if frozen:
            gc.freeze()
        for _ in range(20):  # warm up: imports, statement caches, templates
            totp_stepup(client, client, recorder, users)
        pause = full_collection_ms()
        gc.callbacks.append(timer)
        spent[:] = [0.0, 0.0]
        for _ in range(args.flows):
            totp_stepup(client, client, recorder, users)
        gc.callbacks.remove(timer)
        per_flow = 1000 * (spent[1] - spent[0]) / args.flows
        print(f"{'frozen' if frozen else 'not frozen':<10} objects tracked "
              f"{len(gc.get_objects()):>7,}, frozen {gc.get_freeze_count():>7,}; a full "
              f"collection {pause:5.1f} ms; collector {per_flow:.3f} ms per step-up")


if __name__ == "__main__":
    main()
