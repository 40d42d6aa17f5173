"""Real production components: two `stepup serve` nodes (gunicorn) on one PostgreSQL, Redis."""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import fresh_database
from tests.e2e.browser import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
CALLBACK = "http://127.0.0.1:9/callback"  # never fetched: the tests read the Location header


def start_redis(folder: Path) -> tuple[str, subprocess.Popen]:
    """A real redis-server on 127.0.0.1, no persistence; returns its URL once it answers."""
    import redis

    port = free_port()
    log = folder / "redis.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            stdout=out, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            return url, process
        except redis.ConnectionError:
            if process.poll() is not None:
                break
            time.sleep(0.05)
    process.kill()
    # Its reason on the first line: the one a test run's summary shows for each test needing it.
    raise RuntimeError(f"redis-server did not start: {' '.join(log.read_text().split()[-60:])}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url, process = start_redis(tmp_path_factory.mktemp("redis"))
    yield url, process
    process.terminate()
    process.wait(10)


def stepup(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          check=check, timeout=120)


@dataclass
class Cluster:
    """Two bridge nodes sharing one PostgreSQL, one Redis, one issuer and the same secrets."""

    nodes: list[str]
    env: dict
    client_id: str = "idp"
    client_secret: str = "cluster-secret-0123456789"


@contextmanager
def serving(env: dict, folder: Path, count: int):
    """``count`` `stepup serve` nodes on ``env`` (each its own data folder and log); yields
    their base URLs and log files once every node is ready."""
    ports = [free_port() for _ in range(count)]
    env = {"STEPUP_ISSUER": f"http://127.0.0.1:{ports[0]}", **env}
    processes, logs = [], []
    for port in ports:
        data = folder / f"node{port}"
        data.mkdir()
        logs.append(data / "node.log")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "serve", "--port", str(port)], cwd=REPO,
            env={**os.environ, "STEPUP_DATA_DIR": str(data), **env},
            stdout=logs[-1].open("w"), stderr=subprocess.STDOUT))
    try:
        nodes = [f"http://127.0.0.1:{port}" for port in ports]
        for node, process in zip(nodes, processes, strict=True):
            wait_for(f"{node}/readyz", 60, process)
        yield nodes, logs
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)


def shared_env(database_url: str, **settings: str) -> dict:
    """Settings every node of one deployment shares: database, secrets, encryption key."""
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return {
        "STEPUP_DATABASE_URL": database_url,
        "STEPUP_SECRET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "STEPUP_PEPPER": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "STEPUP_ENCRYPTION_KEYS": f"k1:{key}",
        **settings,
    }


@pytest.fixture(scope="module")
def cluster(postgres_server, redis_url, tmp_path_factory):
    url = fresh_database(postgres_server, f"stepup_nodes_{os.getpid()}")
    env = shared_env(url, STEPUP_REDIS_URL=redis_url[0], STEPUP_LOCKOUT_LIMIT="4",
                     STEPUP_IP_LIMIT="1000", STEPUP_WORKERS="2")
    stepup(env | {"STEPUP_DATA_DIR": str(tmp_path_factory.mktemp("cli"))}, "db", "upgrade")
    with serving(env, tmp_path_factory.mktemp("nodes"), 2) as (nodes, _):
        c = Cluster(nodes, env | {"STEPUP_ISSUER": nodes[0]})
        stepup(c.env | {"STEPUP_DATA_DIR": str(tmp_path_factory.mktemp("cli"))}, "client",
               "add", "--client-id", c.client_id, "--client-secret", c.client_secret,
               "--redirect-uri", CALLBACK)
        yield c


class Browser:
    """A user agent: one cookie jar (sent to every node: cookies ignore the port)."""

    def __init__(self) -> None:
        self.http = requests.Session()
        self.page = ""
        self.flow = ""

    def open(self, node: str, authorize_url: str) -> None:
        response = self.http.get(node + authorize_url, allow_redirects=False, timeout=10)
        assert response.status_code in (200, 403), response.text  # the first page (or locked)
        self.page = response.text
        self.flow = flow_url(self.page)

    def shown(self, element_id: str) -> str:
        return shown(self.page, element_id)

    def post(self, node: str, action: str, **form) -> requests.Response:
        form["csrf_token"] = re.search(r'name="csrf_token" value="([^"]+)"', self.page).group(1)
        response = self.http.post(f"{node}{self.flow}/{action}", data=form,
                                  allow_redirects=False, timeout=10)
        location = response.headers.get("Location", "")
        if response.status_code == 303 and location.startswith("/flow/"):
            self.page = self.http.get(node + location, timeout=10).text
        elif response.status_code != 303:
            self.page = response.text
        return response


from tests.bridge.conftest import flow_url, make_app, shown  # noqa: E402,F401  (make_app: a fixture)
