#!/usr/bin/env bash
# Usage: scripts/with-postgres.sh COMMAND [ARGS...]
# Starts a throwaway PostgreSQL server (initdb in a temporary folder, as a non-root user,
# on a free port of 127.0.0.1), runs COMMAND with DATABASE_URL pointing at it, then stops
# the server and deletes its folder, whatever COMMAND did. Exits with COMMAND's status.
# Exits 3 when no PostgreSQL server binaries are installed. The work is devtools/with_postgres.py.
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv/bin/python"; [ -x "$python" ] || python=python3
exec "$python" "$root/devtools/with_postgres.py" "$@"
