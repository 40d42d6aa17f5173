"""The ratio benchmark: step-ups against a trivial Flask app, in one run, on one pinned core.

    bench/run.sh [--seconds 8] [--databases sqlite,postgresql] [--million] [--out FILE]

(a) a trivial Flask app under exactly ``stepup serve``'s gunicorn settings (the ceiling);
(a') a step-up's four requests in bare Flask (``bench/shape.py``: session, CSRF token, the
page, JSON; none of the bridge's own work), what Flask itself costs for such a flow;
(b) the bridge on the embedded SQLite; (c) the bridge on PostgreSQL (a private cluster).
Every server process (gunicorn master, workers, PostgreSQL) runs on ``--server-core``, this
client on ``--client-core``: on a shared 2-core machine only ratios within one run mean much,
so each saturation phase alternates slices of the ceiling and of the bridge (``--rounds``) and
quotes the median of the slice ratios — by throughput, and by server CPU time per unit of work
(the CPU ratio, which other load on the machine disturbs less).

For each bridge: TOTP step-ups/s at saturation and their ratio to the ceiling, p50/p99 per
endpoint at half of that rate, server CPU ms per step-up, RSS/PSS per worker, then recovery
code step-ups (with rotation) and enrollments; and, from an instrumented in-process run of the
same flows, SQL statements and transactions per request. ``--million`` adds p50 at 1,000 and
at 1,000,000 enrolled users (bulk-seeded through the store).
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from .flows import (
    FlowFailed,
    Recorder,
    Users,
    enrollment,
    recovery_stepup,
    register_client,
    totp_stepup,
)
from .http import Connection, Response
from .report import begin
from .servers import Postgres, Server, cpu_seconds, free_port, memory_mib

#: Requests per flow (the ceiling's "flow" is four trivial requests, as in issue 12): /authorize
#: answers with the first page, then each form posts and redirects to the next page.
REQUESTS = {"totp": 4, "recovery": 7, "enrollment": 6}
CEILING_FLOW = 4
#: A paced flow starting later than this after its due time was held up (a sleep overshoots
#: by well under a millisecond).
LATE = 0.001

Step = Callable[[Connection, Connection, Recorder], None]


@dataclass
class Phase:
    count: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    errors: list[str] = field(default_factory=list)
    recorder: Recorder = field(default_factory=Recorder)
    late: int = 0  # paced flows started more than ``LATE`` after they were due

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def cpu_ms(self) -> float:
        return 1000 * self.server_cpu / max(self.count, 1)


def _client_cpu() -> float:
    t = os.times()
    return t.user + t.system


def run_phase(port: int, step: Step, threads: int, seconds: float, server_pids: Callable,
              rate: float | None = None, limit: int | None = None) -> Phase:
    """Closed loop (``rate`` None: as fast as the server answers) or paced at ``rate``/s."""
    phase = Phase()
    recorders: list[Recorder] = []
    lock = threading.Lock()
    issued = iter(range(limit or 10**9))
    start = time.perf_counter() + 0.05
    stop = start + seconds

    def worker() -> None:
        idp, browser = Connection("127.0.0.1", port), Connection("127.0.0.1", port)
        recorder = Recorder()
        recorders.append(recorder)
        while True:
            with lock:
                i = next(issued, None)
            if i is None:
                return
            # Closed-loop workers wait for ``start`` too: a flow begun before it would be
            # counted over time that ``seconds`` leaves out (an inflated rate).
            due = start + i / rate if rate else max(start, time.perf_counter())
            if due >= stop:
                return
            if (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            elif rate and -wait > LATE:  # every thread was busy when this flow fell due
                with lock:
                    phase.late += 1
            began = time.perf_counter()
            try:
                step(idp, browser, recorder)
            except Exception as e:  # any error is a failed flow, reported: not a thread lost
                with lock:
                    phase.errors.append(f"{type(e).__name__}: {e}")
                idp.close(), browser.close()
                continue
            # Paced: from when the flow was due, so that flows held up behind a stall count
            # their wait (no coordinated omission); the requests' own rows stay service times.
            recorder.add("whole flow", time.perf_counter() - (due if rate else began))
            with lock:
                phase.count += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    cpu0, client0 = cpu_seconds(server_pids()), _client_cpu()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    phase.seconds = time.perf_counter() - start
    phase.server_cpu = cpu_seconds(server_pids()) - cpu0
    phase.client_cpu = _client_cpu() - client0
    phase.recorder.merge(recorders)
    return phase


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile in ms, by nearest rank: the smallest value with at least
    ``q`` of all values at or below it (p50 of [1, 2] is 1, p99 of 1 … 100 is 99)."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- the in-process instrumented run ----------------------------------------------------------
class InProcess:
    """Flask's test client behind the bench client's interface (no network, no gunicorn)."""

    def __init__(self, app):
        self.client = app.test_client(use_cookies=False)

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> Response:
        started = time.perf_counter()
        answer = self.client.open(path, method=method, headers=headers, data=body)
        merged: dict[str, str] = {}
        for name, value in answer.headers.items():
            name = name.lower()
            merged[name] = f"{merged[name]}\n{value}" if name in merged else value
        return Response(answer.status_code, merged, answer.get_data(),
                        time.perf_counter() - started)

    def close(self) -> None:
        pass


def _random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class SqlCounter(Recorder):
    """Counts SQL statements, transactions and pool checkouts per request of one thread
    (a single-statement read outside a transaction counts as a checkout, not a transaction)."""

    def __init__(self, store):
        super().__init__()
        self.pending = [0, 0, 0]
        self.totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.store = store
        store.trace = self._trace  # statements, and transactions (not self-committing reads)
        sa.event.listen(store.engine.pool, "checkout", self._checkout)

    def _trace(self, what: str) -> None:
        self.pending[0 if what == "statement" else 1] += 1

    def _checkout(self, *args) -> None:
        self.pending[2] += 1

    def close(self) -> None:
        self.store.trace = None
        sa.event.remove(self.store.engine.pool, "checkout", self._checkout)

    def add(self, label: str, seconds: float) -> None:
        super().add(label, seconds)
        entry = self.totals[label]
        entry[0] += 1
        for k in range(3):
            entry[k + 1] += self.pending[k]
        self.pending = [0, 0, 0]


def instrumented(app, users: Users, prefix: str, flows: int) -> dict[str, tuple]:
    """Run each kind of flow in process; per kind: requests, statements, transactions,
    checkouts per flow, the per-request detail, and CPU ms per flow (test client included)."""
    store = app.extensions["stepup"].store
    transport = InProcess(app)
    results = {}
    for kind, step in (("totp", lambda i, b, r: totp_stepup(i, b, r, users)),
                       ("recovery", lambda i, b, r: recovery_stepup(i, b, r, users)),
                       ("enrollment", lambda i, b, r: enrollment(i, b, r, prefix))):
        counter = SqlCounter(store)
        step(transport, transport, counter)  # warm up this flow's statement cache
        counter.totals.clear()
        counter.pending = [0, 0, 0]
        cpu0 = time.process_time()
        for _ in range(flows):
            step(transport, transport, counter)
        cpu_ms = 1000 * (time.process_time() - cpu0) / flows
        counter.close()
        requests = {label: entry for label, entry in counter.totals.items()
                    if label != "whole flow"}
        per_flow = [sum(entry[k] for entry in requests.values()) / flows for k in range(4)]
        detail = {label: [e / entry[0] for e in entry[1:]] for label, entry in requests.items()}
        results[kind] = (per_flow, detail, cpu_ms)
    return results


# -- one bridge -------------------------------------------------------------------------------
class Bridge:
    """A bridge on one database: seeded users, a served node, and an in-process twin."""

    def __init__(self, database: str, args, out: Callable[[str], None],
                 users: int | None = None, wrapper: Sequence[str] = ()):
        from bridge import create_app
        from bridge.store import create_engine, migrate

        self.name, self.out = database, out
        self.pg: Postgres | None = None
        self.app = self.server = None
        self.data = Path(tempfile.mkdtemp(prefix=f"stepup-bench-{database}-"))
        try:
            self.pg = Postgres(args.server_core) if database == "postgresql" else None
            self.url = self.pg.url if self.pg else ""
            if self.pg:
                engine = create_engine(self.url)
                migrate.upgrade(engine)
                engine.dispose()
            self.port = free_port()
            issuer = f"http://127.0.0.1:{self.port}"
            # The deployment's secrets, as every node and command of a shared database needs them
            # (none is made up for one: docs/configuration.md).
            secrets = {"secret_key": _random_key(), "pepper": _random_key(),
                       "encryption_keys": f"k1:{_random_key()}"}
            self.app = create_app({"data_dir": self.data, "database_url": self.url,
                                   "issuer": issuer, "ip_limit": 100_000, **secrets}, environ={})
            bridge = self.app.extensions["stepup"]
            register_client(self.app)
            count = users or args.users
            self.users = Users("u", count)
            started = time.perf_counter()
            self.users.seed(bridge.store, bridge.secrets.vault, bridge.secrets.pepper, 0, count)
            out(f"  seeded {count:,} users through the store in "
                f"{time.perf_counter() - started:.1f} s")
            if self.pg:  # as a long-running database would be: autovacuum's work after a bulk
                # load done now, not on the server core in the middle of a measurement
                with bridge.store.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql("VACUUM ANALYZE")
            env = {**os.environ, "STEPUP_DATA_DIR": str(self.data), "STEPUP_ISSUER": issuer,
                   "STEPUP_DATABASE_URL": self.url, "STEPUP_IP_LIMIT": "100000",
                   "STEPUP_WORKERS": str(args.workers),
                   **{f"STEPUP_{name.upper()}": value for name, value in secrets.items()}}
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            self.server = Server(f"bridge ({database})", ["-m", "bridge.cli", "serve", "--port",
                                 str(self.port)], env, self.port, args.server_core,
                                 self.data / "server.log", "/readyz", wrapper)
        except BaseException:  # Ctrl-C too: pg_ctl runs the cluster in a session of its
            # own, which the terminal's interrupt never reaches
            if (log := self.data / "server.log").exists():  # about to go with its folder
                out(f"  the bridge's server log ended:\n{log.read_text(errors='replace')[-2000:]}")
            self.stop()
            raise

    def pids(self) -> list[int]:
        return self.server.pids() + (self.pg.pids() if self.pg else [])

    def stop(self) -> None:
        """Stop what was started (all of it, or as far as a failed start got)."""
        if self.server:
            self.server.stop()
        if self.app:
            self.app.extensions["stepup"].store.engine.dispose()
        if self.pg:
            self.pg.stop()
        shutil.rmtree(self.data, ignore_errors=True)


def _check(phase: Phase, what: str, out: Callable[[str], None]) -> None:
    if phase.errors:
        out(f"  !! {what}: {len(phase.errors)} failed flows, first: {phase.errors[0]}")
    if phase.client_cpu / phase.seconds > 0.9:
        out(f"  !! {what}: the client used {phase.client_cpu / phase.seconds:.0%} of its core: "
            "the figure may be client-bound")


def _late(phase: Phase) -> str:
    return (f"{phase.late} of {phase.count + len(phase.errors)} flows started over "
            f"{1000 * LATE:g} ms late; whole flow timed from when due")


def _latency_table(phase: Phase, out: Callable[[str], None], indent: str = "    ") -> None:
    for label, values in sorted(phase.recorder.latencies.items(),
                                key=lambda kv: (kv[0] == "whole flow", kv[0])):
        out(f"{indent}{label:<30} p50 {pct(values, 0.5):6.1f} ms   p99 {pct(values, 0.99):6.1f} ms"
            f"   (n={len(values)})")


def measure_bridge(database: str, args, ceiling: Ceiling, out: Callable[[str], None]) -> dict:
    out(f"\n== ({'b' if database == 'sqlite' else 'c'}) bridge on {database} ==")
    target = Bridge(database, args, out)
    summary: dict = {}
    try:
        users = target.users

        def totp(i, b, r):
            totp_stepup(i, b, r, users)

        run_phase(target.port, totp, args.threads, 2, target.pids)  # warm-up
        pair = paired(ceiling, target.port, totp, target.pids, args, args.seconds)
        sat = pair.bridge
        _check(sat, "TOTP saturation", out)
        ratio, cpu_ratio = pair.ratio, pair.cpu_ratio
        out(f"  TOTP step-ups/s            {sat.rate:8.1f}   ratio to the ceiling {ratio:.2f} "
            f"(per 4-request flow; median of {len(pair.ratios)} paired slices "
            f"{', '.join(f'{r:.2f}' for r in pair.ratios)}; ceiling meanwhile "
            f"{pair.ceiling.rate:.0f} requests/s)")
        out(f"  server CPU per step-up     {sat.cpu_ms():8.2f} ms   CPU ratio {cpu_ratio:.2f} "
            f"(4 trivial requests' CPU / a step-up's; trivial {pair.ceiling.cpu_ms():.3f} ms)"
            f"   (server core {sat.server_cpu / sat.seconds:.0%} busy, client core "
            f"{sat.client_cpu / sat.seconds:.0%})")
        half = run_phase(target.port, totp, args.threads * 2, args.seconds, target.pids,
                         rate=sat.rate / 2)
        _check(half, "TOTP half saturation", out)
        out(f"  latency at half saturation ({half.rate:.0f} step-ups/s; {_late(half)}):")
        _latency_table(half, out)
        worker_rss = []
        for worker in target.server.workers():
            rss, pss = memory_mib(worker)
            worker_rss.append(rss)
            out(f"  worker {worker}: RSS {rss:.0f} MiB, PSS {pss:.0f} MiB")
        master_rss, master_pss = memory_mib(target.server.process.pid)
        out(f"  master: RSS {master_rss:.0f} MiB, PSS {master_pss:.0f} MiB")

        def rc(i, b, r):
            recovery_stepup(i, b, r, users)

        def enroll(i, b, r):
            enrollment(i, b, r, "e")

        rec = _other_flow(ceiling, target, rc, args, out, "recovery-code step-ups/s",
                          f"{REQUESTS['recovery']} requests, rotation included")
        enr = _other_flow(ceiling, target, enroll, args, out, "enrollments/s",
                          f"{REQUESTS['enrollment']} requests")
        summary.update(rate=sat.rate, ratio=ratio, cpu=sat.cpu_ms(), cpu_ratio=cpu_ratio,
                       rec=rec.bridge.rate, enr=enr.bridge.rate, half=half,
                       rss=max(worker_rss))

        if args.million:
            million(database, args, out)

        out("  SQL per flow (instrumented in-process run, Flask test client; statements "
            "exclude BEGIN/COMMIT and savepoints):")
        counted = instrumented(target.app, users, "i", args.instrumented_flows)
        for kind, (per_flow, detail, cpu_ms) in counted.items():
            out(f"    {kind:<11} {per_flow[1]:5.1f} statements  {per_flow[2]:4.1f} transactions"
                f"  {per_flow[3]:4.1f} pool checkouts per flow; in-process CPU "
                f"{cpu_ms:.2f} ms/flow")
            if kind == "totp":
                for label, (stmts, txs, checkouts) in sorted(detail.items()):
                    out(f"      {label:<28} {stmts:4.1f} statements {txs:4.1f} "
                        f"transactions {checkouts:4.1f} checkouts")
    finally:
        target.stop()
    return summary


def _other_flow(ceiling: Ceiling, target: Bridge, step: Step, args,
                out: Callable[[str], None], label: str, what: str):
    """A flow other than the TOTP step-up, paired with the ceiling: its rate and its cost in
    trivial requests."""
    # A few flows first, as the TOTP phase has its warm-up: each worker's first flow of a
    # kind costs about three times a later one (its pages, statements and code paths new).
    run_phase(target.port, step, args.threads, 1, target.pids, limit=4 * args.threads)
    pair = paired(ceiling, target.port, step, target.pids, args, args.seconds / 2)
    _check(pair.bridge, label, out)
    out(f"  {label:<27}{pair.bridge.rate:8.1f}   ({what})   costs "
        f"{CEILING_FLOW / pair.ratio:.0f} trivial requests' time, "
        f"{CEILING_FLOW / pair.cpu_ratio:.0f} trivial requests' CPU "
        f"({pair.bridge.cpu_ms():.2f} ms)")
    return pair


def million(database: str, args, out: Callable[[str], None]) -> None:
    """p50 with 1,000 enrolled users beside p50 with 1,000,000 (bulk-seeded before start).

    Two bridges on the same core, measured in alternating slices from a closed loop of two
    client threads (service time, little queueing), so that the machine's other load hits
    both alike; users are picked at random."""
    bridges: list[Bridge] = []
    try:  # each started inside: the first is stopped if the second fails to start
        for users in (1000, args.million_users):
            bridges.append(Bridge(database, args, out, users=users))
        phases: list[list[Recorder]] = [[], []]
        steps = []
        rounds = max(2, args.rounds)
        # 1,000 users give only so many TOTP step-ups without a replay, and more users would
        # change what is compared: the warm-up and each slice are capped at an equal share of
        # 90 % of them (random picks still find a fresh user), the same for both bridges.
        cap = bridges[0].users.totp_flows(0) * 9 // 10 // (rounds + 1)
        capped = False
        for bridge in bridges:
            bridge.users.random_order = True
            steps.append(lambda i, b, r, users=bridge.users: totp_stepup(i, b, r, users))
            run_phase(bridge.port, steps[-1], 2, 2, bridge.pids, limit=cap)  # warm-up
        for _ in range(rounds):
            for k, bridge in enumerate(bridges):
                phase = run_phase(bridge.port, steps[k], 2, args.seconds / rounds, bridge.pids,
                                  limit=cap)
                _check(phase, f"{bridge.users.count:,} users", out)
                phases[k].append(phase.recorder)
                capped |= phase.count + len(phase.errors) >= cap
        small, large = Recorder(), Recorder()
        small.merge(phases[0])
        large.merge(phases[1])
        out(f"  p50, 2 client threads, alternating slices: 1,000 users vs "
            f"{args.million_users:,} users"
            + (f" (slices cut short at {cap} step-ups each)" if capped else ""))
        for label in sorted(small.latencies):
            a, b = pct(small.latencies[label], 0.5), pct(large.latencies[label], 0.5)
            out(f"    {label:<30} {a:6.1f} ms   {b:6.1f} ms   ({(b - a) / a:+.0%})")
    finally:
        for bridge in bridges:
            bridge.stop()


class Baseline:
    """A bare Flask app of ``bench/`` under ``stepup serve``'s own gunicorn set-up, pinned
    to the server core like the bridge."""

    def __init__(self, name: str, module: str, ready_path: str, args,
                 wrapper: Sequence[str] = ()):
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="stepup-bench-flask-"))
        env = {**os.environ, "STEPUP_WORKERS": str(args.workers),
               "PROMETHEUS_MULTIPROC_DIR": str(self.folder)}
        self.server = Server(name, ["-m", module, str(self.port)], env, self.port,
                             args.server_core, self.folder / "server.log", ready_path, wrapper)
        self.args = args

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class Ceiling(Baseline):
    """The trivial Flask app, kept running so every bridge phase is paired with it."""

    def __init__(self, args):
        super().__init__("Flask baseline", "bench.trivial", "/", args)

    @staticmethod
    def hello(idp: Connection, browser: Connection, recorder: Recorder) -> None:
        answer = browser.request("GET", "/")
        recorder.add("GET /", answer.seconds)
        if answer.status != 200:
            raise FlowFailed(f"HTTP {answer.status}")

    def phase(self, seconds: float, rate: float | None = None) -> Phase:
        return run_phase(self.port, self.hello, self.args.threads * (2 if rate else 1), seconds,
                         self.server.pids, rate=rate)


@dataclass
class Paired:
    """Alternating slices of the ceiling and a bridge flow: the machine's noise hits both
    alike, and each slice's ratio is taken against its neighbouring ceiling slice."""

    ceiling: Phase
    bridge: Phase
    ratios: list[float]
    cpu_ratios: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def cpu_ratio(self) -> float:
        return statistics.median(self.cpu_ratios)


