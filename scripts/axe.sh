#!/usr/bin/env bash
# axe-core for the accessibility tests (tests/e2e/accessibility.py), pinned in
# tests/e2e/axe/package-lock.json; needs npm (scripts/system-deps.sh). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
lock=tests/e2e/axe/package-lock.json
stamp=tests/e2e/axe/node_modules/.installed-$(sha256sum "$lock" | cut -c1-16)
if [ ! -f "$stamp" ]; then
  npm ci --prefix tests/e2e/axe --no-audit --no-fund --loglevel=error >/dev/null
  touch "$stamp"
fi
