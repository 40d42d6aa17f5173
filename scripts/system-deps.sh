#!/usr/bin/env bash
# Debian packages the test suite drives for real: Chromium (browser tests), PostgreSQL and
# Redis (production-engine tests), Maven + JDK (the Keycloak authenticator), npm (axe-core),
# valgrind (the instruction-count benchmark).
# Needs root.
set -euo pipefail
want=()
command -v chromium >/dev/null || want+=(chromium)
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || want+=(postgresql)
command -v redis-server >/dev/null || want+=(redis-server)
command -v mvn >/dev/null || want+=(maven)
command -v unzip >/dev/null || want+=(unzip)
command -v npm >/dev/null || want+=(npm)  # axe-core for the accessibility tests
command -v curl >/dev/null || want+=(curl)  # the help-desk docs' commands, run as written
command -v valgrind >/dev/null || want+=(valgrind)  # bench.instructions counts instructions
command -v systemd-analyze >/dev/null || want+=(systemd)  # deploy/systemd: the unit checked offline
command -v strace >/dev/null || want+=(strace)  # deploy/systemd: the calls a served sign-in makes
[ -x /usr/sbin/nginx ] || want+=(nginx-light)  # deploy/nginx: the documented proxy, for real
if [ ${#want[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${want[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Waits for a lock that another apt (a fresh machine's own upgrade, say) holds.
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${want[@]}" >/dev/null
fi
