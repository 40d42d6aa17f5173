"""Storage: the only module that talks to the database.

Everything the bridge keeps goes through a few verbs on a transaction (:class:`Tx`). Every
single-use thing — pushed request, authorization code, TOTP time step, recovery code,
client-assertion ``jti`` — is taken by one conditional DELETE or UPDATE, so the database, not
process memory, decides the winner of a race; this holds across processes and nodes.
"""

from . import schema
from .database import Store
from .engine import create_engine
from .records import AUDIT_EVENTS, NOTIFIED_EVENTS, Client, Code, Flow, User, token_digest
from .tx import Tx

__all__ = ["AUDIT_EVENTS", "NOTIFIED_EVENTS", "Client", "Code", "Flow", "Store", "Tx", "User",
           "create_engine", "schema", "token_digest"]
