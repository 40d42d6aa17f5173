#!/usr/bin/env bash
# The benchmarks in one command each, from a fresh clone (see bench/ratio.py, bench/keycloak.py
# and the README):
#   bench/run.sh                      # ceiling, SQLite, PostgreSQL
#   bench/run.sh --million            # plus p50 at 1,000 vs 1,000,000 enrolled users
#   bench/run.sh --out bench/results/after.txt
#   bench/run.sh keycloak             # Keycloak logins: the bridge vs Keycloak's own OTP form
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = keycloak ]; then
  shift
  scripts/system-deps.sh  # Maven, a JDK and unzip for scripts/keycloak.sh
  scripts/bootstrap.sh
  exec .venv/bin/python -m bench.keycloak "$@"
fi
scripts/bootstrap.sh
exec .venv/bin/python -m bench "$@"
