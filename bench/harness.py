"""What the benchmarks share: a throwaway database, fast seeding, a production-like server
(gunicorn, DEBUG off, persistent connections), wrk runs, and cleanup of all of it.

Run a benchmark on SQLite as `python bench/X.py`; on PostgreSQL under
`scripts/with-postgres.sh python bench/X.py`, which provides DATABASE_URL.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
sys.path.insert(0, str(PROJECT))
from tests.servers import Gunicorn, ProductionServer, free_port  # noqa: E402, F401  (the servers the tests run)

# The server scripts/with-postgres.sh started, if any; read once, since django_setup()
# points DATABASE_URL at the benchmark's own database.
GIVEN_DATABASE_URL = os.environ.get("DATABASE_URL", "")


def server_environment(database_url: str) -> dict[str, str]:
    """The environment of a production-like process against `database_url`."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-only-" + "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "DATABASE_CONN_MAX_AGE": "600",
        "PYTHONPATH": str(PROJECT),
        # The bench measures the service, not its rate limits (docs/security.md): no throttles.
        "API_THROTTLE_USER": "",
        "API_THROTTLE_ANON": "",
    }


@contextlib.contextmanager
def bench_database():
    """DATABASE_URL of a fresh, migrated database, and a temporary folder; both removed
    afterwards. On PostgreSQL (DATABASE_URL given, e.g. by scripts/with-postgres.sh) a new
    database is created on that server, so the one named in DATABASE_URL is left alone;
    otherwise a SQLite file in the temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="executions-bench-"))
    given = GIVEN_DATABASE_URL
    created_database = None
    if given.startswith("postgres"):
        created_database = f"bench_{os.getpid()}"
        _postgres_admin(given, f"CREATE DATABASE {created_database}")
        database_url = given.rsplit("/", 1)[0] + "/" + created_database
    else:
        database_url = f"sqlite:///{folder / 'bench.sqlite3'}"
    try:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--no-input", "-v0"],
            cwd=PROJECT, env=server_environment(database_url), check=True,
        )
        yield database_url, folder
    finally:
        if created_database:
            _postgres_admin(given, f"DROP DATABASE IF EXISTS {created_database} WITH (FORCE)")
        shutil.rmtree(folder, ignore_errors=True)


def _postgres_admin(database_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(database_url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute(statement)


def django_setup(database_url: str) -> None:
    """Set up Django in this process against `database_url` (for seeding and checks)."""
    os.environ.update(server_environment(database_url))
    sys.path.insert(0, str(PROJECT))
    import django

    django.setup()


def create_bench_user() -> tuple:
    """The user the benchmarks act as (a plain owner, no special rights) and its token key."""
    from django.contrib.auth.models import User

    from executions.tokens import token_create

    user = User.objects.create_user("bench")
    return user, token_create(user=user, name="bench")[1]


def seed_running_executions(count: int, owner_id: int | None, newest_created_at) -> None:
    """Insert `count` running executions in one statement (no ORM row by row), never
    heartbeated, created one second apart going back from `newest_created_at`, owned by
    `owner_id`; then ANALYZE, as autovacuum would have done on a real table. Django must be
    set up in this process (once: django_setup)."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                """
                INSERT INTO executions_execution
                    (id, name, status, error_info, metadata, created_by_id, created_at, updated_at)
                SELECT gen_random_uuid(), 'bench-' || n, 'running', NULL, '{}'::jsonb, %s,
                       %s::timestamptz - make_interval(secs => n), %s::timestamptz
                FROM generate_series(1, %s) AS n
                """,
                [owner_id, newest_created_at, newest_created_at, count],
            )
        else:
            base = newest_created_at.strftime("%Y-%m-%d %H:%M:%S.%f")
            cursor.execute(
                """
                WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %s)
                INSERT INTO executions_execution
                    (id, name, status, error_info, metadata, created_by_id, created_at, updated_at)
                SELECT lower(hex(randomblob(16))), 'bench-' || n, 'running', NULL, '{}', %s,
                       strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s, '-' || n || ' seconds'), %s
                FROM seq
                """,
                [count, owner_id, base, base],
            )
        cursor.execute("ANALYZE")


@contextlib.contextmanager
def gunicorn(database_url: str, folder: Path, workers: int = 4):
    """gunicorn with sync workers, as production runs it; yields its base URL."""
    env = {**server_environment(database_url), "LOG_LEVEL": "WARNING"}
    with Gunicorn(env, workers=workers, threads=1, worker_class="sync", log_path=str(folder / "gunicorn.log")) as server:
        yield f"http://127.0.0.1:{server.port}"


@contextlib.contextmanager
def production(database_url: str, folder: Path, workers: int, threads: int):
    """The production setup (deploy/serve.py: nginx in front of gunicorn); yields its base URL."""
    env = {
        **server_environment(database_url),
        "LOG_LEVEL": "WARNING",
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
    }
    with ProductionServer(env, log_path=str(folder / "serve.log")) as server:
        yield f"http://127.0.0.1:{server.port}"


def wrk(url: str, script: Path, duration: int, connections: int, env: dict | None = None) -> dict:
    """Run wrk with a Lua script whose done() prints one JSON line; return that JSON."""
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    result = subprocess.run(
        ["wrk", "--threads", "2", "--connections", str(connections), "--duration", f"{duration}s",
         "--timeout", "10s", "--script", str(script), url],
        env={**os.environ, **(env or {})}, capture_output=True, text=True, check=True,
    )
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("wrk printed no summary:\n" + result.stdout + result.stderr)
