"""``stepup keycloak install`` as automation runs it, against the fake Keycloak: the exit status
says whether every door it was asked to cover passes the step-up."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from click.testing import CliRunner
from conftest import ADMIN_PASSWORD, BRIDGE
from fake_keycloak import BASE

from bridge import create_app
from bridge.cli import main
from bridge.cli.base import _operator
from bridge.oidc.clients import new_client, secret_digest
from bridge.store.schema import audit_events


def said(result) -> str:
    """What a command said on stderr to the person running it: its audit events are JSON lines
    there too (docs/operations.md), for the log pipeline."""
    return "\n".join(line for line in result.stderr.splitlines()
                     if not line.startswith('{"ts": ')).strip()


def install(tmp_path, *extra: str):
    env = {"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": BRIDGE}
    return CliRunner().invoke(main, ["keycloak", "install", "--server-url", BASE, "--realm",
                                     "acme", "--admin-user", "admin", "--admin-password",
                                     ADMIN_PASSWORD, *extra], env=env)


def open_kerberos_door(fake) -> None:
    """A Kerberos alternative beside the password form of the browser flow install copies."""
    browser = fake.flow_by_alias("browser")
    (kerberos,) = [e for e in fake.executions.values()
                   if e["authenticator"] == "auth-spnego" and e["parent"] == browser["id"]]
    kerberos["requirement"] = "ALTERNATIVE"


def test_install_fails_when_a_covered_door_stays_open(fake, tmp_path):
    """A Kerberos alternative beside the password form in the flow install copies keeps the
    browser door open: install says so and exits 2; left out with --cover, it passes."""
    open_kerberos_door(fake)

    failed = install(tmp_path)
    assert failed.exit_code == 2, failed.output
    assert "OPEN  browser:" in failed.stdout
    # Not "run install": it was just run, and would lay the step out the same way again.
    assert "switch off the way in beside the step (Kerberos, a passkey" in failed.stdout
    assert said(failed) == (
        "stepup: error: installed, but the audit still finds browser open or with the step-up "
        "out of place (the OPEN lines above say what to change)")

    narrowed = install(tmp_path, "--cover", "reset-credentials,brokers,direct-grant")
    assert narrowed.exit_code == 0, narrowed.output
    assert "OPEN  browser:" in narrowed.stdout


def test_install_fails_while_a_client_policy_selects_a_flow_without_the_step(fake, tmp_path):
    """Install does not rewrite an administrator's client policy, but the browser door it was
    asked to cover is open through it: exit 2, with the line saying what to change."""
    fake.select_flow("legacy-login", "browser")

    failed = install(tmp_path)
    assert failed.exit_code == 2, failed.output
    assert "OPEN  client policy: client policy 'legacy-login'" in failed.stdout
    assert "installed, but the audit still finds client policy open" in failed.stderr

    narrowed = install(tmp_path, "--cover", "reset-credentials,brokers,direct-grant")
    assert narrowed.exit_code == 0, narrowed.output


def test_install_fails_while_a_step_it_does_not_own_hands_off_elsewhere(fake, tmp_path):
    """A client's own browser flow with a step to another bridge: install leaves the
    administrator's flow as it is, and exits 2 with the line saying what to change."""
    flow = fake._add_flow("deep", top_level=True, built_in=False)
    fake._add_execution(flow["id"], "REQUIRED", authenticator="auth-username-password-form")
    fake._add_execution(flow["id"], "REQUIRED", authenticator="stepup-bridge")  # no config
    fake.add_client("rp-deep", authenticationFlowBindingOverrides={"browser": flow["id"]})

    failed = install(tmp_path)
    assert failed.exit_code == 2, failed.output
    assert "OPEN  step config: Stepup Bridge MFA in 'deep' hands off to no bridge" in (
        failed.stdout)
    assert "installed, but the audit still finds step config open" in failed.stderr


def test_install_on_a_fresh_realm_exits_0(fake, tmp_path):
    done = install(tmp_path)
    assert done.exit_code == 0, done.output
    assert "Realm acme: every way in passes the step-up." in done.stdout


def test_install_signs_everyone_out_only_when_asked(fake, tmp_path):
    """Sessions from before install never meet the step: a run that changed the realm says
    how to end them; --sign-out-everyone ends them (and moves the realm's not-before)."""
    first = install(tmp_path)
    assert first.exit_code == 0, first.output
    assert "run again with --sign-out-everyone" in first.stdout
    assert "notBefore" not in fake.realm

    unchanged = install(tmp_path)
    assert "--sign-out-everyone" not in unchanged.stdout  # nothing new to sign out for

    fake.unreached_admin_urls = ["https://app.example/admin"]
    signed_out = install(tmp_path, "--sign-out-everyone")
    assert signed_out.exit_code == 0, signed_out.output
    assert ("Realm acme: every session signed out; refresh and offline tokens issued before "
            "now are refused (access tokens live out their lifespan)." in signed_out.stdout)
    assert ("Keycloak could not tell 1 application(s) to end their own sessions: "
            "https://app.example/admin." in signed_out.stdout)
    assert fake.realm["notBefore"] == 1


