"""One real Keycloak world per test session, shared by every Keycloak end-to-end test file."""

from __future__ import annotations

import pytest

from .keycloak_env import start_world


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    yield from start_world(tmp_path_factory.mktemp("keycloak"))
