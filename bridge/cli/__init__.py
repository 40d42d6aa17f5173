"""The ``stepup`` command line (its names are a contract: scripts and docs depend on them).

``base`` holds the ``main`` group; each other module adds one domain's commands to it."""

from . import clients, db, keycloak, keys, users  # noqa: F401  (they register their commands)
from .base import main

__all__ = ["main"]
