#!/usr/bin/env bash
# Create .venv and install the bridge with everything the demo and the tests use (Python
# only: the demo needs nothing else; scripts/axe.sh adds the accessibility tests' axe-core).
# Idempotent: re-running only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml plugin/handoff/pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "Installing Python packages into .venv (log: .venv/install.log)"
  # The hand-off client is its own distribution (stepup-handoff), a dependency of the bridge:
  # naming both in one command makes pip take it from this clone, not from an index.
  if ! { .venv/bin/pip install --upgrade pip &&
         .venv/bin/pip install -e ./plugin/handoff -e ".[dev,keycloak,postgres,redis]"; } \
      > .venv/install.log 2>&1; then
    tail -30 .venv/install.log >&2
    exit 1
  fi
  rm -f .venv/.installed-* && touch "$stamp"
fi
# The pages' message catalogues (.po -> .mo).
if ! scripts/translations.sh compile > .venv/translations.log 2>&1; then
  cat .venv/translations.log >&2
  exit 1
fi
