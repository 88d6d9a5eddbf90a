#!/usr/bin/env bash
# Usage: scripts/with-postgres.sh COMMAND [ARGS...]
# Starts a throwaway PostgreSQL server (initdb in a temporary folder, as a non-root user,
# on a free port of 127.0.0.1), runs COMMAND with DATABASE_URL pointing at it, then stops
# the server and deletes its folder, whatever COMMAND did. Exits with COMMAND's status.
# Exits 3 when no PostgreSQL server binaries are installed.
set -euo pipefail

pg_bin="${PG_BIN:-}"
if [ -z "$pg_bin" ]; then
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
fi
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    echo "with-postgres: no PostgreSQL server binaries found (set PG_BIN)" >&2
    exit 3
fi

workdir=$(mktemp -d /tmp/executions-pg.XXXXXX)
chmod 755 "$workdir"
run_as=()
if [ "$(id -u)" = 0 ]; then
    # initdb and postgres refuse to run as root.
    pg_user="${PG_OS_USER:-postgres}"
    if ! id "$pg_user" >/dev/null 2>&1; then
        useradd --system --no-create-home "$pg_user"
    fi
    chown "$pg_user" "$workdir"
    run_as=(runuser -u "$pg_user" --)
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

stop() {
    "${run_as[@]}" "$pg_bin/pg_ctl" -D "$workdir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$workdir"
}
trap stop EXIT

"${run_as[@]}" "$pg_bin/initdb" -D "$workdir/data" -U postgres --auth=trust -E UTF8 >"$workdir/initdb.log" 2>&1 \
    || { cat "$workdir/initdb.log" >&2; exit 1; }
# Durability settings off: this server lives for one test run.
"${run_as[@]}" "$pg_bin/pg_ctl" -D "$workdir/data" -l "$workdir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $workdir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { cat "$workdir/server.log" >&2; exit 1; }

"$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres executions

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/executions"
export PG_BIN="$pg_bin"
status=0
"$@" || status=$?
exit $status
