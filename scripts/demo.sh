#!/usr/bin/env bash
# Quick start, part 1: the bridge plus a demo IdP on the embedded SQLite default.
# Open the "Demo IdP" URL it prints and sign in as one of the demo users.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export STEPUP_DATA_DIR=${STEPUP_DATA_DIR:-$PWD/instance}
exec .venv/bin/stepup demo --invoked-as "$0" "$@"