def paired(ceiling: Ceiling, port: int, step: Step, pids: Callable, args,
           seconds: float) -> Paired:
    rounds = max(2, args.rounds)
    total_c, total_b = Phase(), Phase()
    ratios, cpu_ratios = [], []
    for _ in range(rounds):
        c = ceiling.phase(seconds / rounds)
        b = run_phase(port, step, args.threads, seconds / rounds, pids)
        ratios.append(b.rate / (c.rate / CEILING_FLOW))
        cpu_ratios.append(CEILING_FLOW * c.cpu_ms() / b.cpu_ms())
        for total, part in ((total_c, c), (total_b, b)):
            total.count += part.count
            total.seconds += part.seconds
            total.server_cpu += part.server_cpu
            total.client_cpu += part.client_cpu
            total.errors += part.errors
    return Paired(total_c, total_b, ratios, cpu_ratios)


def measure_ceiling(ceiling: Ceiling, args, out: Callable[[str], None]) -> tuple[float, float]:
    """Requests/s at saturation and server CPU ms per request, on their own."""
    out("\n== (a) trivial Flask app, same gunicorn settings ==")
    ceiling.phase(2)
    sat = ceiling.phase(args.seconds)
    _check(sat, "ceiling", out)
    out(f"  requests/s                 {sat.rate:8.1f}   = {sat.rate / CEILING_FLOW:.1f} "
        f"four-request flows/s   CPU {sat.cpu_ms():.3f} ms/request   (server core "
        f"{sat.server_cpu / sat.seconds:.0%} busy, client core "
        f"{sat.client_cpu / sat.seconds:.0%})")
    half = ceiling.phase(args.seconds, rate=sat.rate / 2)
    _check(half, "ceiling at half saturation", out)
    out(f"  latency at half saturation ({half.rate:.0f} requests/s; {_late(half)}):")
    _latency_table(half, out)
    for worker in ceiling.server.workers():
        rss, pss = memory_mib(worker)
        out(f"  worker {worker}: RSS {rss:.0f} MiB, PSS {pss:.0f} MiB")
    return sat.rate, sat.cpu_ms()


