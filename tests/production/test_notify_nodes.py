"""Delivery by real `stepup serve` nodes (gunicorn, a sender thread per worker) on one
PostgreSQL, to a real SMTP server and a real webhook receiver: senders on several nodes never
deliver an event twice, nothing is lost while receivers are down, and a node killed in the
middle of a delivery leaves it to the other node."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from bridge.store import Store, create_engine
from tests.e2e.browser import free_port, wait_for
from tests.receivers import WEBHOOK_SECRET, SmtpSink, WebhookReceiver

from .conftest import REPO, fresh_database, serving, shared_env, stepup


@pytest.fixture
def receivers():
    smtp, hook = SmtpSink().start(), WebhookReceiver().start()
    yield smtp, hook
    smtp.stop()
    hook.stop()


@pytest.fixture
def deployment(postgres_server, receivers, tmp_path):
    smtp, hook = receivers
    url = fresh_database(postgres_server, f"stepup_notify_{os.getpid()}")
    env = shared_env(url, STEPUP_SMTP_URL=smtp.url, STEPUP_SMTP_FROM="stepup@bridge.example",
                     STEPUP_WEBHOOK_URLS=hook.url, STEPUP_WEBHOOK_SECRET=WEBHOOK_SECRET,
                     STEPUP_SMTP_TIMEOUT="1", STEPUP_WEBHOOK_TIMEOUT="3",
                     STEPUP_NOTIFY_POLL="1", STEPUP_NOTIFY_RETRY_BASE="1",
                     STEPUP_NOTIFY_RETRY_MAX="2", STEPUP_WORKERS="2")
    stepup(env | {"STEPUP_DATA_DIR": str(tmp_path / "cli")}, "db", "upgrade")
    engine = create_engine(url)
    yield env, Store(engine)
    engine.dispose()


def record(store: Store, count: int, prefix: str) -> list[str]:
    """``count`` lockout events, each in its own transaction, as the login pipeline does."""
    ids = []
    for n in range(count):
        with store.begin() as tx:
            tx.set_contact(f"{prefix}{n}", f"{prefix}{n}@example.org", "fr", time.time())
            ids.append(tx.audit("lockout", time.time(), subject=f"{prefix}{n}",
                                client_id="idp"))
    return ids


def wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_two_nodes_deliver_every_event_once(deployment, receivers, tmp_path):
    env, store = deployment
    smtp, hook = receivers
    with serving(env, tmp_path, 2) as (nodes, _):
        ids = record(store, 30, "u")
        wait_until(lambda: len(hook.by_id) == 30 and len(smtp.messages) == 30, 60)
        time.sleep(2)  # a second delivery, if any sender were to make one, shows up now
        # Each node counts its own deliveries (all its workers together): 30 in all.
        counted = [float(m.group(1)) for node in nodes for m in re.finditer(
            r'^stepup_notifications_total\{channel="webhook",outcome="delivered"\} (\S+)$',
            requests.get(f"{node}/metrics", timeout=10).text, re.M)]
        assert sum(counted) == 30
    assert set(hook.by_id) == set(ids)
    assert len(hook.received) == 30 and hook.duplicates == 0
    assert all(entry["valid"] for entry in hook.received)
    assert sorted(m["X-Envelope-To"] for m in smtp.messages) == sorted(
        f"u{n}@example.org" for n in range(30))
    assert {m["Subject"] for m in smtp.messages} == {"Avis de sécurité concernant votre compte"}


def test_receivers_down_then_back_lose_nothing(deployment, receivers, tmp_path):
    env, store = deployment
    smtp, hook = receivers
    smtp.stop()
    hook.mode = "fail"
    with serving(env, tmp_path, 2):
        ids = record(store, 5, "d")
        wait_until(lambda: len(hook.received) >= 10, 30)  # retried, and refused, each time
        smtp.start()
        hook.mode = "ok"
        wait_until(lambda: len(hook.by_id) == 5 and len(smtp.messages) == 5, 30)
        time.sleep(2)
    assert set(hook.by_id) == set(ids) and hook.duplicates == 0
    assert len(smtp.messages) == 5


def start_node(env: dict, folder) -> tuple[str, subprocess.Popen]:
    port = free_port()
    folder.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "serve", "--port", str(port)], cwd=REPO,
        env={**os.environ, "STEPUP_DATA_DIR": str(folder), **env,
             "STEPUP_ISSUER": f"http://127.0.0.1:{port}", "STEPUP_WORKERS": "1"},
        stdout=(folder / "node.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    wait_for(f"http://127.0.0.1:{port}/readyz", 60, process)
    return f"http://127.0.0.1:{port}", process


def test_a_node_killed_mid_delivery_leaves_the_event_to_the_other(deployment, receivers,
                                                                    tmp_path):
    env, store = deployment
    smtp, hook = receivers
    hook.mode, hook.hang_s = "hang", 300  # node A's POST never gets its answer
    _, node_a = start_node(env, tmp_path / "a")
    try:
        [event_id] = record(store, 1, "k")
        wait_until(lambda: len(hook.received) == 1, 20)  # A is inside the delivery
        assert len(smtp.messages) == 1  # (the mail went first)
    finally:
        os.killpg(node_a.pid, signal.SIGKILL)  # gunicorn master and worker, mid-request
        node_a.wait(10)
    hook.mode = "ok"
    _, node_b = start_node(env, tmp_path / "b")
    try:
        # B finds the event claimed by A; A's claim lapses (STEPUP_*_TIMEOUT decide it) and
        # B delivers the webhook, but not the mail A had already sent.
        wait_until(lambda: event_id in hook.by_id, 40)
        time.sleep(2)
    finally:
        node_b.terminate()
        node_b.wait(15)
    assert list(hook.by_id) == [event_id] and hook.by_id[event_id]["valid"]
    assert len(smtp.messages) == 1
