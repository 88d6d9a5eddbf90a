#!/usr/bin/env bash
# One command on a fresh machine: virtual environment, dependencies, migrations, then the
# service on http://127.0.0.1:8000 with the embedded default database (SQLite in var/).
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
exec .venv/bin/python manage.py runserver "${HOST:-127.0.0.1}:${PORT:-8000}"