def measure_shape(ceiling: Ceiling, args, out: Callable[[str], None]) -> float:
    """The step-up's four requests in bare Flask (``bench/shape.py``): how close a step-up
    can come to the ceiling at all with Flask, its session and its CSRF token."""
    out("\n== (a') a step-up's HTTP shape in bare Flask (bench/shape.py), same settings ==")
    shape = Baseline("Flask step-up shape", "bench.shape", "/healthz", args)
    try:
        users = Users("shape", args.users)

        def flow(i, b, r):
            totp_stepup(i, b, r, users)

        run_phase(shape.port, flow, args.threads, 2, shape.server.pids)  # warm-up
        pair = paired(ceiling, shape.port, flow, shape.server.pids, args, args.seconds)
        _check(pair.bridge, "shape", out)
        out(f"  shaped flows/s             {pair.bridge.rate:8.1f}   ratio to the ceiling "
            f"{pair.ratio:.2f} (median of {len(pair.ratios)} paired slices "
            f"{', '.join(f'{r:.2f}' for r in pair.ratios)}; ceiling meanwhile "
            f"{pair.ceiling.rate:.0f} requests/s)")
        out(f"  server CPU per flow        {pair.bridge.cpu_ms():8.2f} ms   CPU ratio "
            f"{pair.cpu_ratio:.2f}   (session, CSRF, form parsing, the page, JSON; no store, "
            f"no TOTP, no client authentication, no signature)")
        return pair.ratio
    finally:
        shape.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8, help="per measured phase")
    parser.add_argument("--threads", type=int, default=8, help="client threads at saturation")
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternating ceiling/bridge slices per saturation phase")
    parser.add_argument("--workers", type=int, default=2, help="STEPUP_WORKERS")
    parser.add_argument("--users", type=int, default=50_000, help="users seeded per database")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--million", action="store_true",
                        help="also compare p50 at 1,000 and 1,000,000 enrolled users")
    parser.add_argument("--million-users", type=int, default=1_000_000)
    parser.add_argument("--instrumented-flows", type=int, default=100)
    args, out = begin(parser, "ratio benchmark")
    out(f"server processes pinned to core {args.server_core}, client to core "
        f"{args.client_core}; gunicorn workers {args.workers}; client threads {args.threads} "
        f"(x2 when paced); {args.seconds:g} s per phase; load average "
        f"{os.getloadavg()[0]:.2f} at start")
    ceiling = Ceiling(args)
    try:
        rate, cpu_ms = measure_ceiling(ceiling, args, out)
        shape = measure_shape(ceiling, args, out)
        summaries = {db: measure_bridge(db, args, ceiling, out)
                     for db in args.databases.split(",") if db}
    finally:
        ceiling.stop()
    out("\n== summary ==")
    out(f"  ceiling alone: {rate:.0f} trivial requests/s = {rate / CEILING_FLOW:.0f} "
        f"four-request flows/s, {cpu_ms:.3f} ms CPU per request")
    out(f"  a step-up's HTTP shape in bare Flask: ratio {shape:.2f} (about the best a Flask app "
        "with a session, a CSRF token and a page reaches for these requests)")
    for db, s in summaries.items():
        worst = max(pct(v, 0.99) for k, v in s["half"].recorder.latencies.items()
                    if k != "whole flow")
        out(f"  {db:<11} TOTP {s['rate']:6.1f}/s  ratio {s['ratio']:.2f}  CPU ratio "
            f"{s['cpu_ratio']:.2f}  CPU {s['cpu']:.2f} ms/step-up  worst endpoint p99 at half "
            f"load {worst:.1f} ms ({s['half'].late} late starts)  worker RSS {s['rss']:.0f} MiB  "
            f"recovery {s['rec']:.1f}/s  enrollment {s['enr']:.1f}/s")
    out.write(args.out)


if __name__ == "__main__":
    sys.exit(main())
