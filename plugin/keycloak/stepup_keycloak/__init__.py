"""Provision Keycloak for Stepup Bridge with python-keycloak (``stepup keycloak install``).

Install copies the realm's browser flow, adds the ``stepup-bridge`` authenticator right after
the password form (or behind a level-of-authentication condition), writes its config, binds
the copy as the browser flow and adds a client scope that puts the step-up's ``acr``, ``amr``
and ``auth_time`` into tokens as ``stepup_acr``, ``stepup_amr`` and ``stepup_auth_time``.
Uninstall restores the previous binding and deletes what install created. Both are
idempotent. No Flask, no bridge import: the bridge's CLI calls::

    opts = InstallOptions(server_url=..., realm=..., bridge_issuer=...,
                          admin_username=..., admin_password=...)
    result = install(connect(opts), opts)
"""

from .errors import ProvisioningError
from .options import InstallOptions
from .provision import InstallResult, connect, install, uninstall

__all__ = [
    "InstallOptions",
    "InstallResult",
    "ProvisioningError",
    "connect",
    "install",
    "uninstall",
]
