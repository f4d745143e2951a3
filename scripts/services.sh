#!/usr/bin/env bash
# PostgreSQL and Redis for the distributed mode (docs/deployment.md), from Debian's packages,
# run as local processes of this checkout: data and logs in out/services/, listening on
# 127.0.0.1 only, on ports derived from the checkout's path (two checkouts on one machine do not
# collide; CRM_ENGINE_PG_PORT / CRM_ENGINE_REDIS_PORT override them).
#
#   scripts/services.sh install   apt-get install postgresql redis-server (when missing)
#   scripts/services.sh start     initdb on first use, then start both (idempotent)
#   scripts/services.sh stop      stop both
#   scripts/services.sh status    exit 0 when both answer
#   scripts/services.sh env       print the exports that point the engine and tests at them
#
# For tests and development only: fsync is off and the password is generated locally.
# PostgreSQL refuses to run as root: as root (CI), it runs as the `postgres` user, from a data
# directory that user owns.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$ROOT/out/services"
KEY="$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
OFFSET=$((KEY % 900))
PG_PORT="${CRM_ENGINE_PG_PORT:-$((54100 + OFFSET))}"
REDIS_PORT="${CRM_ENGINE_REDIS_PORT:-$((55100 + OFFSET))}"
PG_USER=crm
PG_DB=crm
PASSWORD_FILE="$DIR/pg.password"

if [ "$(id -u)" = 0 ]; then
    PGDATA="/var/tmp/crm-engine-pg-$KEY"  # the postgres user must reach it; $ROOT may be closed
    as_pg() { (cd / && runuser -u postgres -- "$@"); }
else
    PGDATA="$DIR/pg"
    as_pg() { "$@"; }
fi

pg_bin() {
    local bin
    for bin in /usr/lib/postgresql/*/bin; do
        [ -x "$bin/pg_ctl" ] && { echo "$bin"; return; }
    done
    command -v pg_ctl >/dev/null && { dirname "$(command -v pg_ctl)"; return; }
    echo "services: PostgreSQL is not installed: run '$0 install' (or make services)" >&2
    exit 1
}

install() {
    local missing=()
    compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql)
    command -v redis-server >/dev/null || missing+=(redis-server)
    [ ${#missing[@]} = 0 ] && return
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

password() {
    mkdir -p "$DIR"
    if [ ! -s "$PASSWORD_FILE" ]; then
        (umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$PASSWORD_FILE")
    fi
    cat "$PASSWORD_FILE"
}

start_pg() {
    local bin pw
    bin="$(pg_bin)"
    if [ ! -s "$PASSWORD_FILE" ] && [ -e "$PGDATA" ]; then
        # A data folder an earlier checkout at this path left outside it (as root): its
        # password went with that checkout. Test data only: start afresh.
        as_pg "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$PGDATA"
    fi
    pw="$(password)"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        mkdir -p "$PGDATA"
        [ "$(id -u)" = 0 ] && chown postgres: "$PGDATA" && chmod 700 "$PGDATA"
        local pwfile="$PGDATA.pw"
        (umask 077; printf '%s\n' "$pw" >"$pwfile")
        [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
        as_pg "$bin/initdb" -D "$PGDATA" -U "$PG_USER" --pwfile="$pwfile" \
            --auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 >"$DIR/initdb.log"
        rm -f "$pwfile"
    fi
    if ! as_pg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 30 start -o \
            "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PGDATA -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
            >/dev/null
    fi
    PGPASSWORD="$pw" "$bin/psql" -qAt -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1 ||
        PGPASSWORD="$pw" "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
}

start_redis() {
    if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
        return
    fi
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$DIR" \
        --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" --save '' --appendonly no
    for _ in $(seq 50); do
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "services: redis-server did not start: see $DIR/redis.log" >&2
    exit 1
}

stop() {
    if [ -s "$PGDATA/PG_VERSION" ]; then
        as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}

status() {
    as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1 &&
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1
}

env() {
    cat <<EOF
export CRM_ENGINE_PG_DSN='host=127.0.0.1 port=$PG_PORT dbname=$PG_DB user=$PG_USER'
export CRM_ENGINE_PG_PASSWORD='$(password)'
export CRM_ENGINE_REDIS_URL='redis://127.0.0.1:$REDIS_PORT/0'
EOF
}

case "${1:-}" in
    install) install ;;
    start) mkdir -p "$DIR"; start_pg; start_redis; echo "services: PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT" ;;
    stop) stop ;;
    status) status ;;
    env) env ;;
    *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
