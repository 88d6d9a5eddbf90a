#!/usr/bin/env bash
# One command on a fresh machine: virtual environment, dependencies, migrations, then the
# service on http://127.0.0.1:8000 with the embedded default database (SQLite in var/).
# Set DATABASE_URL=postgres://... to use PostgreSQL instead; HOST and PORT to move it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements/base.txt
# The development server runs with DEBUG on so that it needs no secret; production is
# scripts/serve-production.sh (nginx and gunicorn, DJANGO_SECRET_KEY set, DEBUG off).
export DJANGO_DEBUG="${DJANGO_DEBUG:-true}"
.venv/bin/python manage.py migrate --no-input
exec .venv/bin/python manage.py runserver "${HOST:-127.0.0.1}:${PORT:-8000}"
