"""The help-desk API (``/admin/api/…``): JSON over the shared verbs of :mod:`bridge.helpdesk`.

Callers are OAuth clients registered with ``--admin``; they get a short-lived bearer token
from ``/token`` with the client-credentials grant and scope ``stepup:admin`` (any client
authentication the bridge supports). Tokens are kept as digests in ``access_tokens``. Every
accepted call is audited with the caller's client id.
"""
