"""deploy/systemd: the unit and its environment file, as an operator installs them. systemd
checks the unit and rates its confinement (``systemd-analyze``, offline: there is no systemd to
run it under here); the unit's own command lines, environment and stop signal then start a
node that answers and stop it within the unit's time."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from bench.flows import CALLBACK, CLIENT_ID, CLIENT_SECRET, Recorder, enrollment
from bench.http import Connection
from bridge.settings import load_settings
from tests.e2e.browser import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "stepup-bridge.service"
ENV_FILE = REPO / "deploy" / "systemd" / "stepup-bridge.env"
#: Where the unit expects the virtual environment (docs/operations.md, "Under systemd").
INSTALLED = "/opt/stepup/bin/stepup"
STEPUP = str(Path(sys.executable).with_name("stepup"))

def directives() -> dict[str, list[str]]:
    """Each ``Key=value`` of the unit, every value of a repeated key, in order."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def env_file(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines()
                if line and not line.startswith("#"))


def filled_in() -> dict[str, str]:
    """The example with every CHANGE-ME replaced as the comments say (openssl rand -base64 32)."""
    values = env_file(ENV_FILE.read_text())
    return {key: value.replace("CHANGE-ME", base64.b64encode(secrets.token_bytes(32)).decode())
            for key, value in values.items()}


def test_systemd_accepts_the_unit_and_rates_it_well_confined(tmp_path):
    unit = tmp_path / UNIT.name  # systemd-analyze checks that the commands exist
    unit.write_text(UNIT.read_text().replace(INSTALLED, STEPUP).replace(
        "/etc/stepup/stepup-bridge.env", str(ENV_FILE)))
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                              text=True, cwd=tmp_path)
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    rated = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20",
                            str(unit)], capture_output=True, text=True, cwd=tmp_path)
    # 0 (fully confined) to 10; systemd calls up to 2.0 "OK", the best band.
    assert rated.returncode == 0, rated.stdout[-2000:]
    assert "OK" in rated.stdout.splitlines()[-1]


def test_the_environment_file_filled_in_is_a_configuration_the_bridge_takes():
    values = filled_in()
    settings = load_settings(environ=values)
    assert settings.issuer == values["STEPUP_ISSUER"] and settings.workers == 4


def test_the_units_commands_serve_a_sign_in_within_its_system_calls_and_stop_in_time(tmp_path):
    """ExecStartPre, then ExecStart in the foreground (Type=exec), with the unit's environment
    (the data folder here a temporary one, the issuer this port, SQLite: no database server),
    traced: a whole enrollment and its assertion use no system call outside the unit's
    SystemCallFilter, and the unit's stop signal ends the node, cleanly, within its time."""
    unit = directives()
    assert unit["Type"] == ["exec"] and unit["KillSignal"] == ["SIGTERM"]
    port = free_port()
    environment = dict(item.split("=", 1) for item in unit["Environment"])
    assert environment == {"STEPUP_DATA_DIR": "/var/lib/stepup"}  # the StateDirectory
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STEPUP_")},
           "STEPUP_DATA_DIR": str(tmp_path / "state"), "STEPUP_ISSUER": f"http://127.0.0.1:{port}",
           "STEPUP_WORKERS": "2"}

    ports = {"8080": str(port), "8090": str(metrics_port := free_port())}

    def command(line: str) -> list[str]:
        return [ports.get(arg, arg) for arg in line.replace(INSTALLED, STEPUP).split()]

    [pre] = unit["ExecStartPre"]
    subprocess.run(command(pre), env=env, check=True, capture_output=True, timeout=120)
    subprocess.run([STEPUP, "client", "add", "--client-id", CLIENT_ID, "--redirect-uri", CALLBACK],
                   env={**env, "STEPUP_CLIENT_SECRET": CLIENT_SECRET}, check=True,
                   capture_output=True, timeout=120)
    [start] = unit["ExecStart"]
    calls = tmp_path / "syscalls"
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-c", "-o", str(calls), *command(start)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", timeout=90, process=tracer)
        browser = Connection("127.0.0.1", port)
        enrollment(browser, browser, Recorder(), "systemd-")
        # The enrollment counted, on the unit's port for metrics (not on the proxy's).
        scraped = Connection("127.0.0.1", metrics_port).request("GET", "/metrics")
        assert scraped.status == 200 and (b'stepup_enrollments_total{kind="enrollment"} 1.0'
                                          in scraped.body)
        assert browser.request("GET", "/metrics").status == 404
        [master] = (Path("/proc") / str(tracer.pid) / "task" / str(tracer.pid) /
                    "children").read_text().split()
        os.kill(int(master), getattr(signal, unit["KillSignal"][0]))
        # A clean stop: exit 0 (strace passes the node's on), so Restart=on-failure does not
        # start it again.
        assert tracer.wait(timeout=int(unit["TimeoutStopSec"][0])) == 0
    finally:
        if tracer.poll() is None:
            os.killpg(tracer.pid, signal.SIGKILL)
            tracer.wait()
    used = {line.split()[-1] for line in calls.read_text().splitlines()
            if line.strip() and not line.startswith(("%", "-")) and line.split()[-1] != "total"}
    assert len(used) > 30, used  # the trace saw the node's calls, not strace's summary alone
    allowed: set[str] = set()
    for group in unit["SystemCallFilter"]:
        assert not group.startswith("~"), "an allow-list, expanded below"
        for item in group.split():
            allowed |= syscall_group(item)
    assert used <= allowed, f"blocked by SystemCallFilter: {sorted(used - allowed)}"


def syscall_group(name: str) -> set[str]:
    """The system calls systemd's ``@group`` (or a single call) allows, nested groups
    expanded, as this systemd lists them; ``@default`` is always allowed."""
    listing = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True,
                             text=True, check=True).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#") and current is not None:
            current.append(line.strip())

    def expand(item: str) -> set[str]:
        if not item.startswith("@"):
            return {item}
        return set().union(*(expand(entry) for entry in groups[item]))

    return expand(name) | expand("@default")
