"""Python client for the Stepup Bridge hand-off (OpenID Connect code flow with PAR and PKCE).

Usage and what is verified: ``docs/handoff-client.md``.
"""

from .assertion import StepupResult
from .client import HandoffClient, PendingHandoff, ProviderMetadata
from .errors import (
    AccessDenied,
    DiscoveryError,
    HandoffError,
    InvalidAssertion,
    PushError,
    StateMismatch,
    TokenError,
)

__all__ = [
    "AccessDenied",
    "DiscoveryError",
    "HandoffClient",
    "HandoffError",
    "InvalidAssertion",
    "PendingHandoff",
    "ProviderMetadata",
    "PushError",
    "StateMismatch",
    "StepupResult",
    "TokenError",
]
