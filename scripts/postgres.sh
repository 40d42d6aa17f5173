#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests, on 127.0.0.1 only (Debian's postgresql package).
#   scripts/postgres.sh start [PORT]   -> prints the SQLAlchemy URL of database "stepup"
#   scripts/postgres.sh stop [PORT]
# The cluster lives in /tmp/stepup-pg-PORT, owned by the postgres user (initdb refuses root).
set -euo pipefail
cmd=${1:-start}
port=${2:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=/tmp/stepup-pg-$port
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case $cmd in
  start)
    if [ ! -f "$dir/PG_VERSION" ]; then
      mkdir -p "$dir" && { [ "$(id -u)" != 0 ] || chown postgres: "$dir"; }
      as_pg "$bin/initdb" -D "$dir" -U postgres -A trust --no-sync -E UTF8 >/dev/null
    fi
    if ! as_pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >/dev/null
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
