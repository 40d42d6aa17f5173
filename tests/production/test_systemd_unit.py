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

import requests

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


def test_the_units_commands_start_a_node_and_its_stop_signal_ends_it_in_time(tmp_path):
    """ExecStartPre, then ExecStart in the foreground (Type=exec), with the unit's environment
    (the data folder here a temporary one, the issuer this port, SQLite: no database server)."""
    unit = directives()
    assert unit["Type"] == ["exec"] and unit["KillSignal"] == ["SIGTERM"]
    port = free_port()
    environment = dict(item.split("=", 1) for item in unit["Environment"])
    assert environment == {"STEPUP_DATA_DIR": "/var/lib/stepup"}  # the StateDirectory
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STEPUP_")},
           "STEPUP_DATA_DIR": str(tmp_path / "state"), "STEPUP_ISSUER": f"http://127.0.0.1:{port}",
           "STEPUP_WORKERS": "2"}

    def command(line: str) -> list[str]:
        return [str(port) if arg == "8080" else arg
                for arg in line.replace(INSTALLED, STEPUP).split()]

    [pre] = unit["ExecStartPre"]
    subprocess.run(command(pre), env=env, check=True, capture_output=True, timeout=120)
    [start] = unit["ExecStart"]
    node = subprocess.Popen(command(start), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", timeout=60, process=node)
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        node.send_signal(getattr(signal, unit["KillSignal"][0]))
        stop_within = int(unit["TimeoutStopSec"][0])
        # A clean stop: exit 0, so Restart=on-failure does not start it again.
        assert node.wait(timeout=stop_within) == 0
    finally:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
