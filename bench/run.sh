#!/usr/bin/env bash
# The ratio benchmark in one command, from a fresh clone (see bench/ratio.py and the README):
#   bench/run.sh                      # ceiling, SQLite, PostgreSQL
#   bench/run.sh --million            # plus p50 at 1,000 vs 1,000,000 enrolled users
#   bench/run.sh --out bench/results/after.txt
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m bench "$@"
