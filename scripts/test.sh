#!/usr/bin/env bash
# Quick start, part 2: install what the tests need and run the whole suite, printing each
# test's outcome. Extra arguments go to pytest (e.g. scripts/test.sh tests/bridge -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh
scripts/bootstrap.sh
exec .venv/bin/python -m pytest -v -rA "${@:-tests}"
