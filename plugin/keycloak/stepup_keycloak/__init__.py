"""Provision Keycloak for Stepup Bridge with python-keycloak (``stepup keycloak install``).

Install puts the ``stepup-bridge`` authenticator on every door into a realm (browser flow,
password reset, registration, identity providers' post login flow, direct grant;
``InstallOptions.cover``) and adds a client scope that puts the step-up's ``acr``, ``amr``
and ``auth_time`` into tokens as ``stepup_acr``, ``stepup_amr`` and ``stepup_auth_time``.
Uninstall restores the previous bindings and deletes what install created. Both are
idempotent. Audit lists the doors that do not pass the step-up; signing everyone out ends the
sessions and tokens from before install, which no door can see. No Flask, no bridge import:
the bridge's CLI calls::

    opts = InstallOptions(server_url=..., realm=..., bridge_issuer=...,
                          admin_username=..., admin_password=...)
    result = install(connect(opts), opts)
"""

from .audit import Finding
from .errors import ProvisioningError
from .options import DOORS, MASKED_SECRET, InstallOptions
from .provision import InstallResult, audit, connect, install, sign_out_everyone, uninstall

__all__ = [
    "DOORS",
    "MASKED_SECRET",
    "Finding",
    "InstallOptions",
    "InstallResult",
    "ProvisioningError",
    "audit",
    "connect",
    "install",
    "sign_out_everyone",
    "uninstall",
]
