"""Python client for the Stepup Bridge hand-off (OpenID Connect code flow with PAR and PKCE).

Usage and what is verified: ``docs/handoff-client.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Where each name lives. Loaded on first use, so that ``stepup_handoff.deadline`` alone (the
#: bridge's workers use it) does not bring in ``requests`` and the client (5 MiB a process).
_HOMES = {
    "StepupResult": ".assertion",
    **dict.fromkeys(["HandoffClient", "PendingHandoff", "ProviderMetadata"], ".client"),
    **dict.fromkeys(["AccessDenied", "DiscoveryError", "HandoffError", "InvalidAssertion",
                     "PushError", "StateMismatch", "TokenError"], ".errors"),
}

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


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)


def __dir__() -> list[str]:
    """The public names too, for ``dir()`` and ``help()`` (they load on first use)."""
    return sorted({*globals(), *__all__})
