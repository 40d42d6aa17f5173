"""Fixtures: a fake Keycloak behind `responses`, install options, and a logged-in admin."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import responses
from fake_keycloak import BASE, FakeKeycloak
from keycloak import KeycloakAdmin

from stepup_keycloak import InstallOptions, connect

ADMIN_PASSWORD = "admin-password-123"
BRIDGE = "https://mfa.example.test"


@pytest.fixture
def fake() -> Iterator[FakeKeycloak]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        keycloak = FakeKeycloak(realm="acme")
        keycloak.register(rsps)
        yield keycloak


@pytest.fixture
def make_opts() -> Callable[..., InstallOptions]:
    """Build options for realm ``acme`` of the fake (admin ``admin`` of ``master``), changed."""
    return options


@pytest.fixture
def opts() -> InstallOptions:
    return options()


@pytest.fixture
def admin(fake: FakeKeycloak, opts: InstallOptions) -> KeycloakAdmin:
    return connect(opts)


def options(**changes: object) -> InstallOptions:
    values: dict[str, object] = {
        "server_url": BASE,
        "realm": "acme",
        "bridge_issuer": BRIDGE,
        "admin_username": "admin",
        "admin_password": ADMIN_PASSWORD,
    }
    values.update(changes)
    return InstallOptions(**values)  # type: ignore[arg-type]
