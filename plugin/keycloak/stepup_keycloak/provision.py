"""Install and uninstall the step-up in a Keycloak realm through its admin REST API.

:func:`install` is a short, ordered list of idempotent steps: each reads what is there and
writes only what differs, so a second run makes no write at all and never duplicates an
execution, a config, a mapper or a scope. :func:`uninstall` undoes it in reverse.
The steps themselves live in :mod:`stepup_keycloak.steps` (flow, config, binding) and
:mod:`stepup_keycloak.client_scope` (claims).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keycloak import KeycloakAdmin, KeycloakOpenIDConnection

from .client_scope import delete_client_scope, ensure_client_scope
from .errors import ProvisioningError, refused
from .options import InstallOptions
from .steps import Steps


@dataclass(frozen=True)
class InstallResult:
    """What install left in the realm, and what the bridge needs to register Keycloak.

    Register Keycloak at the bridge with ``stepup client add --client-id <bridge_client_id>
    --client-secret <bridge_client_secret> --redirect-uri-prefix <redirect_uri_prefix>``.
    """

    flow_alias: str
    execution_id: str
    config_id: str
    client_scope_id: str
    bridge_client_id: str
    bridge_client_secret: str = field(repr=False)
    redirect_uri_prefix: str
    #: False when the realm already looked exactly like this (nothing was written).
    changed: bool


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
    """Put the ``stepup-bridge`` step into a copy of the browser flow and bind it.

    1. copy ``opts.source_flow`` (default: the realm's bound browser flow) to ``opts.flow``
       unless that flow exists;
    2. place the step: REQUIRED right after the password form, or (``conditional_loa``) in a
       CONDITIONAL sub-flow there, behind "Condition - Level of Authentication";
    3. write the step's authenticator config (issuer, client, secret, options);
    4. bind ``opts.flow`` as the realm's browser flow, remembering the previous binding;
    5. create the client scope mapping the step-up session notes to claims, default for new
       clients.
    """
    steps = Steps(_admin_for(admin, opts), opts)
    steps.copy_flow()
    execution = steps.place_stepup()
    config_id, secret = steps.write_stepup_config(execution)
    steps.bind_flow()
    scope_id = ensure_client_scope(steps)
    return InstallResult(
        flow_alias=opts.flow,
        execution_id=execution.id,
        config_id=config_id,
        client_scope_id=scope_id,
        bridge_client_id=opts.bridge_client_id,
        bridge_client_secret=secret,
        redirect_uri_prefix=opts.redirect_uri_prefix,
        changed=steps.changed,
    )


def uninstall(admin: KeycloakAdmin, opts: InstallOptions) -> bool:
    """Undo :func:`install`; True when something was removed or restored.

    1. bind the remembered previous browser flow again (``browser`` if none was remembered or
       it is gone) and forget it;
    2. delete ``opts.flow`` with its sub-flows and configs (Keycloak deletes those with it);
    3. drop the client scope from the realm's default scopes, then delete it (Keycloak also
       removes it from the clients that have it).
    """
    steps = Steps(_admin_for(admin, opts), opts)
    steps.restore_binding()
    steps.delete_flow()
    delete_client_scope(steps)
    return steps.changed


def _admin_for(admin: KeycloakAdmin, opts: InstallOptions) -> KeycloakAdmin:
    """python-keycloak addresses every call to the connection's realm: it must be ours."""
    realm = admin.connection.realm_name
    if realm != opts.realm:
        raise ProvisioningError(
            f"the admin client works on realm {realm!r}, not {opts.realm!r}; "
            "build it with stepup_keycloak.connect(opts)"
        )
    return admin
