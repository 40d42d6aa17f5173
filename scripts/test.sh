#!/usr/bin/env bash
# Quick start, part 2: install what the tests need and run the whole suite, printing each
# test's outcome. Extra arguments go to pytest (e.g. scripts/test.sh tests/bridge -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh
scripts/bootstrap.sh
scripts/axe.sh
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest -v -rfEs "$@"
fi
# Lint first: the style rules (pyproject.toml [tool.ruff]) hold for every change.
.venv/bin/ruff check --no-cache .
# The hand-off client installed alone (no Flask, no SQLAlchemy) passes its tests.
scripts/test-handoff-alone.sh
# The Keycloak authenticator's JUnit tests (Maven Surefire prints each class's outcome).
scripts/keycloak.sh test
.venv/bin/python -m pytest -v -rfEs tests
# The real-Keycloak tests once more, on the newest Keycloak 26.x, with the jar built against the
# pom's: admin API and grant answers change between minors (26.6 answers a wrong password with
# 400, 26.7 shows secrets masked).
newest=$(scripts/keycloak.sh newest)  # its own line: set -e does not see a failure in a prefix
KEYCLOAK_VERSION=$newest \
  exec .venv/bin/python -m pytest -v -rfEs tests/e2e/test_keycloak.py tests/e2e/test_keycloak_doors.py
