#!/usr/bin/env bash
# A local Keycloak for the Stepup Bridge tests and CI, everything on 127.0.0.1.
#
#   scripts/keycloak.sh fetch        download keycloak-quarkus-dist (via Maven, cached in ~/.m2) and unzip it
#   scripts/keycloak.sh build        build the authenticator jar (tests skipped) and copy it into providers/
#   scripts/keycloak.sh test         run the authenticator's JUnit tests (mvn test)
#   scripts/keycloak.sh start PORT   start-dev in the background, wait until /realms/master answers
#   scripts/keycloak.sh stop PORT    stop the instance started on PORT
#   scripts/keycloak.sh home         print the Keycloak home folder
#   scripts/keycloak.sh version      print the Keycloak version
#   scripts/keycloak.sh newest       print the newest Keycloak the tests also run on
#   scripts/keycloak.sh java-home    print the JAVA_HOME used to run it
#
# The Keycloak version is the <keycloak.version> of plugin/keycloak/authenticator/pom.xml (override with
# KEYCLOAK_VERSION, e.g. to the one `newest` prints). The authenticator is always built and unit-tested against
# the pom's version: the jar we ship is the one that runs in any of them. Each PORT gets its own log
# (.cache/keycloak/kc-PORT.log) and pid file; the embedded H2 database (dev-file) lives in the Keycloak home and is shared, so run one instance per home at a time, or set
# KEYCLOAK_DB=dev-mem for a fresh in-memory database on every start (changing it costs one ~20 s rebuild).
# Environment: KEYCLOAK_JAVA_HOME (a JDK to run Keycloak with), KEYCLOAK_START_TIMEOUT (seconds, default 180),
# KEYCLOAK_FEATURES (a --features list, e.g. preview features a test needs; changing it costs one rebuild too).
# Every sub-command is idempotent.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PLUGIN_POM="$ROOT/plugin/keycloak/authenticator/pom.xml"
CACHE="$ROOT/.cache/keycloak"
PROVIDER_JAR_PREFIX="stepup-keycloak-authenticator"

die() { echo "keycloak.sh: $*" >&2; exit 1; }

pom_version() {
    local version
    version=$(sed -n 's:.*<keycloak.version>\(.*\)</keycloak.version>.*:\1:p' "$PLUGIN_POM" | head -n 1)
    [[ -n "$version" ]] || die "no <keycloak.version> in $PLUGIN_POM"
    echo "$version"
}

#: The newest Keycloak 26.x that scripts/test.sh also runs the end-to-end Keycloak tests on.
KEYCLOAK_NEWEST=26.7.3
VERSION=${KEYCLOAK_VERSION:-$(pom_version)}
KC_HOME="$CACHE/keycloak-$VERSION"

# The Java feature version of a JDK folder, e.g. 17.
java_major() {
    "$1/bin/java" -XshowSettings:properties -version 2>&1 \
        | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p'
}

# The JDK majors a Keycloak version runs on, most preferred first.
supported_majors() {
    local minor
    minor=$(echo "$VERSION" | cut -d. -f2)
    if (( minor >= 6 )); then echo "21 25 17"; else echo "21 17"; fi
}

