"""Two `stepup serve` nodes (gunicorn) behind one issuer, sharing PostgreSQL and Redis.

Every rule that a single node keeps must hold across nodes: state lives in the database
(and Redis), never in one process's memory.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from bridge.factors import totp
from stepup_handoff import HandoffClient

from .conftest import CALLBACK, Browser

pytestmark = pytest.mark.e2e


def idp(cluster) -> HandoffClient:
    return HandoffClient(cluster.env["STEPUP_ISSUER"], cluster.client_id,
                         client_secret=cluster.client_secret)


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def enroll(cluster, subject: str, node: str) -> tuple[str, str]:
    """Enroll on ``node``; returns (TOTP secret, recovery code)."""
    client = idp(cluster)
    pending = client.start(subject, CALLBACK)
    browser = Browser()
    browser.open(node, path_of(pending.authorize_url))
    secret = browser.shown("totp-secret")
    browser.post(node, "enroll", otp=totp.code_at(secret, time.time()))
    code = browser.shown("recovery-code")
    done = browser.post(node, "saved", saved="yes")
    client.finish(pending, query(done))
    return secret, code


def query(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def test_hand_off_pushed_to_a_completes_on_b(cluster):
    a, b = cluster.nodes
    client = idp(cluster)
    pending = client.start("node-user-1", CALLBACK, preferred_username="one")
    browser = Browser()
    browser.open(b, path_of(pending.authorize_url))  # request_uri pushed to A, used on B
    secret = browser.shown("totp-secret")
    assert browser.post(b, "enroll", otp=totp.code_at(secret, time.time())).status_code == 303
    callback = query(browser.post(a, "saved", saved="yes"))  # and the flow goes on at A
    # Redeem the code at B by hand (the client's token endpoint is the issuer's, A).
    token = requests.post(f"{b}/token", auth=(cluster.client_id, cluster.client_secret), data={
        "grant_type": "authorization_code", "code": callback["code"],
        "redirect_uri": CALLBACK, "code_verifier": pending.code_verifier}, timeout=10)
    assert token.status_code == 200, token.text
    # The same code is spent on A too.
    again = requests.post(f"{a}/token", auth=(cluster.client_id, cluster.client_secret), data={
        "grant_type": "authorization_code", "code": callback["code"],
        "redirect_uri": CALLBACK, "code_verifier": pending.code_verifier}, timeout=10)
    assert again.json()["error"] == "invalid_grant"


def test_totp_code_accepted_on_a_is_refused_on_b(cluster):
    a, b = cluster.nodes
    secret, _ = enroll(cluster, "node-user-2", a)
    code = totp.code_at(secret, time.time() + 30)  # the next step (enrollment spent this one)
    first, second = Browser(), Browser()
    client = idp(cluster)
    first.open(a, path_of(client.start("node-user-2", CALLBACK).authorize_url))
    second.open(b, path_of(client.start("node-user-2", CALLBACK).authorize_url))
    assert first.post(a, "totp", otp=code).status_code == 303
    refused = second.post(b, "totp", otp=code)
    assert refused.status_code == 400
    assert "already been used" in refused.text


def test_concurrent_recovery_confirmations_on_a_and_b_one_wins(cluster):
    a, b = cluster.nodes
    _, recovery = enroll(cluster, "node-user-3", a)
    client = idp(cluster)
    browsers = {a: Browser(), b: Browser()}
    for node, browser in browsers.items():
        browser.open(node, path_of(client.start("node-user-3", CALLBACK).authorize_url))
        assert browser.post(node, "recovery", recovery_code=recovery).status_code == 303
    staged = {node: browser.shown("recovery-code") for node, browser in browsers.items()}
    barrier = threading.Barrier(2)
    results: dict[str, requests.Response] = {}

    def confirm(node: str) -> None:
        barrier.wait()
        results[node] = browsers[node].post(node, "saved", saved="yes")

    threads = [threading.Thread(target=confirm, args=(node,)) for node in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [n for n, r in results.items() if r.status_code == 303]
    assert len(winners) == 1, {n: r.status_code for n, r in results.items()}
    loser = next(n for n in browsers if n not in winners)
    assert "replaced in another sign-in" in results[loser].text
    # Only the winner's staged code works now, on either node.
    for node, code in staged.items():
        browser = Browser()
        browser.open(loser, path_of(client.start("node-user-3", CALLBACK).authorize_url))
        outcome = browser.post(loser, "recovery", recovery_code=code)
        assert (outcome.status_code == 303) == (node in winners)


def test_failure_counter_and_lock_are_shared(cluster):
    a, b = cluster.nodes
    secret, _ = enroll(cluster, "node-user-4", a)
    good = {totp.code_at(secret, time.time() + d) for d in (-30, 0, 30, 60)}
    wrong = next(c for c in ("123456", "234567", "345678", "456789", "567890") if c not in good)
    browser = Browser()
    browser.open(a, path_of(idp(cluster).start("node-user-4", CALLBACK).authorize_url))
    statuses = []
    for node in [a, b, a, b]:  # limit 4; the growing delay only starts after the 4th
        statuses.append(browser.post(node, "totp", otp=wrong).status_code)
    assert statuses == [400, 400, 400, 403], statuses
    assert "locked" in browser.page
    fresh = Browser()
    fresh.open(b, path_of(idp(cluster).start("node-user-4", CALLBACK).authorize_url))
    assert "Two-step verification is locked" in fresh.page


def test_metrics_and_health_on_each_node(cluster):
    for node in cluster.nodes:
        assert requests.get(f"{node}/healthz", timeout=5).json() == {"status": "ok"}
        ready = requests.get(f"{node}/readyz", timeout=5).json()
        assert ready["status"] == "ready"
        metrics = requests.get(f"{node}/metrics", timeout=5).text
        assert "stepup_request_seconds_bucket" in metrics
    # Challenges counted by the workers of node A add up in its /metrics.
    text = requests.get(f"{cluster.nodes[0]}/metrics", timeout=5).text
    assert 'stepup_challenges_total{factor="otp",outcome="success"}' in text