def test_nobody_is_signed_out_while_a_covered_door_stays_open(fake, tmp_path):
    """Signed out then, users would sign in again through the open door, and the sign-out
    would be spent."""
    open_kerberos_door(fake)
    failed = install(tmp_path, "--sign-out-everyone")
    assert failed.exit_code == 2, failed.output
    assert "nobody was signed out" in failed.stderr
    assert "notBefore" not in fake.realm


def test_a_refused_sign_out_fails_install_with_one_line(fake, tmp_path):
    fake.fail("POST", r"/admin/realms/acme/logout-all", 403, {"error": "unknown_error"})
    failed = install(tmp_path, "--sign-out-everyone")
    assert failed.exit_code == 2, failed.output
    assert "Realm acme: every way in passes the step-up." in failed.stdout
    [line] = said(failed).splitlines()
    assert line.startswith("stepup: error: installed, but signing everyone out failed: ")
    assert "sign out every session of realm 'acme'" in line
    assert line.endswith("(it may have happened in part; running install with "
                         "--sign-out-everyone again is safe)")


def test_install_and_uninstall_register_and_remove_the_bridge_client_audited(fake, tmp_path):
    assert install(tmp_path).exit_code == 0
    env = {"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": BRIDGE}
    undone = CliRunner().invoke(main, ["keycloak", "uninstall", "--server-url", BASE, "--realm",
                                       "acme", "--admin-user", "admin", "--admin-password",
                                       ADMIN_PASSWORD], env=env)
    assert undone.exit_code == 0, undone.output
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stepup.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_events.c.event, audit_events.c.client_id,
                                      audit_events.c.detail)
                            .order_by(audit_events.c.id)).all()
    engine.dispose()
    assert [(event, client) for event, client, _ in rows] == [
        ("client_registered", "keycloak-acme"), ("client_removed", "keycloak-acme")]
    assert rows[0].detail == {"admin": False, "auth": "client_secret", "operator": _operator()}


def test_install_names_the_client_as_the_realms_login_page_does(fake, tmp_path):
    """The notices name a sign-in by its client's name: the realm's display name (what its
    login page shows), else the realm's own; --client-name chooses another."""
    def registered_name() -> str | None:
        bridge = create_app({"data_dir": tmp_path, "issuer": BRIDGE},
                            environ={}).extensions["stepup"]
        with bridge.store.begin() as tx:
            return tx.find_client("keycloak-acme").client_name

    assert install(tmp_path).exit_code == 0
    assert registered_name() == "acme"
    fake.realm["displayName"] = "Acme\u00a0Corp"
    assert install(tmp_path).exit_code == 0
    assert registered_name() == "Acme Corp"
    assert install(tmp_path, "--client-name", "Acme staff portal").exit_code == 0
    assert registered_name() == "Acme staff portal"
    for bad in ("\u202eevil", ""):
        refused = install(tmp_path, "--client-name", bad)
        assert refused.exit_code == 2 and "client name" in said(refused)
    assert registered_name() == "Acme staff portal"


def test_a_registration_the_bridge_would_refuse_stops_install_before_the_realm_changes(
        fake, tmp_path):
    """A prefix stored under older rules (a space in it): install used to bind the flows and
    only then fail to register, leaving every login needing a client the bridge lacked."""
    bridge = create_app({"data_dir": tmp_path, "issuer": BRIDGE}, environ={}).extensions["stepup"]
    with bridge.store.begin() as tx:
        tx.add_client(dataclasses.replace(
            new_client(bridge.secrets.pepper, "keycloak-acme", secret="s" * 32, jwks_uri=None,
                       redirect_uris=[], redirect_uri_prefixes=["https://sso.example/cb"]),
            redirect_uri_prefixes=["https://sso.example/old path"]))
    bridge.store.engine.dispose()
    failed = install(tmp_path)
    assert failed.exit_code == 2, failed.output
    assert "not an http(s) URL without fragment: 'https://sso.example/old path'" in failed.stderr
    assert fake.writes() == []


def test_a_rerun_drops_a_plain_http_prefix_registered_before_such_were_refused(fake, tmp_path):
    """A realm first installed when Keycloak answered on plain http (now refused: the code
    would cross the network in clear). Run again, install keeps its other prefixes and drops
    that one, saying so, instead of refusing the whole re-run; `client list` points it out
    until then."""
    bridge = create_app({"data_dir": tmp_path, "issuer": BRIDGE}, environ={}).extensions["stepup"]
    old = "http://kc.internal:8080/realms/acme/login-actions/authenticate"
    with bridge.store.begin() as tx:
        tx.add_client(dataclasses.replace(
            new_client(bridge.secrets.pepper, "keycloak-acme", secret="s" * 32, jwks_uri=None,
                       redirect_uris=[], redirect_uri_prefixes=["https://sso.example/cb"]),
            redirect_uri_prefixes=["https://sso.example/cb", old]))
    bridge.store.engine.dispose()
    env = {"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": BRIDGE}
    listed = CliRunner().invoke(main, ["client", "list"], env=env)
    assert "PLAIN HTTP: codes cross the network in clear" in listed.stdout
    done = install(tmp_path)
    assert done.exit_code == 0, done.output
    assert f"Dropped the callback prefix {old}: plain http" in done.stderr
    listed = CliRunner().invoke(main, ["client", "list"], env=env)
    assert old not in listed.stdout and "https://sso.example/cb?*" in listed.stdout
    assert "PLAIN HTTP" not in listed.stdout


def test_a_realm_secret_the_bridge_would_refuse_fails_install_in_one_line(fake, tmp_path):
    """A bridge client secret kept in the realm from an earlier run, edited by hand since (a
    space: HTTP Basic would carry it two ways), is refused in one line, not a traceback."""
    assert install(tmp_path).exit_code == 0
    for execution in fake.execution_of("stepup-bridge"):
        fake.configs[execution["config"]]["config"]["stepup.clientSecret"] = "a secret " * 3
    failed = install(tmp_path)
    assert failed.exit_code == 2, failed.output
    assert said(failed) == ("stepup: error: the client secret must be printable "
                                     "ASCII without spaces or '%'")


def registered(tmp_path) -> tuple:
    """The bridge's record of Keycloak as a client: its secret's digest and when it was made."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stepup.db'}")
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT secret_digest, created_at FROM clients "
                                   "WHERE client_id = 'keycloak-acme'")).one()
    engine.dispose()
    return tuple(row)


def step_secrets(fake) -> set[str]:
    """The client secret of every step-up step in the realm, as Keycloak stores it."""
    return {fake.configs[step["config"]]["config"]["stepup.clientSecret"]
            for step in fake.execution_of("stepup-bridge")}


def test_a_rerun_where_keycloak_masks_the_secret_keeps_it_on_both_sides(fake, tmp_path):
    """Keycloak 26.7 shows the step's client secret as "**********" (26.5 does not): a re-run
    keeps it in the realm and at the bridge, so the sign-ins in progress go on."""
    assert install(tmp_path).exit_code == 0
    before, (secret,) = registered(tmp_path), step_secrets(fake)
    fake.mask_secrets = True

    again = install(tmp_path)

    assert again.exit_code == 0, again.output
    assert "already up to date" in again.stdout
    assert registered(tmp_path) == before
    assert step_secrets(fake) == {secret}


def test_a_masked_secret_a_new_bridge_never_held_is_replaced_on_both_sides(fake, tmp_path):
    """The same realm installed for a bridge with a new database: the secret Keycloak shows
    masked is known to nobody, so install makes a new one, and both sides get it."""
    assert install(tmp_path / "old").exit_code == 0
    fake.mask_secrets = True

    fresh = install(tmp_path)

    assert fresh.exit_code == 0, fresh.output
    (secret,) = step_secrets(fake)
    assert secret != "**********"
    assert registered(tmp_path)[0] == bridge_digest(tmp_path, secret)


def bridge_digest(tmp_path, secret: str) -> str:
    """The digest the bridge keeps of ``secret`` (its pepper's HMAC)."""
    bridge = create_app({"data_dir": tmp_path, "issuer": BRIDGE}, environ={}).extensions["stepup"]
    bridge.store.engine.dispose()
    return secret_digest(bridge.secrets.pepper, secret)


def test_a_new_secret_cut_short_is_finished_by_the_next_run(fake, tmp_path):
    """A masked re-run that had to write a new secret (the step moved behind a level
    condition) fails after the realm has it but before the bridge does: the steps' checks no
    longer match the bridge's registration, so the next run writes a new one to both."""
    assert install(tmp_path).exit_code == 0
    fake.mask_secrets = True
    fake.fail("PUT", r"/admin/realms/acme/authentication/config/.*", 403,
              {"error": "HTTP 403 Forbidden"})
    assert install(tmp_path, "--conditional-loa", "2").exit_code == 2
    fake.failures.clear()

    again = install(tmp_path, "--conditional-loa", "2")

    assert again.exit_code == 0, again.output
    (secret,) = step_secrets(fake)
    assert registered(tmp_path)[0] == bridge_digest(tmp_path, secret)


def test_new_secret_gives_both_sides_a_new_one(fake, tmp_path):
    assert install(tmp_path).exit_code == 0
    (old,) = step_secrets(fake)
    fake.mask_secrets = True

    again = install(tmp_path, "--new-secret")

    assert again.exit_code == 0, again.output
    (secret,) = step_secrets(fake)
    assert secret not in (old, "**********")
    assert registered(tmp_path)[0] == bridge_digest(tmp_path, secret)