# JAVA_HOME for Keycloak: KEYCLOAK_JAVA_HOME, else the first installed JDK of a supported major.
pick_java_home() {
    if [[ -n "${KEYCLOAK_JAVA_HOME:-}" ]]; then
        echo "$KEYCLOAK_JAVA_HOME"
        return
    fi
    local major candidate
    for major in $(supported_majors); do
        for candidate in "${JAVA_HOME:-}" /usr/lib/jvm/*; do
            [[ -n "$candidate" && -x "$candidate/bin/java" ]] || continue
            if [[ "$(java_major "$candidate")" == "$major" ]]; then
                readlink -f "$candidate"
                return
            fi
        done
    done
    die "no JDK for Keycloak $VERSION (needs one of: $(supported_majors)); set KEYCLOAK_JAVA_HOME"
}

# Maven for the plugin always compiles with the JDK it runs on; release 17 bytecode is set in the pom.
# Maven's own output goes to stderr, so a sub-command's stdout is only its result (a path).
mvn_plugin() {
    mvn -q -B -Dstyle.color=never -f "$PLUGIN_POM" "$@" >&2
}

cmd_fetch() {
    if [[ -x "$KC_HOME/bin/kc.sh" ]]; then
        echo "$KC_HOME"
        return
    fi
    mkdir -p "$CACHE"
    local zip="$CACHE/keycloak-quarkus-dist-$VERSION.zip"
    if [[ ! -f "$zip" ]]; then
        (cd "$CACHE" && mvn -q -B -Dstyle.color=never dependency:copy \
            -Dartifact="org.keycloak:keycloak-quarkus-dist:$VERSION:zip" -DoutputDirectory="$CACHE" >&2)
    fi
    local tmp
    tmp=$(mktemp -d "$CACHE/unzip.XXXXXX")
    unzip -q "$zip" -d "$tmp"
    [[ -x "$tmp/keycloak-$VERSION/bin/kc.sh" ]] || die "unexpected layout in $zip"
    mv "$tmp/keycloak-$VERSION" "$KC_HOME"
    rmdir "$tmp"
    rm -f "$zip"   # ~160 MB; ~/.m2 keeps the original
    echo "$KC_HOME"
}

cmd_build() {
    [[ -x "$KC_HOME/bin/kc.sh" ]] || cmd_fetch >/dev/null
    mvn_plugin -DskipTests package
    local jar
    jar=$(ls "$ROOT"/plugin/keycloak/authenticator/target/"$PROVIDER_JAR_PREFIX"-*.jar | grep -v -- '-sources\.jar$' | head -n 1)
    [[ -f "$jar" ]] || die "no jar built in plugin/keycloak/authenticator/target"
    local installed="$KC_HOME/providers/$(basename "$jar")"
    # An unchanged jar keeps its timestamp, so the next start skips Keycloak's ~20-35 s re-augmentation.
    if ! cmp -s "$jar" "$installed"; then
        rm -f "$KC_HOME/providers/$PROVIDER_JAR_PREFIX"-*.jar
        cp "$jar" "$installed"
    fi
    echo "$installed"
}

cmd_test() {
    # Not quiet: Surefire's "Tests run: …" line per test class is the outcome CI shows.
    mvn -B -ntp -Dstyle.color=never -f "$PLUGIN_POM" test \
        | grep -E "Tests run:|FAIL|ERROR|BUILD"
}

check_port() {
    [[ "${1:-}" =~ ^[0-9]+$ ]] && (( $1 > 0 && $1 < 65536 )) || die "usage: $0 ${2:-start} PORT"
}

pid_file() { echo "$CACHE/kc-$1.pid"; }
log_file() { echo "$CACHE/kc-$1.log"; }

# The pid of the instance on PORT when it is still running, else nothing.
running_pid() {
    local file pid
    file=$(pid_file "$1")
    [[ -f "$file" ]] || return 0
    pid=$(cat "$file")
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

answers() {
    curl -fsS -o /dev/null --max-time 5 "http://127.0.0.1:$1/realms/master" 2>/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd_start() {
    local port=${1:-}
    check_port "$port" start
    [[ -x "$KC_HOME/bin/kc.sh" ]] || die "Keycloak $VERSION is not fetched: run $0 fetch"
    if [[ -n "$(running_pid "$port")" ]] && answers "$port"; then
        echo "Keycloak already running on http://127.0.0.1:$port"
        return
    fi
    cmd_stop "$port" >/dev/null
    if answers "$port"; then
        die "port $port already answers /realms/master (a Keycloak this script did not start)"
    fi
    local java_home log management
    java_home=$(pick_java_home)
    log=$(log_file "$port")
    management=$(free_port)
    mkdir -p "$CACHE"
    echo "$management" > "$CACHE/kc-$port.management-port"
    # setsid: the server gets its own process group, so stop can end kc.sh and java together.
    JAVA_HOME="$java_home" PATH="$java_home/bin:$PATH" \
    KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD=admin \
        setsid "$KC_HOME/bin/kc.sh" start-dev \
            --http-host 127.0.0.1 --http-port "$port" --hostname-strict=false \
            --http-management-port "$management" --health-enabled=true \
            --db "${KEYCLOAK_DB:-dev-file}" ${KEYCLOAK_FEATURES:+--features "$KEYCLOAK_FEATURES"} \
            </dev/null >"$log" 2>&1 &
    echo $! > "$(pid_file "$port")"
    wait_until_up "$port" "$log"
}

wait_until_up() {
    local port=$1 log=$2 timeout=${KEYCLOAK_START_TIMEOUT:-180} started=$SECONDS
    while (( SECONDS - started < timeout )); do
        if answers "$port"; then
            echo "Keycloak $VERSION up on http://127.0.0.1:$port after $(( SECONDS - started )) s (log: $log)"
            return
        fi
        if [[ -z "$(running_pid "$port")" ]]; then
            echo "Keycloak exited during start-up; last lines of $log:" >&2
            tail -n 60 "$log" >&2 || true
            rm -f "$(pid_file "$port")"
            exit 1
        fi
        sleep 1
    done
    echo "Keycloak did not answer on port $port within $timeout s; last lines of $log:" >&2
    tail -n 60 "$log" >&2 || true
    cmd_stop "$port" >/dev/null
    exit 1
}

cmd_stop() {
    local port=${1:-} pid waited=0
    check_port "$port" stop
    pid=$(running_pid "$port")
    if [[ -z "$pid" ]]; then
        rm -f "$(pid_file "$port")"
        echo "Keycloak not running on port $port"
        return
    fi
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && (( waited < 30 )); do
        sleep 1
        waited=$(( waited + 1 ))
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pid_file "$port")" "$CACHE/kc-$port.management-port"
    echo "Keycloak on port $port stopped"
}

main() {
    local command=${1:-}
    shift || true
    case "$command" in
        fetch) cmd_fetch ;;
        build) cmd_build ;;
        test) cmd_test ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        home) echo "$KC_HOME" ;;
        version) echo "$VERSION" ;;
        newest) echo "$KEYCLOAK_NEWEST" ;;
        java-home) pick_java_home ;;
        *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

main "$@"
