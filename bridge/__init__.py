"""Stepup Bridge: an MFA step-up OpenID provider (TOTP and a rotating recovery code).

``create_app`` is imported on first use, so ``import bridge.factors.totp`` (domain code, no
web framework) does not load Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'bridge' has no attribute {name!r}")
