"""The server's edge, through the real `stepup serve` (gunicorn): raw HTTP that Flask's test
client cannot send (a Host werkzeug refuses, malformed chunked bodies), the log it leaves, and
the per-IP limit across gunicorn workers and across nodes."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest

from bridge.factors import totp
from stepup_handoff import HandoffClient
from tests.conftest import fresh_database
from tests.e2e.browser import free_port, wait_for

from .conftest import (
    CALLBACK,
    Browser,
    serving,
    shared_env,
    start_redis,
    stepup,
)

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]

CLIENT_ID, CLIENT_SECRET = "edge-idp", "edge-secret-0123456789"
IP_LIMIT = 8
SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "referrer-policy",
                    "x-frame-options", "cache-control")


def register(env: dict, folder: Path) -> None:
    stepup(env | {"STEPUP_DATA_DIR": str(folder)}, "client", "add", "--client-id", CLIENT_ID,
           "--client-secret", CLIENT_SECRET, "--redirect-uri", CALLBACK)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One node on the embedded SQLite default with the 4 workers the operations guide
    recommends; the CLI shares its data folder (the SQLite file)."""
    folder = tmp_path_factory.mktemp("edge")
    (folder / "run").mkdir()  # where gunicorn would put its control socket
    with serving({"STEPUP_WORKERS": "4", "STEPUP_IP_LIMIT": str(IP_LIMIT),
                  "STEPUP_LOCKOUT_LIMIT": "100", "XDG_RUNTIME_DIR": str(folder / "run")},
                 folder, 1) as (nodes, logs):
        data = logs[0].parent
        register({"STEPUP_ISSUER": nodes[0]}, data)
        yield nodes[0], logs[0]


def raw(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; return the status, headers and body of the answer."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def log_lines(log: Path) -> list[str]:
    time.sleep(0.3)  # gunicorn writes the access line after the answer
    return log.read_text().splitlines()


def assert_json_log_without_tracebacks(log: Path) -> None:
    for line in log_lines(log):
        if not line.startswith("{"):
            assert line.startswith("Stepup Bridge "), line  # the start-up banner on stdout
            continue
        entry = json.loads(line)
        assert "Traceback" not in entry.get("message", ""), line
    assert "Traceback" not in log.read_text()


def test_no_control_socket_is_opened(node):
    """gunicorn's control socket (reload, shutdown, worker count) is not opened: one path for
    every gunicorn on the host, and a way to manage the bridge its operators don't know of."""
    _, log = node
    assert list((log.parents[1] / "run").iterdir()) == []


@pytest.mark.parametrize("path", ["/healthz", "/authorize", "/par", "/flow/x"])
def test_a_host_werkzeug_refuses_gets_a_400_with_headers(node, path):
    base, log = node
    host = "a" * 64 + ".example"
    status, headers, body = raw(base, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                                      "Connection: close\r\n\r\n".encode())
    assert status == 400
    assert all(name in headers for name in SECURITY_HEADERS), headers
    assert b"Traceback" not in body
    assert_json_log_without_tracebacks(log)


def chunked_head(path: str) -> bytes:
    """A form POST's head whose body's length is known only once it ends."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()


def in_chunks(body: bytes) -> bytes:
    """``body`` in 4 KiB chunks, then the last (empty) chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096])
                    for i in range(0, len(body), 4096)) + b"0\r\n\r\n"


BAD_CHUNKS = {
    "size": b"zz\r\nabc\r\n0\r\n\r\n",
    "extension": b"3;\x01bad\r\nabc\r\n0\r\n\r\n",
    "trailer": b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n",
    "terminator": b"3\r\nabcdef0\r\n\r\n",
}


@pytest.mark.parametrize("kind", BAD_CHUNKS)
@pytest.mark.parametrize("path", ["/par", "/token", "/flow/x/totp"])
def test_a_malformed_chunked_body_gets_a_400_with_headers(node, path, kind):
    base, log = node
    status, headers, body = raw(base, chunked_head(path) + BAD_CHUNKS[kind])
    assert 400 <= status < 500, body
    assert all(name in headers for name in SECURITY_HEADERS), headers
    assert_json_log_without_tracebacks(log)


