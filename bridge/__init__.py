"""Stepup Bridge: an MFA step-up OpenID provider (TOTP and a rotating recovery code)."""

from .app import create_app

__all__ = ["create_app"]
