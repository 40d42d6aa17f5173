"""``stepup keycloak install`` as automation runs it, against the fake Keycloak: the exit status
says whether every door it was asked to cover passes the step-up."""

from __future__ import annotations

from click.testing import CliRunner
from conftest import ADMIN_PASSWORD, BRIDGE
from fake_keycloak import BASE

from bridge.cli import main


def install(tmp_path, *extra: str):
    env = {"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": BRIDGE}
    return CliRunner().invoke(main, ["keycloak", "install", "--server-url", BASE, "--realm",
                                     "acme", "--admin-user", "admin", "--admin-password",
                                     ADMIN_PASSWORD, *extra], env=env)


def test_install_fails_when_a_covered_door_stays_open(fake, tmp_path):
    """A Kerberos alternative beside the password form in the flow install copies keeps the
    browser door open: install says so and exits 2; left out with --cover, it passes."""
    browser = fake.flow_by_alias("browser")
    (kerberos,) = [e for e in fake.executions.values()
                   if e["authenticator"] == "auth-spnego" and e["parent"] == browser["id"]]
    kerberos["requirement"] = "ALTERNATIVE"

    failed = install(tmp_path)
    assert failed.exit_code == 2, failed.output
    assert "OPEN  browser:" in failed.stdout
    assert failed.stderr.strip() == (
        "stepup: error: installed, but the audit still finds browser open or with the step-up "
        "out of place (the OPEN lines above say what to change)")

    narrowed = install(tmp_path, "--cover", "reset-credentials,brokers,direct-grant")
    assert narrowed.exit_code == 0, narrowed.output
    assert "OPEN  browser:" in narrowed.stdout


def test_install_on_a_fresh_realm_exits_0(fake, tmp_path):
    done = install(tmp_path)
    assert done.exit_code == 0, done.output
    assert "Realm acme: every way in passes the step-up." in done.stdout
