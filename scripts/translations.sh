#!/usr/bin/env bash
# The pages' message catalogues (bridge/translations/<lang>/LC_MESSAGES/messages.po).
#   scripts/translations.sh compile      .po -> .mo (scripts/bootstrap.sh runs it; .mo is not committed)
#   scripts/translations.sh extract OUT  write the texts the code marks (babel.cfg) to OUT (.pot)
#   scripts/translations.sh update       extract, then merge new texts into every .po
set -euo pipefail
cd "$(dirname "$0")/.."
PYBABEL=${PYBABEL:-.venv/bin/pybabel}
extract() {
  "$PYBABEL" extract -F babel.cfg -k N_ -k NP_:1,2 -k plural_text:1,2 --no-location --sort-output -w 100 \
    --project stepup-bridge -o "$1" bridge
}
case "${1:-compile}" in
  compile) "$PYBABEL" compile -d bridge/translations ;;
  extract) extract "${2:?output .pot file}" ;;
  update)
    pot=$(mktemp --suffix=.pot)
    trap 'rm -f "$pot"' EXIT
    extract "$pot"
    "$PYBABEL" update --ignore-obsolete -w 100 -i "$pot" -d bridge/translations ;;  # no locations: the .pot has none
  *) echo "usage: $0 compile|extract OUT|update" >&2; exit 2 ;;
esac
