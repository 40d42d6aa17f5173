"""Install, uninstall and audit the step-up in a Keycloak realm through its admin REST API.

:func:`install` brings every door of ``opts.cover`` to the step-up (:mod:`stepup_keycloak.doors`)
and takes it off the doors left out, so a re-run with other options moves the realm from any
earlier layout to the requested one; a second identical run writes nothing. It checks that the
authenticator is deployed before it writes anything; if Keycloak refuses a write half-way, the
error names every change already made. :func:`uninstall` undoes all of it. :func:`audit`
(:mod:`stepup_keycloak.audit`) lists the doors that remain open. :func:`sign_out_everyone` ends
what no door can see: the sessions and tokens from before install.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from keycloak import KeycloakAdmin, KeycloakOpenIDConnection

from .audit import Finding
from .audit import audit as audit_doors
from .client_scope import add_to_existing_clients, delete_client_scope, ensure_client_scope
from .doors import Doors
from .errors import ProvisioningError, refused
from .options import AUTHENTICATOR_ID, InstallOptions
from .steps import SecretUnknown, Steps


@dataclass(frozen=True)
class InstallResult:
    """What install left in the realm, and what the bridge needs to register Keycloak.

    The bridge registers Keycloak as client ``bridge_client_id`` with ``bridge_client_secret``
    and every one of ``redirect_uri_prefixes`` (the CLI does it). ``MASKED_SECRET`` as the
    secret: Keycloak kept the one the bridge holds (``registered_check``), and so does the
    bridge.
    """

    flow_alias: str
    client_scope_id: str
    bridge_client_id: str
    bridge_client_secret: str = field(repr=False)
    redirect_uri_prefixes: list[str]
    #: The doors that have the step-up now.
    covered: tuple[str, ...]
    #: Aliases of the identity providers whose post login flow is the step-up.
    identity_providers: list[str]
    #: Client ids that got the client scope in this run (``existing_clients``).
    clients_scoped: list[str]
    #: False when the realm already looked exactly like this (nothing was written).
    changed: bool
    #: What the realm's login page calls it (its ``displayName``), if it has a name for that.
    realm_display_name: str | None = None


def connect(opts: InstallOptions) -> KeycloakAdmin:
    """An admin client for ``opts.realm``, logged in now so bad credentials fail here.

    The token comes from ``opts.admin_realm`` (python-keycloak's ``user_realm_name``); admin
    calls go to ``opts.realm``. python-keycloak joins paths to the base URL with ``urljoin``,
    so the base URL gets its trailing slash back (else a ``/auth`` context path would be lost).
    """
    common = {
        "server_url": opts.server_url + "/",
        "realm_name": opts.realm,
        "user_realm_name": opts.admin_realm,
        "verify": opts.verify_tls,
    }
    if opts.uses_password:
        connection = KeycloakOpenIDConnection(
            **common,
            grant_type="password",
            client_id="admin-cli",
            username=opts.admin_username,
            password=opts.admin_password,
        )
    else:
        connection = KeycloakOpenIDConnection(
            **common,
            grant_type="client_credentials",
            client_id=str(opts.admin_client_id),
            client_secret_key=opts.admin_client_secret,
        )
    action = f"log in the {opts.admin_account}"
    with refused(
        action, server_url=opts.server_url, account=opts.admin_account, secrets=opts.secrets()
    ):
        connection.get_token()
    return KeycloakAdmin(connection=connection)


def install(admin: KeycloakAdmin, opts: InstallOptions) -> InstallResult:
    """Put the ``stepup-bridge`` step on every door of ``opts.cover``, take it off the others.

    1. check the realm is there and the authenticator deployed (nothing written yet);
    2. keep the bridge client secret an earlier run wrote (or take ``opts``' or a new one);
    3. each door in order browser, reset-credentials, registration, brokers, direct-grant:
       install or undo;
    4. create the client scope mapping the step-up session notes to claims (a realm default),
       and with ``existing_clients`` add it to every client there is.
    """
    _check_admin_login_kept(opts)
    steps = Steps(_admin_for(admin, opts), opts)
    doors = Doors(steps)
    try:
        _check_deployed(steps)
        secret = opts.bridge_client_secret or doors.existing_secret() or secrets.token_urlsafe(32)
        try:
            idps = _put_doors(doors, opts, secret)
        except SecretUnknown:  # a door new to this run needs the secret itself: a new one
            secret = secrets.token_urlsafe(32)
            idps = _put_doors(doors, opts, secret)
        scope_id = ensure_client_scope(steps)
        realm_display_name = steps.realm().get("displayName")
        scoped = add_to_existing_clients(steps, scope_id) if opts.existing_clients else []
    except ProvisioningError as exc:
        raise _with_journal(exc, steps, "install") from exc
    return InstallResult(
        flow_alias=opts.flow,
        client_scope_id=scope_id,
        bridge_client_id=opts.bridge_client_id,
        bridge_client_secret=secret,
        redirect_uri_prefixes=opts.redirect_uri_prefixes,
        covered=opts.cover,
        identity_providers=idps,
        clients_scoped=scoped,
        changed=steps.changed,
        realm_display_name=realm_display_name,
    )


def uninstall(admin: KeycloakAdmin, opts: InstallOptions) -> bool:
    """Undo :func:`install`; True when something was removed or restored.

    Each door gets its remembered flow back and loses our copy; identity providers get their
    previous post login flow back; then the client scope is dropped from the realm defaults and
    deleted (Keycloak also removes it from the clients that have it).
    """
    steps = Steps(_admin_for(admin, opts), opts)
    doors = Doors(steps)
    try:
        for _, _, undo in _door_actions(doors):
            undo()
        delete_client_scope(steps)
    except ProvisioningError as exc:
        raise _with_journal(exc, steps, "uninstall") from exc
    return steps.changed


def sign_out_everyone(admin: KeycloakAdmin, opts: InstallOptions) -> list[str]:
    """End the realm's sessions and refuse the refresh and offline tokens issued before now,
    so nothing from before install skips the step: an SSO cookie, a refresh or an offline
    token. Returns the admin URLs of clients Keycloak could not tell (those applications keep
    their own sessions); access tokens already issued live out their lifespan."""
    return Steps(_admin_for(admin, opts), opts).sign_out_everyone()


def audit(admin: KeycloakAdmin, opts: InstallOptions) -> list[Finding]:
    """Every way into the realm that does not pass the step-up (read-only)."""
    return audit_doors(Steps(_admin_for(admin, opts), opts))


def _put_doors(doors: Doors, opts: InstallOptions, secret: str) -> list[str]:
    """Each door in order: the step put on it or undone; the identity providers covered."""
    doors.steps.hide(secret)
    idps: list[str] = []
    for door, put, undo in _door_actions(doors):
        if door in opts.cover:
            done = put(secret)
            idps = done if door == "brokers" else idps
        else:
            undo()
    return idps


def _door_actions(doors: Doors) -> list[tuple[str, Any, Any]]:
    return [
        ("browser", doors.install_browser, doors.uninstall_browser),
        ("reset-credentials", doors.install_reset, doors.uninstall_reset),
        ("registration", doors.install_registration, doors.uninstall_registration),
        ("brokers", doors.install_brokers, doors.uninstall_brokers),
        ("direct-grant", doors.install_direct_grant, doors.uninstall_direct_grant),
    ]


def _check_admin_login_kept(opts: InstallOptions) -> None:
    """Refuse to cover the direct-grant door of the realm the admin logs in to by password:
    admin-cli's password grant runs that realm's direct grant flow, which the door makes
    refuse every grant, so audit, uninstall and kcadm could never log in again."""
    if opts.uses_password and opts.admin_realm == opts.realm and "direct-grant" in opts.cover:
        others = ",".join(d for d in opts.cover if d != "direct-grant")
        raise ProvisioningError(
            f"the direct-grant door would refuse the password login of the {opts.admin_account} "
            "that this and every later run use; log in with a service-account client "
            f"(--admin-client-id) or leave the door out (--cover {others or 'browser'}); "
            "nothing was changed"
        )


def _check_deployed(steps: Steps) -> None:
    steps.realm()  # a wrong realm fails here, before any write
    providers = steps.read("list authenticator providers", steps.admin.get_authenticator_providers)
    if not any(p.get("id") == AUTHENTICATOR_ID for p in providers):
        raise ProvisioningError(
            f"Keycloak has no {AUTHENTICATOR_ID!r} authenticator; put the jar in its providers/ "
            "folder, run kc.sh build and restart it"
        )


def _with_journal(exc: ProvisioningError, steps: Steps, what: str) -> ProvisioningError:
    """The error, plus exactly what was changed before it (or that nothing was)."""
    if not steps.done:
        return ProvisioningError(f"{exc} (nothing was changed)")
    return ProvisioningError(
        f"{exc}; {what} stopped after: {'; '.join(steps.done)} — run it again to finish, "
        "or `stepup keycloak uninstall` to undo"
    )


def _admin_for(admin: KeycloakAdmin, opts: InstallOptions) -> KeycloakAdmin:
    """python-keycloak addresses every call to the connection's realm: it must be ours."""
    realm = admin.connection.realm_name
    if realm != opts.realm:
        raise ProvisioningError(
            f"the admin client works on realm {realm!r}, not {opts.realm!r}; "
            "build it with stepup_keycloak.connect(opts)"
        )
    return admin
