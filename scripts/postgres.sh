#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests, on 127.0.0.1 only (Debian's postgresql package).
#   scripts/postgres.sh start [PORT]   -> prints the SQLAlchemy URL of database "stepup"
#   scripts/postgres.sh stop [PORT]
# The cluster lives in /tmp/stepup-pg-PORT, owned by the postgres user (initdb refuses root).
# A start that fails says why on stderr, with the end of the server's log.
set -euo pipefail
die() { echo "postgres.sh: $*" >&2; exit 1; }
# libpq's PG* variables of the caller (PGDATABASE, PGSSLMODE, ...) would steer psql and pg_isready.
unset $(compgen -e | grep '^PG') 2>/dev/null || true
cmd=${1:-start}
# Below Linux's ephemeral range (32768-60999): no client socket of a test run can hold it.
port=${2:-25432}
# The newest server installed: a client-only version (psql alone) has a bin folder too.
initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)
[ -n "$initdb" ] || die "no PostgreSQL server in /usr/lib/postgresql (apt-get install postgresql)"
bin=$(dirname "$initdb")
dir=/tmp/stepup-pg-$port
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case $cmd in
  start)
    # The cluster is disposable: one left by a machine whose postgres user had another uid
    # cannot be started, so it is made anew.
    if [ "$(id -u)" = 0 ] && [ -e "$dir" ] && [ "$(stat -c %U "$dir")" != postgres ]; then
      rm -rf "$dir"
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      mkdir -p "$dir" && { [ "$(id -u)" != 0 ] || chown postgres: "$dir"; }
      # --no-locale: the cluster must not depend on the locales this machine has generated
      # (LANG or LC_ALL may name one it lacks, and initdb then refuses).
      as_pg "$bin/initdb" -D "$dir" -U postgres -A trust --no-sync -E UTF8 --no-locale >/dev/null ||
        die "initdb of $dir failed"
    fi
    if ! as_pg "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
      # A server killed with its machine leaves its lock files; on a new machine their PID may
      # be another live process, which pg_ctl and PostgreSQL would take for the server. A
      # postmaster runs in its data folder: a PID working elsewhere is not this cluster's.
      pid=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null || true)
      if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" != "$(readlink -f "$dir")" ]; then
        rm -f "$dir/postmaster.pid" "$dir/.s.PGSQL.$port.lock"
      fi
      rm -f "$dir/server.log"  # what a failed start quotes is this start's
      as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >/dev/null ||
        die "the server on 127.0.0.1:$port did not start; $dir/server.log ends: $(tail -n 5 "$dir/server.log" 2>/dev/null | tr '\n' ' ')"
    fi
    as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='stepup'" | grep -q 1 ||
      as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres stepup
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/stepup"
    ;;
  stop)
    as_pg "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|stop [PORT]" >&2; exit 2 ;;
esac
