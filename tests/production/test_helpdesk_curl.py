"""docs/helpdesk.md, followed on real nodes: register a help-desk tool with the CLI, get a
token and reset a user with the curl commands the page shows."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import stepup
from .test_nodes import enroll

pytestmark = pytest.mark.e2e
SECRET = "helpdesk-secret-0123456789abcdef"


def curl(*args: str, stdin: str) -> dict:
    """curl as the page runs it: the secret or the token on its standard input."""
    done = subprocess.run(["curl", "-s", "--fail-with-body", *args], input=stdin,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout)


def test_a_help_desk_resets_a_user_with_curl(cluster, tmp_path):
    a, b = cluster.nodes
    enroll(cluster, "curl-user", a)
    env = cluster.env | {"STEPUP_DATA_DIR": str(tmp_path)}
    stepup(env | {"STEPUP_CLIENT_SECRET": SECRET}, "client", "add", "--client-id",
           "helpdesk-tool", "--admin")
    token = curl("--config", "-", "-d", "grant_type=client_credentials",
                 "-d", "scope=stepup:admin", f"{a}/token",
                 stdin=f'user = "helpdesk-tool:{SECRET}"\n')["access_token"]
    auth = f"Authorization: Bearer {token}\n"
    # any node takes the token
    shown = curl("-H", "@-", f"{b}/admin/api/users/curl-user", stdin=auth)
    assert shown["subject"] == "curl-user" and shown["locked"] is False
    assert curl("-X", "POST", "-H", "@-", f"{b}/admin/api/users/curl-user/reset",
                stdin=auth) == {"subject": "curl-user", "reset": True}
    gone = stepup(env, "user", "show", "curl-user", check=False)
    assert gone.returncode == 1 and "curl-user: not enrolled" in gone.stdout  # 1: not enrolled
    events = curl("-H", "@-", f"{a}/admin/api/events?subject=curl-user&event=helpdesk_reset",
                  stdin=auth)
    assert [e["client_id"] for e in events["events"]] == ["helpdesk-tool"]
