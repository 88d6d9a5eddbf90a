#!/usr/bin/env bash
# One command on a fresh machine: virtual environment, dependencies, migrations, then the
# service on http://127.0.0.1:8000 with the embedded default database (SQLite in var/), and
# beside it the worker (manage.py run_worker: deadlines, stale executions); Ctrl-C stops both.
# Set DATABASE_URL=postgres://... to use PostgreSQL instead; HOST and PORT to move it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements/base.txt
# Development settings, written once to .env (gitignored), which config/settings.py reads:
# every manage.py command then works in any terminal, not only in this one. DEBUG on and a
# secret of this checkout's own; production is scripts/serve-production.sh, with
# DJANGO_SECRET_KEY set in its environment, DEBUG off and no .env (docs/operations.md).
if [ ! -f .env ]; then
    (umask 077 && printf 'DJANGO_DEBUG=true\nDJANGO_SECRET_KEY=%s\n' \
        "$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')" > .env)
    echo "Wrote .env (development settings for manage.py in any terminal)"
fi
.venv/bin/python manage.py migrate --no-input
# Both in the background, so that this shell sees a signal at once (it would wait for a
# foreground child first) and hands it on; when either ends, the other is stopped too.
.venv/bin/python manage.py run_worker &
worker=$!
.venv/bin/python manage.py runserver "${HOST:-127.0.0.1}:${PORT:-8000}" &
server=$!
trap 'kill -TERM $server $worker 2>/dev/null' INT TERM
status=0
wait -n $server $worker || status=$?
kill -TERM $server $worker 2>/dev/null || true
wait $server $worker 2>/dev/null || true
exit $status
