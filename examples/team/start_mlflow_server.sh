#!/usr/bin/env bash
# Start a team MLflow tracking server on loopback, and point reprokit at it.
#
#   eval "$(examples/team/start_mlflow_server.sh [--dir DIR] [--port PORT] [--database-url URL])"
#   examples/team/start_mlflow_server.sh --stop [--dir DIR] [--stop-wait SECONDS]
#
# Starts `mlflow server` in the background on 127.0.0.1:PORT (default 5000) with
#   - the backend store: SQLite DIR/mlflow.db (default), or the database of --database-url
#     (postgresql://USER:PASSWORD@HOST:PORT/DB; needs the driver SQLAlchemy uses for it in this
#     Python: psycopg 3 for postgresql://, psycopg2 for postgresql+psycopg2://, both in
#     `pip install "reprokit-nb[postgres]"`). The connection is checked first: a database that
#     does not answer is one line naming the URL without its password. The URL is never
#     printed and never on a command line (the server gets it through its environment).
#   - the artifacts: DIR/mlartifacts, served by the server itself (--serve-artifacts), so
#     clients upload through HTTP and need no access to the folder.
# DIR defaults to ./mlflow-server; the server's log is DIR/server.log, its pid DIR/server.pid.
# Waits (at most --wait seconds, default 60) until the server answers /health, then prints
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:PORT
# on standard output (everything else goes to standard error), so `eval "$(...)"` sets it for
# reprokit, the %repro magics and MLflow alike. The server listens on loopback only: to share it
# with a team, put it behind an authenticating reverse proxy or an SSH tunnel, never on 0.0.0.0.
# --stop sends SIGTERM to the server's whole process group (its uvicorn/gunicorn workers too),
# waits until every process of the group has exited (at most --stop-wait seconds, default 30),
# then SIGKILLs the group; it fails only if processes of the group outlive SIGKILL.
# Requires the full `mlflow` package (pip install mlflow). PYTHON selects the interpreter.
set -euo pipefail

dir=mlflow-server
port=5000
database_url=
wait_s=60
stop_wait_s=30
stop=false
python="${PYTHON:-python3}"

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "start_mlflow_server: $1" >&2; exit "${2:-1}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir="${2:?--dir needs a folder}"; shift 2 ;;
        --port) port="${2:?--port needs a number}"; shift 2 ;;
        --database-url) database_url="${2:?--database-url needs a URL}"; shift 2 ;;
        --wait) wait_s="${2:?--wait needs seconds}"; shift 2 ;;
        --stop) stop=true; shift ;;
        --stop-wait) stop_wait_s="${2:?--stop-wait needs seconds}"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "start_mlflow_server: unknown option $1" >&2; usage ;;
    esac
done
case "$port" in ''|*[!0-9]*) die "--port must be a number, got '$port'" 2 ;; esac
case "$wait_s" in ''|*[!0-9]*) die "--wait must be a whole number of seconds, got '$wait_s'" 2 ;; esac
case "$stop_wait_s" in
    ''|*[!0-9]*) die "--stop-wait must be a whole number of seconds, got '$stop_wait_s'" 2 ;;
esac

pidfile="$dir/server.pid"

# Is a process of group $1 still running? (zombies do not count: they have exited and only
# wait for their new parent, init, to reap them)
group_running() {
    ps -A -o pgid= -o stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

# Wait at most $2 seconds for group $1 to end; fails if it is still running then.
wait_group() {
    local deadline=$((SECONDS + $2))
    while group_running "$1"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

stop_server() {
    [ -f "$pidfile" ] || die "no $pidfile: no server started from $dir"
    local pid; pid="$(cat "$pidfile")"
    case "$pid" in ''|*[!0-9]*) rm -f "$pidfile"; die "$pidfile holds no pid: removed it" ;; esac
    # the server's process group (set -m below): gunicorn/uvicorn workers too
    kill -TERM -- "-$pid" 2>/dev/null || true
    if wait_group "$pid" "$stop_wait_s"; then
        rm -f "$pidfile"
        echo "stopped mlflow server (pid $pid)" >&2
        return 0
    fi
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait_group "$pid" 30 \
        || die "mlflow server (process group $pid) still running after SIGKILL; $pidfile kept"
    rm -f "$pidfile"
    echo "killed mlflow server (process group $pid): still running $stop_wait_s s after SIGTERM" >&2
}

if $stop; then stop_server; exit 0; fi
case "$database_url" in
    ''|postgresql://*|postgresql+*://*) ;;
    *) die "--database-url must be a postgresql:// URL" 2 ;;
esac

# the server needs Flask, which mlflow-skinny lacks (find_spec: no slow import of mlflow)
"$python" -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('mlflow') and u.find_spec('flask')))" \
    || die "the full mlflow package is not installed for $python (pip install mlflow)" 2
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    die "a server started from $dir is running already (pid $(cat "$pidfile")); --stop it first"
fi
"$python" -c "import socket,sys; socket.create_server(('127.0.0.1', int(sys.argv[1]))).close()" \
    "$port" 2>/dev/null || die "port $port on 127.0.0.1 is in use; choose another with --port"
mkdir -p "$dir/mlartifacts"

# The database answers, with the driver SQLAlchemy picks for the URL (given through the
# environment: a command line is visible to every user of the machine). Exit 2: no driver.
check_database() {
    REPROKIT_DATABASE_URL="$database_url" "$python" - <<'PY'
import os, sys
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
url = make_url(os.environ["REPROKIT_DATABASE_URL"])
shown = url.render_as_string(hide_password=True)
try:
    url.get_dialect().import_dbapi()
except ImportError as exc:
    print(f"start_mlflow_server: --database-url {shown} needs the {exc.name} driver for "
          f"{sys.executable} (pip install 'reprokit-nb[postgres]')", file=sys.stderr)
    sys.exit(2)
try:
    engine = create_engine(url, connect_args={"connect_timeout": 10})
    with engine.connect() as connection:
        connection.execute(text("select 1"))
except Exception as exc:
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()
    reason = reason[0] if reason else type(exc).__name__
    print(f"start_mlflow_server: cannot connect to the --database-url database {shown}: "
          f"{reason.replace(url.password or chr(0), '***')}", file=sys.stderr)
    sys.exit(1)
PY
}

if [ -n "$database_url" ]; then
    check_database || exit $?
    export MLFLOW_BACKEND_STORE_URI="$database_url"
else
    export MLFLOW_BACKEND_STORE_URI="sqlite:///$(cd "$dir" && pwd)/mlflow.db"
fi

log="$dir/server.log"
set -m   # the server gets a process group of its own: --stop ends it and its workers together
"$python" -m mlflow server \
    --serve-artifacts --artifacts-destination "$(cd "$dir" && pwd)/mlartifacts" \
    --host 127.0.0.1 --port "$port" --workers 1 >"$log" 2>&1 </dev/null &
pid=$!
set +m
echo "$pid" >"$pidfile"

url="http://127.0.0.1:$port"
deadline=$((SECONDS + wait_s))
until "$python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "$url/health" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pidfile"
        tail -n 20 "$log" >&2
        die "mlflow server exited before answering (log: $log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        stop_server
        tail -n 20 "$log" >&2
        die "mlflow server did not answer $url/health within $wait_s s (log: $log)"
    fi
    sleep 0.5
done

echo "mlflow server (pid $pid) at $url; stop it with: $0 --stop --dir $dir" >&2
echo "export MLFLOW_TRACKING_URI=$url"
