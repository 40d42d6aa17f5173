"""deploy/nginx: the documented topology for real — nginx ends TLS in front of a node started
as ``stepup serve`` with ``STEPUP_TRUSTED_PROXIES=1``, with the repository's configuration
(only names, ports and certificate paths replaced). A whole enrollment goes through it; the
node sees https and the browser's own address; /metrics stays internal."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.flows import CALLBACK, CLIENT_ID, CLIENT_SECRET, Recorder, enrollment
from bench.http import Response
from tests.e2e.browser import free_port, wait_for
from tests.receivers import tls_files

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "deploy" / "nginx" / "stepup-bridge.conf"
STEPUP = str(Path(sys.executable).with_name("stepup"))
#: The browser's address, another than the IdP's: the node must log this one, not nginx's.
BROWSER_ADDRESS = "127.0.0.5"


class Https:
    """bench's transport over TLS from a chosen source address, trusting one certificate."""

    def __init__(self, port: int, certificate: Path, source: str):
        self.port, self.source = port, source
        self.context = ssl.create_default_context(cafile=str(certificate))
        self.answers: list[Response] = []

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> Response:
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context,
                                                 source_address=(self.source, 0), timeout=30)
        started = time.perf_counter()
        try:
            connection.request(method, path, body=body or None, headers=headers or {})
            raw = connection.getresponse()
            answer = Response(raw.status, {}, raw.read(), time.perf_counter() - started)
            for name, value in raw.getheaders():
                name = name.lower()
                answer.headers[name] = (f"{answer.headers[name]}\n{value}"
                                        if name in answer.headers else value)
        finally:
            connection.close()
        self.answers.append(answer)
        return answer


@pytest.fixture
def proxied(tmp_path):
    """nginx on https://127.0.0.1:PORT with deploy/nginx's site, in front of one node."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    https_port, node_port = free_port(), free_port()
    cert, key = tls_files(tmp_path)
    site = SITE.read_text()
    site = re.sub(r"upstream stepup_nodes \{.*?\}",
                  f"upstream stepup_nodes {{\n    server 127.0.0.1:{node_port};\n}}", site,
                  flags=re.DOTALL)
    site = (site.replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
            .replace("    listen [::]:443 ssl;\n", "")
            .replace("server_name mfa.example.com;", "server_name 127.0.0.1;")
            .replace("/etc/ssl/certs/mfa.example.com.pem", str(cert))
            .replace("/etc/ssl/private/mfa.example.com.key", str(key))
            .replace("/var/log/nginx/stepup-bridge.access.log", str(tmp_path / "access.log")))
    (tmp_path / "site.conf").write_text(site)
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    (tmp_path / "nginx.conf").write_text(f"""
daemon off;
user root;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {tmp_path}/site.conf;
}}
""")
    checked = subprocess.run([nginx, "-t", "-c", str(tmp_path / "nginx.conf")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    issuer = f"https://127.0.0.1:{https_port}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STEPUP_")},
           "STEPUP_DATA_DIR": str(tmp_path / "data"), "STEPUP_ISSUER": issuer,
           "STEPUP_TRUSTED_PROXIES": "1"}
    subprocess.run([STEPUP, "client", "add", "--client-id", CLIENT_ID, "--redirect-uri",
                    CALLBACK], env={**env, "STEPUP_CLIENT_SECRET": CLIENT_SECRET}, check=True,
                   capture_output=True, timeout=120)
    node = subprocess.Popen([STEPUP, "serve", "--port", str(node_port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    proxy = subprocess.Popen([nginx, "-c", str(tmp_path / "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{node_port}/readyz", timeout=60, process=node)
        yield https_port, node_port, cert, env
    finally:
        for process in (proxy, node):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)


def test_a_whole_sign_in_through_nginx_as_documented(proxied, tmp_path):
    https_port, node_port, cert, env = proxied
    idp = Https(https_port, cert, "127.0.0.1")
    browser = Https(https_port, cert, BROWSER_ADDRESS)
    for _ in range(100):  # nginx takes a moment to listen
        try:
            idp.request("GET", "/readyz")
            break
        except OSError:
            time.sleep(0.1)
    # Over https through the proxy: /par and /token take it (with 0 trusted proxies they
    # would refuse plain http), and the issuer is the proxy's.
    enrollment(idp, browser, Recorder(), "nginx-")
    discovery = idp.request("GET", "/.well-known/openid-configuration")
    assert discovery.status == 200 and f'"issuer":"https://127.0.0.1:{https_port}"' in (
        discovery.text.replace(" ", ""))
    page = browser.answers[0]
    assert "Secure" in page.headers["set-cookie"]
    assert page.headers["strict-transport-security"].startswith("max-age=")
    assert all(a.headers.get("x-content-type-options") == "nosniff"
               for a in browser.answers)  # once, not "nosniff\nnosniff"
    # The node recorded the browser's address (X-Forwarded-For), not nginx's.
    [subject] = {m for a in browser.answers for m in re.findall(r"nginx-new-\d+", a.text)}
    shown = subprocess.run([STEPUP, "user", "show", subject], env=env, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    [enrolled] = [line for line in shown.stdout.splitlines() if " enrollment " in line]
    assert BROWSER_ADDRESS in enrolled.split(), enrolled
    # nginx's access log has the sign-in's requests, never a query (the request_uri) nor a
    # "this wasn't me" token (a made-up one: the path is what counts).
    token = "e" * 20 + ".1900000000.mac"
    assert idp.request("GET", f"/not-me/{token}").status == 400  # "this link doesn't work"
    # nginx writes a request's line once the answer is sent: the client may read the log first.
    deadline = time.monotonic() + 10
    while "/not-me/" not in (logged := (tmp_path / "access.log").read_text()):
        assert time.monotonic() < deadline, logged
        time.sleep(0.05)
    assert "GET /authorize HTTP/1.1" in logged and "POST /par " in logged
    assert "request_uri" not in logged and "?" not in logged
    assert "GET /not-me/<token> HTTP/1.1" in logged and token not in logged
    # /metrics only from the node itself, however the path is spelt.
    for path in ("/metrics", "/%6detrics", "/metrics?x=1", "//metrics", "/%2Fmetrics"):
        assert idp.request("GET", path).status == 403, path
    assert http_get(node_port, "/metrics") == 200


def http_get(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()
