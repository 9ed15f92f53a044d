#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the team-store tests (tests/test_team_postgres.py).
#
#   eval "$(.ci/postgres.sh start)"     # prints two export lines (below) on standard output
#   .ci/postgres.sh stop DIR            # stops the cluster of DIR and removes DIR
#
# start: as root, makes a folder /tmp/reprokit-pg.XXXXXX owned by the `postgres` user
# (PostgreSQL refuses to run as root), initdb's a cluster there as that user (superuser
# `reprokit`, a random password, scram-sha-256 over TCP) and starts it on a free loopback port
# (unix socket in the same folder), then prints
#   export REPROKIT_TEST_POSTGRES_URI=postgresql://reprokit:PASSWORD@127.0.0.1:PORT/postgres
#   export REPROKIT_TEST_POSTGRES_DIR=/tmp/reprokit-pg.XXXXXX
# Binaries: PG_BINDIR (default Debian's /usr/lib/postgresql/15/bin). Exit 2 when not root or
# when the binaries are missing; 1 when the cluster does not start (its log on standard error).
set -euo pipefail

bindir="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
user=postgres
die() { echo "postgres.sh: $1" >&2; exit "${2:-1}"; }
as_user() { runuser -u "$user" -- "$@"; }

start() {
    [ "$(id -u)" = 0 ] || die "run as root: the cluster is started as the '$user' user" 2
    [ -x "$bindir/initdb" ] && [ -x "$bindir/pg_ctl" ] || die "no PostgreSQL in $bindir" 2
    id "$user" >/dev/null 2>&1 || die "no '$user' user to run the cluster as" 2
    local dir port password
    dir="$(mktemp -d /tmp/reprokit-pg.XXXXXX)"
    chown "$user" "$dir"
    chmod 700 "$dir"
    password="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    (umask 077 && printf '%s\n' "$password" >"$dir/pwfile")
    chown "$user" "$dir/pwfile"
    if ! as_user "$bindir/initdb" -D "$dir/data" -U reprokit --pwfile="$dir/pwfile" -E UTF8 \
            --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        die "initdb failed in $dir"
    fi
    rm -f "$dir/pwfile"
    # a test cluster: no fsync (it is thrown away), room for concurrent mlflow writers
    if ! as_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o \
            "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" \
            start >/dev/null; then
        cat "$dir/server.log" >&2
        die "the PostgreSQL cluster in $dir did not start"
    fi
    echo "export REPROKIT_TEST_POSTGRES_URI=postgresql://reprokit:$password@127.0.0.1:$port/postgres"
    echo "export REPROKIT_TEST_POSTGRES_DIR=$dir"
}

stop() {
    local dir="${1:?usage: stop DIR}"
    case "$dir" in /tmp/reprokit-pg.*) ;; *) die "not a cluster folder of this script: $dir" 2 ;; esac
    [ -d "$dir/data" ] && as_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
        || true
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *) die "usage: $0 start | stop DIR" 2 ;;
esac
