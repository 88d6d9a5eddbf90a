#!/usr/bin/env bash
# One command on a fresh machine: virtual environment, test dependencies, the linter, then the whole
# suite on SQLite and again on a throwaway PostgreSQL server. Arguments go to pytest.
# Where PostgreSQL is not installed its run is skipped, loudly; with CI=true that fails.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements/test.txt || exit 1

echo "=== Lint and format (ruff)"
.venv/bin/ruff check . && .venv/bin/ruff format --check . || exit 1

echo "=== Test suite on SQLite"
env -u DATABASE_URL .venv/bin/python -m pytest "$@"
sqlite_status=$?

echo "=== Test suite on PostgreSQL"
scripts/with-postgres.sh .venv/bin/python -m pytest "$@"
postgres_status=$?
if [ $postgres_status = 3 ]; then
    echo "!!! SKIPPED: the PostgreSQL run, because no PostgreSQL server is installed."
    if [ "${CI:-}" = true ]; then
        echo "!!! Under CI=true a skipped PostgreSQL run is a failure."
        exit 1
    fi
    postgres_status=0
fi

echo "=== SQLite: exit $sqlite_status; PostgreSQL: exit $postgres_status"
[ $sqlite_status = 0 ] && [ $postgres_status = 0 ]
