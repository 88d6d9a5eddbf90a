#!/usr/bin/env bash
# Production: nginx in front of gunicorn, on http://$HOST:$PORT (default 127.0.0.1:8000),
# DEBUG off. Needs DJANGO_SECRET_KEY and Debian's nginx package; reads the same environment
# as the service (README, "Configuration"). Makes .venv, applies migrations, then serves
# until SIGTERM or Ctrl-C (deploy/serve.py; docs/operations.md, "Serving in production").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements/base.txt
export DJANGO_DEBUG=false
# The development .env that scripts/serve.sh writes is not read here; a file named in
# DJANGO_ENV_FILE is (the environment still wins over it).
export DJANGO_ENV_FILE="${DJANGO_ENV_FILE-}"
.venv/bin/python manage.py migrate --no-input
exec .venv/bin/python deploy/serve.py