@pytest.mark.parametrize("path", ["/par", "/token", "/flow/x/totp"])
def test_a_chunked_body_over_the_limit_gets_a_413_not_a_form_cut_short(node, path):
    """werkzeug reads a body of unknown length up to MAX_CONTENT_LENGTH (64 KiB) and stops
    there: unchecked, the form would be parsed without its last parameters."""
    base, log = node
    padded = b"pad=" + b"a" * (64 * 1024) + b"&client_id=idp"
    status, headers, _ = raw(base, chunked_head(path) + in_chunks(padded))
    assert status == 413
    assert all(name in headers for name in SECURITY_HEADERS), headers
    at_the_limit = padded[-64 * 1024:]
    status, _, _ = raw(base, chunked_head(path) + in_chunks(at_the_limit))
    assert status != 413
    assert_json_log_without_tracebacks(log)


@pytest.mark.parametrize("request_line", [
    b"GET /callback?code=SECRET-CODE-7\x7f HTTP/1.1",  # a byte a request target cannot hold
    b"GET /authorize?request_uri=SECRET-CODE-7\xff HTTP/1.1",
    b"GET /callback?code=SECRET-CODE-7",  # no HTTP version
])
def test_a_request_gunicorn_refuses_never_logs_its_query(node, request_line):
    """gunicorn logs the request line it could not parse; a query string there may carry an
    authorization code or a request_uri, and those never reach a log."""
    base, log = node
    before = len(log_lines(log))
    status, _, _ = raw(base, request_line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 400
    lines = log_lines(log)[before:]
    assert any("Invalid request from ip=127.0.0.1: Invalid HTTP" in line for line in lines), lines
    assert not any("SECRET-CODE-7" in line for line in log_lines(log))


def test_a_not_me_link_never_reaches_the_access_log(node):
    """The "this wasn't me" link's token locks the user's factor for whoever posts it; the
    access log shows the path up to it."""
    base, log = node
    before = len(log_lines(log))
    status, _, _ = raw(base, b"GET /not-me/SECRET-TOKEN-42.1700000000.abc HTTP/1.1\r\n"
                             b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 400  # not a valid link; its path is logged all the same
    lines = log_lines(log)[before:]
    assert any('"GET /not-me/<token>" 400' in json.loads(line)["message"]
               for line in lines), lines
    assert not any("SECRET-TOKEN-42" in line for line in log_lines(log))


@pytest.mark.parametrize("path, status", [("/healthz", 200), ("/evil/healthz", 404)])
def test_forwarding_headers_from_a_local_peer_are_not_trusted(node, path, status):
    """gunicorn trusts SCRIPT_NAME and X-Forwarded-Proto from 127.0.0.1 unless told not to;
    only the app's ProxyFix (STEPUP_TRUSTED_PROXIES) may. Before: a 500 for /healthz, and
    the app served under the forged prefix."""
    base, _ = node
    got, headers, _ = raw(base, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "SCRIPT_NAME: /evil\r\nX-Forwarded-Proto: https\r\n"
                                "Connection: close\r\n\r\n".encode())
    assert got == status
    assert all(name in headers for name in SECURITY_HEADERS)


def test_every_log_line_is_one_json_object(node):
    base, log = node
    raw(base, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    lines = [line for line in log_lines(log) if not line.startswith("Stepup Bridge ")]
    assert lines
    for line in lines:
        assert isinstance(json.loads(line), dict), line
    assert any(json.loads(line)["logger"] == "gunicorn.access" for line in lines)


def test_the_access_log_is_json_on_stderr_and_joins_the_bridges_lines(tmp_path):
    """docs/operations.md: JSON lines on stderr, stdout only the start-up banner. The access
    line (written by gunicorn after the request's context is gone) carries its parts as fields
    and the request id the bridge answered with."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith("STEPUP_") and k != "PROMETHEUS_MULTIPROC_DIR"},
           "STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": f"http://127.0.0.1:{port}"}
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        server = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", "--port",
                                   str(port)], cwd=REPO, env=env, stdout=stdout, stderr=stderr)
        try:
            wait_for(f"http://127.0.0.1:{port}/healthz", process=server)
            base = f"http://127.0.0.1:{port}"
            raw(base, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: probe-42\r\n"
                      b"Connection: close\r\n\r\n")
        finally:
            server.terminate()
            server.wait(30)
    assert all(not line.startswith("{") for line in out.read_text().splitlines())
    entries = [json.loads(line) for line in err.read_text().splitlines()]
    [access] = [e for e in entries if e["logger"] == "gunicorn.access"
                and e.get("request_id") == "probe-42"]
    assert (access["method"], access["path"], access["status"]) == ("GET", "/healthz", 200)
    assert 0 < access["seconds"] < 5 and access["bytes"] > 0


def test_a_metrics_port_of_its_own_takes_metrics_off_the_public_one(tmp_path):
    """`stepup serve --metrics-port`: /metrics there alone, however the path is spelt, and
    that listener answers the probes and nothing else (no sign-in page for the monitoring
    network); the public port keeps its probes and pages."""
    port, metrics_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith("STEPUP_") and k != "PROMETHEUS_MULTIPROC_DIR"},
           "STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": f"http://127.0.0.1:{port}"}
    with (tmp_path / "node.log").open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", "--port",
                                   str(port), "--metrics-port", str(metrics_port)], cwd=REPO,
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            public, monitoring = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
            wait_for(f"{public}/readyz", process=server)

            def status(base: str, path: str) -> int:
                return raw(base, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 "Connection: close\r\n\r\n".encode())[0]

            # Every spelling werkzeug routes to the metrics (found by review: it strips the
            # leading slashes, and gunicorn decodes %2F).
            for path in ("/metrics", "/%6detrics", "/metrics?x=1", "//metrics", "///metrics",
                         "/%2Fmetrics", "//%6detrics"):
                assert status(public, path) == 404, path
            # The bridge's own 404 page, with its headers, as for any other unknown address.
            refused = raw(public, b"GET //metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  b"Connection: close\r\n\r\n")
            assert all(name in refused[1] for name in SECURITY_HEADERS)
            assert b"stepup_" not in refused[2]
            for path in ("/healthz", "/readyz", "/.well-known/openid-configuration"):
                assert status(public, path) == 200, path
            answer = raw(monitoring, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     b"Connection: close\r\n\r\n")
            assert answer[0] == 200 and b"stepup_build_info{" in answer[2]
            for path in ("/%6detrics", "//metrics"):
                assert status(monitoring, path) == 200, path
            for path in ("/healthz", "/readyz"):
                assert status(monitoring, path) == 200, path
            for path in ("/.well-known/openid-configuration", "/authorize", "/", "//authorize",
                         "/static/style.css"):
                assert status(monitoring, path) == 404, path
            posted = raw(monitoring, b"POST /par HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                     b"application/x-www-form-urlencoded\r\nContent-Length: 0\r\n"
                                     b"Connection: close\r\n\r\n")
            assert posted[0] == 404
        finally:
            server.terminate()
            server.wait(30)
    assert f"Metrics and probes on {monitoring}/metrics" in (tmp_path / "node.log").read_text()


@pytest.mark.parametrize(("queued", "sent", "runs"), [
    (signal.SIGTERM, None, False),  # came before the hook: in the copied master's queue
    (None, signal.SIGTERM, False),  # came after it, before gunicorn's own handlers
    (signal.SIGHUP, None, True),  # the master's own business (a reload): not a stop
])
def test_a_worker_told_to_stop_while_it_boots_stops(queued, sent, runs):
    """Seen in CI: `serve` stopped just as its second worker booted, and that worker served on
    until gunicorn's SIGKILL 30 s later. Between the fork and the worker's own handlers a
    SIGTERM meets the master's handler, copied into the worker, which only queues it; the
    hooks keep it (from that queue, or by a handler of their own) and end the run loop."""
    from bridge.server import _STOP_SIGNALS, _post_fork, _post_worker_init

    server = SimpleNamespace(SIG_QUEUE=queue.SimpleQueue())
    worker = SimpleNamespace(app=SimpleNamespace(application=SimpleNamespace(extensions={})),
                             alive=True)
    kept = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    try:
        if queued:
            server.SIG_QUEUE.put_nowait(queued)
        _post_fork(server, worker)
        if sent:
            os.kill(os.getpid(), sent)
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)
    _post_worker_init(worker)
    assert worker.alive is runs


# -- the per-IP limit ----------------------------------------------------------------------
def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def enroll(issuer: str, nodes: list[str], subject: str) -> str:
    client = HandoffClient(issuer, CLIENT_ID, client_secret=CLIENT_SECRET)
    browser = Browser()
    browser.open(nodes[0], path_of(client.start(subject, CALLBACK).authorize_url))
    secret = browser.shown("totp-secret")
    assert browser.post(nodes[0], "enroll", otp=totp.code_at(secret, time.time())).status_code \
        == 303
    assert browser.post(nodes[0], "saved", saved="yes").status_code == 303
    return secret


def guess_until_refused(issuer: str, nodes: list[str], prefix: str) -> list[int]:
    """Wrong TOTP codes from one address, two per user (under the per-user delay), spread
    over ``nodes`` and whichever worker accepts each connection; stops at the first 429."""
    client = HandoffClient(issuer, CLIENT_ID, client_secret=CLIENT_SECRET)
    secrets = [enroll(issuer, nodes, f"{prefix}-{i}") for i in range(IP_LIMIT // 2 + 1)]
    statuses: list[int] = []
    for i in range(2 * IP_LIMIT):
        user, node = i // 2, nodes[i % len(nodes)]
        browser = Browser()
        browser.open(node, path_of(client.start(f"{prefix}-{user}", CALLBACK).authorize_url))
        window = {totp.code_at(secrets[user], time.time() + k * 30) for k in (-2, -1, 0, 1, 2)}
        wrong = next(c for c in ("000000", "111111", "222222") if c not in window)
        statuses.append(browser.post(node, "totp", otp=wrong).status_code)
        if statuses[-1] == 429:
            break
    return statuses


def test_the_per_ip_limit_holds_across_four_workers(node):
    base, _ = node
    assert guess_until_refused(base, [base], "worker") == [400] * IP_LIMIT + [429]


@pytest.fixture(scope="module")
def two_nodes_with_redis(postgres_server, tmp_path_factory):
    """Two nodes on PostgreSQL with a Redis of their own (no other test's failures in it)."""
    redis_url, redis_process = start_redis(tmp_path_factory.mktemp("redis"))
    url = fresh_database(postgres_server, f"stepup_edge_{os.getpid()}")
    env = shared_env(url, STEPUP_REDIS_URL=redis_url, STEPUP_IP_LIMIT=str(IP_LIMIT),
                     STEPUP_LOCKOUT_LIMIT="100", STEPUP_WORKERS="2")
    stepup(env | {"STEPUP_DATA_DIR": str(tmp_path_factory.mktemp("cli"))}, "db", "upgrade")
    try:
        with serving(env, tmp_path_factory.mktemp("redis-nodes"), 2) as (nodes, _):
            register(env | {"STEPUP_ISSUER": nodes[0]}, tmp_path_factory.mktemp("cli"))
            yield nodes, redis_url
    finally:
        redis_process.terminate()
        redis_process.wait(10)


def test_the_per_ip_limit_holds_across_two_nodes_with_redis(two_nodes_with_redis):
    import redis

    nodes, redis_url = two_nodes_with_redis
    assert guess_until_refused(nodes[0], nodes, "node") == [400] * IP_LIMIT + [429]
    counted = redis.Redis.from_url(redis_url).zcard("stepup:ipfail:127.0.0.1")
    assert counted == IP_LIMIT  # counted in Redis, not only in the shared database
