#!/usr/bin/env bash
# Quick start, part 2: install what the tests need and run the whole suite, printing each
# test's outcome. Extra arguments go to pytest (e.g. scripts/test.sh tests/bridge -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh
scripts/bootstrap.sh
scripts/axe.sh
if [ $# -eq 0 ]; then
  # Lint first: the style rules (pyproject.toml [tool.ruff]) hold for every change.
  .venv/bin/ruff check --no-cache .
  # The hand-off client installed alone (no Flask, no SQLAlchemy) passes its tests.
  scripts/test-handoff-alone.sh
  # The Keycloak authenticator's JUnit tests (Maven Surefire prints each class's outcome).
  scripts/keycloak.sh test
fi
exec .venv/bin/python -m pytest -v -rfEs "${@:-tests}"
