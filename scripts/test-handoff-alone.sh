#!/usr/bin/env bash
# The hand-off client as a Python IdP installs it: `pip install ./plugin/handoff` alone, in a
# fresh venv. Fails if any of the bridge's server packages came along, then runs the client's
# tests (tests/plugin) there, against the installed copy. scripts/test.sh runs this on a full run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
venv=$(mktemp -d "${TMPDIR:-/tmp}/stepup-handoff-venv.XXXXXX")
trap 'rm -rf "$venv"' EXIT
"$PYTHON" -m venv "$venv"
echo "Installing the hand-off client alone into a fresh venv"
rm -rf plugin/handoff/build  # setuptools' build folder may hold modules since deleted
if ! "$venv/bin/pip" install ./plugin/handoff "pytest>=8" "responses>=0.25" \
    > "$venv/install.log" 2>&1; then
  tail -30 "$venv/install.log" >&2
  exit 1
fi
installed=$("$venv/bin/pip" list --format=freeze)
echo "Installed: $(echo $installed)"
server=$(echo "$installed" |
         grep -iE '^(flask|sqlalchemy|gunicorn|alembic|authlib|python-keycloak|stepup-bridge)==' ||
         true)
if [ -n "$server" ]; then
  echo "pip install ./plugin/handoff also installed: $(echo $server)" >&2
  exit 1
fi
where=$("$venv/bin/python" -c 'import stepup_handoff; print(stepup_handoff.__file__)')
if [[ $where != "$venv"/* ]]; then
  echo "stepup_handoff was imported from $where, not from the fresh venv" >&2
  exit 1
fi
# --confcutdir: the tests above tests/plugin (tests/conftest.py) need the bridge; these must not.
"$venv/bin/python" -m pytest -v -rfEs -p no:cacheprovider --confcutdir=tests/plugin tests/plugin
