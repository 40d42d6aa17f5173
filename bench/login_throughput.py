"""Hand-off throughput and latency against a real `stepup serve` (gunicorn).

Starts one bridge node on SQLite (default) or PostgreSQL (``--database-url``), registers an
IdP, then runs ``--users`` complete hand-offs from ``--concurrency`` threads, twice: first the
enrollment hand-off of each user (PAR, authorize, enroll page, first code, save the recovery
code, token), then a TOTP hand-off of each user (PAR, authorize, code, token). Prints
hand-offs per second, latency percentiles per hand-off, and the RSS of the bridge processes.

    .venv/bin/python bench/login_throughput.py --users 200 --concurrency 8 --workers 2

Numbers depend on the machine: report them with its name and core count, or as ratios of two
runs on the same machine.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import platform
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from bridge.factors import totp

REPO = Path(__file__).resolve().parents[1]
CALLBACK = "http://127.0.0.1:9/callback"
SECRET = "bench-secret-0123456789"  # noqa: S105 - a throw-away benchmark client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Handoff:
    """One IdP-driven hand-off over HTTP, with its own browser session."""

    def __init__(self, base: str, subject: str):
        self.base, self.subject = base, subject
        self.http = requests.Session()
        self.verifier = secrets.token_urlsafe(48)

    def push_and_open(self) -> str:
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(self.verifier.encode()).digest()).decode().rstrip("=")
        par = self.http.post(f"{self.base}/par", auth=("bench-idp", SECRET), data={
            "response_type": "code", "scope": "openid", "redirect_uri": CALLBACK,
            "state": "s", "nonce": secrets.token_urlsafe(8), "code_challenge": challenge,
            "code_challenge_method": "S256", "login_hint": self.subject}, timeout=30)
        uri = par.json()["request_uri"]
        opened = self.http.get(f"{self.base}/authorize",
                               params={"client_id": "bench-idp", "request_uri": uri},
                               allow_redirects=False, timeout=30)
        self.flow = opened.headers["Location"]
        return self.http.get(self.base + self.flow, timeout=30).text

    def post(self, page: str, action: str, **form) -> requests.Response:
        form["csrf_token"] = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        return self.http.post(f"{self.base}{self.flow}/{action}", data=form,
                              allow_redirects=False, timeout=30)

    def redeem(self, response: requests.Response) -> None:
        code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
        token = self.http.post(f"{self.base}/token", auth=("bench-idp", SECRET), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
            "code_verifier": self.verifier}, timeout=30)
        assert token.status_code == 200, token.text


def enroll(base: str, subject: str) -> str:
    handoff = Handoff(base, subject)
    page = handoff.push_and_open()
    secret = re.search(r'id="totp-secret"[^>]*>([^<]+)<', page).group(1).strip()
    saved = handoff.post(page, "enroll", otp=totp.code_at(secret, time.time()))
    page = handoff.http.get(base + saved.headers["Location"], timeout=30).text
    handoff.redeem(handoff.post(page, "saved", saved="yes"))
    return secret


def totp_login(base: str, subject: str, secret: str) -> None:
    handoff = Handoff(base, subject)
    page = handoff.push_and_open()
    handoff.redeem(handoff.post(page, "totp", otp=totp.code_at(secret, time.time() + 30)))


def timed(fn, *args) -> float:  # one hand-off's wall time
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def rss_mib(pid: int) -> float:
    """RSS of a process and its children (the gunicorn master and workers)."""
    pids = [pid, *map(int, subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                          text=True).stdout.split())]
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def report(name: str, latencies: list[float], wall: float) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(f"{name:<10} {len(latencies) / wall:8.1f} hand-offs/s   p50 {q[49] * 1000:7.1f} ms   "
          f"p95 {q[94] * 1000:7.1f} ms   p99 {q[98] * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="stepup-bench-")
    port = free_port()
    env = {**os.environ, "STEPUP_DATA_DIR": data, "STEPUP_ISSUER": f"http://127.0.0.1:{port}",
           "STEPUP_DATABASE_URL": args.database_url, "STEPUP_WORKERS": str(args.workers),
           "STEPUP_IP_LIMIT": "100000"}
    cli = [sys.executable, "-m", "bridge.cli"]
    if args.database_url:
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run([*cli, "client", "add", "--client-id", "bench-idp", "--client-secret", SECRET,
                    "--redirect-uri", CALLBACK, "--replace"], env=env, check=True,
                   capture_output=True)
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        run_id = secrets.token_hex(3)
        subjects = [f"bench-{run_id}-{i}" for i in range(args.users)]
        print(f"machine: {platform.node()} {os.cpu_count()} CPUs {platform.machine()}, "
              f"Python {platform.python_version()}; database: "
              f"{'PostgreSQL' if args.database_url else 'SQLite'}; gunicorn workers: "
              f"{args.workers}; client threads: {args.concurrency}; users: {args.users}")
        enrolled: dict[str, str] = {}

        def timed_enroll(subject: str) -> float:
            started = time.perf_counter()
            enrolled[subject] = enroll(base, subject)
            return time.perf_counter() - started

        with ThreadPoolExecutor(args.concurrency) as pool:
            started = time.perf_counter()
            latencies = list(pool.map(timed_enroll, subjects))
            report("enroll", latencies, time.perf_counter() - started)
        secrets_ = list(enrolled.items())
        with ThreadPoolExecutor(args.concurrency) as pool:
            started = time.perf_counter()
            latencies = list(pool.map(lambda p: timed(totp_login, base, *p), secrets_))
            report("totp", latencies, time.perf_counter() - started)
        print(f"bridge RSS (master + workers): {rss_mib(server.pid):.0f} MiB")
    finally:
        server.terminate()
        server.wait(15)


if __name__ == "__main__":
    main()
