#!/usr/bin/env bash
# Production: nginx in front of gunicorn, on http://$HOST:$PORT (default 127.0.0.1:8000),
# DEBUG off. Needs DJANGO_SECRET_KEY and Debian's nginx package; reads the same environment
# as the service (README, "Configuration"). Makes .venv, applies migrations, then serves
# until SIGTERM or Ctrl-C (deploy/serve.py; docs/operations.md, "Serving in production").
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DJANGO_SECRET_KEY:-}" ]; then
    echo "DJANGO_SECRET_KEY is required in production (e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(50))')" >&2
    exit 1
fi
scripts/bootstrap.sh requirements/base.txt
export DJANGO_DEBUG=false
.venv/bin/python manage.py migrate --no-input
exec .venv/bin/python deploy/serve.py
