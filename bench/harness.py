"""What the benchmarks share: a throwaway database, fast seeding, a production-like server
(gunicorn, DEBUG off, persistent connections), wrk runs, and cleanup of all of it.

Run a benchmark on SQLite as `python bench/X.py`; on PostgreSQL under
`scripts/with-postgres.sh python bench/X.py`, which provides DATABASE_URL.
"""

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
sys.path.insert(0, str(PROJECT))  # `python bench/X.py` from the repo root: devtools, config, executions
from devtools import servers  # noqa: E402
from devtools.net import free_port  # noqa: E402, F401  (for bench/peer.py)
from devtools.servers import Gunicorn, ProductionServer  # noqa: E402

# The server scripts/with-postgres.sh started, if any; read once, since django_setup()
# points DATABASE_URL at the benchmark's own database.
GIVEN_DATABASE_URL = os.environ.get("DATABASE_URL", "")


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    """devtools' environment of the service, with persistent database connections, as
    production keeps them."""
    return servers.service_env(database_url, DATABASE_CONN_MAX_AGE="600", **extra)


def parse_options(doc: str, **defaults) -> argparse.Namespace:
    """The command line: each keyword an option `--name` (underscores as dashes) of its
    default's type, a default of False a flag; --help prints the benchmark's docstring."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        option = "--" + name.replace("_", "-")
        if default is False:
            parser.add_argument(option, action="store_true")
        else:
            parser.add_argument(option, type=type(default), default=default)
    return parser.parse_args()


@contextlib.contextmanager
def bench_database(suffix: str = ""):
    """DATABASE_URL of a fresh, migrated database, and a temporary folder; both removed
    afterwards. On PostgreSQL (DATABASE_URL given, e.g. by scripts/with-postgres.sh) a new
    database is created on that server, so the one named in DATABASE_URL is left alone;
    otherwise a SQLite file in the temporary folder. `suffix` tells apart the databases one
    benchmark has at once."""
    folder = Path(tempfile.mkdtemp(prefix="executions-bench-"))
    given = GIVEN_DATABASE_URL
    created_database = None
    if given.startswith("postgres"):
        created_database = f"bench_{os.getpid()}{suffix}"
        _postgres_admin(given, f"CREATE DATABASE {created_database}")
        database_url = given.rsplit("/", 1)[0] + "/" + created_database
    else:
        database_url = f"sqlite:///{folder / 'bench.sqlite3'}"
    try:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--no-input", "-v0"],
            cwd=PROJECT,
            env=service_env(database_url),
            check=True,
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
    os.environ.update(service_env(database_url))
    import django

    django.setup()


def create_bench_user() -> tuple:
    """The user the benchmarks act as (a plain owner, no special rights) and its token key."""
    from django.contrib.auth.models import User

    from executions.tokens import token_create

    user = User.objects.create_user("bench")
    return user, token_create(user=user, name="bench")[1]


def uuid7_sql(vendor: str, unix_ms: str, with_parameters: bool = True) -> str:
    """SQL for a version 7 UUID (executions/ids.py's layout) made at `unix_ms` (an SQL
    expression of Unix milliseconds), as each database stores a UUIDField: the ids the
    service has made since migration 0008, so seeded tables have the index layout that real
    ones get (new ids on the right-hand pages), not random v4 ids scattered over the index.
    `with_parameters`: for a statement run with parameters (its percent signs doubled)."""
    if vendor == "postgresql":
        # A random v4 UUID with its first 48 bits replaced by the time and its version
        # nibble turned from 4 (0100) into 7 (0111): bits 52 and 53, counted from the right
        # of each byte.
        return (
            "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
            f"substring(int8send(({unix_ms})::bigint) from 3) from 1 for 6), 52, 1), 53, 1), 'hex')::uuid"
        )
    # SQLite: 32 lowercase hex digits; 48 bits of time, 7, 12 random bits, the variant
    # (8, 9, a or b), 60 random bits.
    percent = "%%" if with_parameters else "%"
    return (
        f"printf('{percent}012x', {unix_ms}) || '7' || lower(substr(hex(randomblob(2)), 1, 3))"
        " || substr('89ab', 1 + (abs(random()) % 4), 1) || lower(substr(hex(randomblob(8)), 1, 15))"
    )


def unix_ms(moment) -> int:
    return int(moment.timestamp() * 1000)


def seed_running_executions(count: int, owner_id: int | None, newest_created_at) -> None:
    """Insert `count` running executions in one statement (no ORM row by row), never
    heartbeated, created one second apart going back from `newest_created_at`, owned by
    `owner_id`, with time-ordered ids of their creation time (uuid7_sql); then ANALYZE, as
    autovacuum would have done on a real table. Django must be set up in this process
    (once: django_setup)."""
    from django.db import connection

    newest_ms = unix_ms(newest_created_at)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"""
                INSERT INTO executions_execution
                    (id, name, status, error_info, metadata, created_by_id, created_at, updated_at)
                SELECT {uuid7_sql("postgresql", "%s - 1000 * n")}, 'bench-' || n, 'running', NULL,
                       '{{}}'::jsonb, %s, %s::timestamptz - make_interval(secs => n), %s::timestamptz
                FROM generate_series(1, %s) AS n
                """,
                [newest_ms, owner_id, newest_created_at, newest_created_at, count],
            )
        else:
            base = newest_created_at.strftime("%Y-%m-%d %H:%M:%S.%f")
            cursor.execute(
                f"""
                WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %s)
                INSERT INTO executions_execution
                    (id, name, status, error_info, metadata, created_by_id, created_at, updated_at)
                SELECT {uuid7_sql("sqlite", "%s - 1000 * n")}, 'bench-' || n, 'running', NULL, '{{}}', %s,
                       strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s, '-' || n || ' seconds'), %s
                FROM seq
                """,
                [count, newest_ms, owner_id, base, base],
            )
        cursor.execute("ANALYZE")


@contextlib.contextmanager
def gunicorn(database_url: str, folder: Path, workers: int = 4):
    """gunicorn with sync workers, as production runs it; yields its base URL."""
    env = service_env(database_url)
    with Gunicorn(
        env, workers=workers, threads=1, worker_class="sync", log_path=str(folder / "gunicorn.log")
    ) as server:
        yield f"http://127.0.0.1:{server.port}"


@contextlib.contextmanager
def production(database_url: str, folder: Path, workers: int, threads: int):
    """The production setup (deploy/serve.py: nginx in front of gunicorn); yields its base URL."""
    env = service_env(database_url, WEB_CONCURRENCY=str(workers), GUNICORN_THREADS=str(threads))
    with ProductionServer(env, log_path=str(folder / "serve.log")) as server:
        yield f"http://127.0.0.1:{server.port}"


def wrk(url: str, script: Path, duration: int, connections: int, env: dict | None = None) -> dict:
    """Run wrk with a Lua script whose done() prints one JSON line; return that JSON."""
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    result = subprocess.run(
        [
            "wrk",
            "--threads",
            "2",
            "--connections",
            str(connections),
            "--duration",
            f"{duration}s",
            "--timeout",
            "10s",
            "--script",
            str(script),
            url,
        ],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("wrk printed no summary:\n" + result.stdout + result.stderr)


def run_measured(command: list[str], database_url: str, with_cpu: bool = False) -> tuple:
    """Run a command of the service (e.g. manage.py ...) in a process of its own against
    `database_url`: its seconds, its peak RSS in MB (from the kernel, wait4) and its output;
    `with_cpu`: and its CPU seconds (user and system), which a busy machine inflates far less
    than wall time. Exits when it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=PROJECT,
        env=service_env(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        sys.exit(f"{' '.join(command[1:3])} failed:\n{output}")
    if with_cpu:
        return seconds, usage.ru_maxrss / 1024, output, usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss / 1024, output


def run_django(database_url: str, code: str, *args: str) -> str:
    """Run Python `code` (after django.setup()) in a process of its own against
    `database_url`, with `args` as sys.argv[1:]; its standard output."""
    result = subprocess.run(
        [PYTHON, "-c", "import django; django.setup()\n" + code, *args],
        cwd=PROJECT,
        env=service_env(database_url),
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout
