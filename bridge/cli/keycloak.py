"""``stepup keycloak``: plugging a Keycloak realm into the bridge."""

from __future__ import annotations

import secrets
import sys
from dataclasses import replace

import click

from ..oidc.clients import (
    CLIENT_NAME_LIMIT,
    Client,
    check_names,
    client_name,
    in_clear,
    new_client,
    secret_digest,
)
from ..text import display_name
from .base import _bridge, _fail, _settings, main
from .clients import _register, _unregister


@main.group(short_help="Plug a Keycloak realm into the bridge.")
def keycloak() -> None:
    """Plug a Keycloak realm into the bridge (needs the authenticator jar in providers/)."""


def _keycloak_options(f):
    options = [
        click.option("--server-url", required=True, help="Keycloak base URL."),
        click.option("--realm", required=True, help="The realm to work on."),
        click.option("--admin-user", envvar="KEYCLOAK_ADMIN_USER", show_envvar=True,
                     help="An admin user of --admin-realm (with --admin-password)."),
        click.option("--admin-password", envvar="KEYCLOAK_ADMIN_PASSWORD", show_envvar=True,
                     help="Its password: prefer the environment variable (a command line "
                          "shows in ps)."),
        click.option("--admin-client-id", envvar="KEYCLOAK_ADMIN_CLIENT_ID", show_envvar=True,
                     help="Service-account client with realm-admin (instead of a user)."),
        click.option("--admin-client-secret", envvar="KEYCLOAK_ADMIN_CLIENT_SECRET",
                     show_envvar=True, help="Its secret: prefer the environment variable."),
        click.option("--admin-realm", default="master", show_default=True,
                     help="The realm the admin user or client belongs to."),
        click.option("--bridge-issuer", help="The bridge's public URL (default STEPUP_ISSUER)."),
        click.option("--flow", default="browser-stepup", show_default=True,
                     help="Name of the browser flow install makes."),
        click.option("--client-scope", default="stepup", show_default=True,
                     help="Name of the client scope that carries the bridge's claims."),
        click.option("--no-verify-tls", is_flag=True,
                     help="Do not verify Keycloak's TLS certificate (tests only)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _install_options(settings, kw: dict, **extra):
    from stepup_keycloak import InstallOptions

    return InstallOptions(
        server_url=kw["server_url"], realm=kw["realm"],
        bridge_issuer=kw["bridge_issuer"] or settings.issuer,
        admin_username=kw["admin_user"], admin_password=kw["admin_password"],
        admin_client_id=kw["admin_client_id"], admin_client_secret=kw["admin_client_secret"],
        admin_realm=kw["admin_realm"], flow=kw["flow"], client_scope=kw["client_scope"],
        verify_tls=not kw["no_verify_tls"], **extra)


@keycloak.command("install")
@_keycloak_options
@click.option("--cover", default="all", show_default=True,
              help="Doors that get the step-up, comma separated: browser, reset-credentials, "
                   "registration, brokers, direct-grant (doors left out are undone).")
@click.option("--source-flow", default="",
              help="Browser flow to copy (default: the one the realm has bound now).")
@click.option("--acr-values", help="acr_values the authenticator asks the bridge for.")
@click.option("--no-enrollment", is_flag=True, help="Users without a factor cannot enroll.")
@click.option("--conditional-loa", type=click.IntRange(2, 100),
              help="Ask for the bridge only when a client requests this level (acr_values).")
@click.option("--loa-max-age", type=click.IntRange(0), default=36000, show_default=True,
              help="Seconds a reached level counts in the SSO session (0: ask every time).")
@click.option("--existing-clients", is_flag=True,
              help="Also add the client scope to the clients that exist already.")
@click.option("--client-name", "name",
              help="What users' security notices call the realm's sign-ins (default: the "
                   "realm's display name, else its name).")
@click.option("--sign-out-everyone", "sign_out", is_flag=True,
              help="Once every covered door passes the audit, end the realm's sessions and "
                   "refuse the refresh and offline tokens issued before (they never met the "
                   "step-up).")
@click.option("--new-secret", is_flag=True,
              help="Give the realm's steps and the bridge a new client secret (after a leak, or "
                   "a secret changed by hand on one side).")
def keycloak_install(cover, source_flow, acr_values, no_enrollment, conditional_loa,
                     loa_max_age, existing_clients, name, sign_out, new_secret, **kw) -> None:
    """Put the step-up on every door into the realm (browser, password reset, registration,
    identity providers, direct grant), add the claims, register the realm at the bridge,
    then audit.
    Safe to run again, with other options too."""
    from stepup_keycloak import DOORS, MASKED_SECRET, ProvisioningError, audit, connect, install

    bridge = _bridge()
    doors = DOORS if cover == "all" else tuple(d.strip() for d in cover.split(",") if d.strip())
    try:
        opts = _install_options(
            bridge.settings, kw, source_flow=source_flow, acr_values=acr_values,
            allow_enrollment=not no_enrollment, conditional_loa=conditional_loa,
            loa_max_age=loa_max_age, cover=doors,
            existing_clients=existing_clients, bridge_acr=bridge.settings.acr)
        # The registration the realm will need, checked before the realm changes: install
        # half-done would leave every login needing a client the bridge does not have.
        with bridge.store.begin() as tx:
            registered = tx.find_client(opts.bridge_client_id)
        prefixes = _kept_prefixes(registered, opts.redirect_uri_prefixes)
        check_names(opts.bridge_client_id, [], prefixes)
        name = None if name is None else client_name(name)
        kept = registered.secret_digest if registered else None
        pepper = bridge.secrets.pepper
        opts = replace(opts, registered_check=kept,
                       secret_check=lambda secret: secret_digest(pepper, secret),
                       bridge_client_secret=secrets.token_urlsafe(32) if new_secret else None)
        admin = connect(opts)
        result = install(admin, opts)
        # Kept masked in the realm (Keycloak 26.7): the bridge keeps its digest of it too.
        masked = result.bridge_client_secret == MASKED_SECRET
        # A secret the realm shows, kept from an earlier run (edited by hand, say), is checked.
        record = new_client(pepper, result.bridge_client_id,
                            secret=None if masked else result.bridge_client_secret,
                            kept_digest=kept if masked else None, jwks_uri=None,
                            redirect_uris=[], redirect_uri_prefixes=prefixes,
                            allow_enrollment=not no_enrollment,
                            name=name or _realm_name(result.realm_display_name, opts.realm))
    except (ProvisioningError, ValueError) as e:
        _fail(str(e))
    _register(bridge, record, replace=True)
    click.echo(f"Realm {opts.realm}: step-up on {', '.join(result.covered) or 'no door'} "
               f"({'changed' if result.changed else 'already up to date'}); "
               f"bridge client '{record.client_id}' registered.")
    if result.identity_providers:
        click.echo(f"Identity providers: {', '.join(result.identity_providers)}.")
    if result.clients_scoped:
        click.echo(f"Client scope '{opts.client_scope}' added to: "
                   f"{', '.join(result.clients_scoped)}.")
    try:
        findings = audit(admin, opts)
    except ProvisioningError as e:
        _fail(f"installed, but the audit failed: {e}")
    _print_audit(findings, opts.realm)
    # A door it was asked to cover still open (a Kerberos alternative beside the password form,
    # say) fails the command, so automation that runs install notices; doors left out do not.
    # A step handing off elsewhere sits on a door that reaches it, whichever that is.
    if left := sorted({f.door for f in findings
                       if f.covered_by in opts.cover or f.door == "step config"}):
        _fail(f"installed, but the audit still finds {', '.join(left)} open or with the "
              "step-up out of place (the OPEN lines above say what to change)"
              + ("; nobody was signed out: users would sign in again through the open door"
                 if sign_out else ""))
    # Sessions and tokens from before install never meet the step; ending them signs every
    # user of the realm out, so it is asked for, not done on every re-run, and only once every
    # covered door has the step.
    if sign_out:
        _sign_out_everyone(admin, opts)
    elif result.changed:
        click.echo("Sessions and tokens from before this run do not meet the step-up until "
                   "they end: run again with --sign-out-everyone to end them now.")


def _realm_name(display: str | None, realm: str) -> str | None:
    """The name users see on the realm's login page (its display name, when one that fits a
    notice is set), else the realm's own (if it fits: else none, and the client id shows)."""
    return (display_name(display or "", CLIENT_NAME_LIMIT)
            or display_name(realm, CLIENT_NAME_LIMIT))


def _sign_out_everyone(admin, opts) -> None:
    from stepup_keycloak import ProvisioningError, sign_out_everyone

    try:
        unreached = sign_out_everyone(admin, opts)
    except ProvisioningError as e:
        _fail(f"installed, but signing everyone out failed: {e} (it may have happened in "
              "part; running install with --sign-out-everyone again is safe)")
    click.echo(f"Realm {opts.realm}: every session signed out; refresh and offline tokens "
               "issued before now are refused (access tokens live out their lifespan).")
    if unreached:
        click.echo(f"Keycloak could not tell {len(unreached)} application(s) to end their own "
                   f"sessions: {', '.join(unreached)}.")


def _kept_prefixes(found: Client | None, prefixes: list[str]) -> list[str]:
    """Install's callback prefixes plus any the client had (a re-run drops none but one in
    plain http to another machine, registered before such were refused: said so)."""
    kept = []
    for prefix in found.redirect_uri_prefixes if found else []:
        if in_clear(prefix):
            click.echo(f"Dropped the callback prefix {prefix}: plain http to another machine "
                       "(the code would cross the network in clear).", err=True)
        else:
            kept.append(prefix)
    return kept + [p for p in prefixes if p not in kept]


def _print_audit(findings, realm: str) -> bool:
    for finding in findings:
        click.echo(f"OPEN  {finding}")
    if findings:
        click.echo(f"Realm {realm}: {len(findings)} way(s) in without the step-up.")
    else:
        click.echo(f"Realm {realm}: every way in passes the step-up.")
    return not findings


@keycloak.command("audit")
@_keycloak_options
def keycloak_audit(**kw) -> None:
    """List every way into the realm that does not pass the step-up, one line each with what to
    change; exit status 0 only when there is none."""
    from stepup_keycloak import ProvisioningError, audit, connect

    settings = _settings()
    try:
        opts = _install_options(settings, kw)
        findings = audit(connect(opts), opts)
    except ProvisioningError as e:
        _fail(str(e))
    if not _print_audit(findings, opts.realm):
        sys.exit(1)


@keycloak.command("uninstall")
@_keycloak_options
def keycloak_uninstall(**kw) -> None:
    """Restore the realm's previous flows and remove what install created."""
    from stepup_keycloak import ProvisioningError, connect, uninstall

    bridge = _bridge()
    try:
        opts = _install_options(bridge.settings, kw)
        changed = uninstall(connect(opts), opts)
    except ProvisioningError as e:
        _fail(str(e))
    _unregister(bridge, opts.bridge_client_id)
    click.echo(f"Realm {opts.realm}: {'restored' if changed else 'nothing to undo'}.")
