"""purge_executions on a million finished executions with one audit record each, against
its floor.

Seed SIZE executions that finished 100 to ~112 days ago (one INSERT ... SELECT, not the ORM),
each with one audit record, make an identical copy of the database, then
- run `manage.py purge_executions --finished-before 90d` (with `--archive` to a gzip file
  if asked) as a separate process, timing it and reading its peak RSS from the kernel (wait4);
- on the copy, time the floor: the same deletion as plain SQL, two DELETE statements in one
  transaction (no batches, no archive: what the database alone needs).
Prints seconds, peak RSS, rows/s and command/floor, and checks that both deleted everything.

    python bench/purge_at_scale.py                           # SQLite
    scripts/with-postgres.sh python bench/purge_at_scale.py  # PostgreSQL

Options: --size 1000000   --batch-size 1000   --archive
"""

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cleanup_at_scale  # its database copy helpers
import harness

TARGET_RSS_MB = 150


def main():
    args = harness.parse_options(__doc__, size=1_000_000, batch_size=1000, archive=False)

    with harness.bench_database() as (database_url, folder):
        harness.django_setup(database_url)
        from django.db import connection

        seed_finished_executions(args.size, datetime.now(UTC) - timedelta(days=100))
        vendor = connection.vendor
        connection.close()
        copy_url = cleanup_at_scale.copy_database(database_url, folder)

        archive = folder / "purged.jsonl.gz" if args.archive else None
        command_seconds, peak_rss_mb, output = run_command(database_url, args.batch_size, archive)
        floor_seconds = run_floor(copy_url)
        left = count_left(database_url)
        floor_left = count_left(copy_url)
        cleanup_at_scale.drop_copy(copy_url)
        archive_mb = archive.stat().st_size / 2**20 if archive else None

    ratio = command_seconds / floor_seconds
    print(
        f"purge_executions at scale on {vendor}, {os.cpu_count()} cores, batch size {args.batch_size}"
        f"{', with --archive' if archive else ''}"
    )
    print(f"{'rows':>9} {'command s':>10} {'floor s':>8} {'ratio':>6} {'peak RSS MB':>12} {'rows/s':>9}")
    print(
        f"{args.size:>9} {command_seconds:>10.2f} {floor_seconds:>8.2f} {ratio:>6.2f} {peak_rss_mb:>12.1f} "
        f"{args.size / command_seconds:>9.0f}"
    )
    if archive_mb is not None:
        print(f"archive: {archive_mb:.1f} MB")
    print(
        f"peak RSS {peak_rss_mb:.0f} MB (target < {TARGET_RSS_MB}: "
        f"{'met' if peak_rss_mb < TARGET_RSS_MB else 'MISSED'})"
    )
    print(f"last line of the command's output: {output.strip().splitlines()[-1] if output.strip() else ''}")
    if left != (0, 0) or floor_left != (0, 0):
        sys.exit(f"ERROR: left (executions, audit records): command {left}, floor {floor_left}")


def seed_finished_executions(count: int, newest_finished_at) -> None:
    """`count` completed executions, finished one second apart going back from
    `newest_finished_at`, each with its audit record; then ANALYZE."""
    from django.db import connection

    harness.seed_running_executions(count, None, newest_finished_at - timedelta(hours=1))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            finished_at = "created_at + interval '1 hour'"
        else:
            finished_at = "strftime('%Y-%m-%d %H:%M:%f', created_at, '+1 hour')"
        cursor.execute(
            f"UPDATE executions_execution SET status = 'completed', finished_at = {finished_at}, "
            f"updated_at = {finished_at}"
        )
        cursor.execute(
            """INSERT INTO executions_executionstatuschange
                   (execution_id, previous_status, new_status, error_info, actor_id, actor_username,
                    channel, correlation_id, created_at)
               SELECT id, 'running', 'completed', NULL, NULL, 'bench', 'api', '', finished_at
               FROM executions_execution"""
        )
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def run_command(database_url: str, batch_size: int, archive: Path | None) -> tuple[float, float, str]:
    command = [
        harness.PYTHON,
        "manage.py",
        "purge_executions",
        "--finished-before",
        "90d",
        "--batch-size",
        str(batch_size),
    ]
    if archive:
        command += ["--archive", str(archive)]
    return harness.run_measured(command, database_url)


FLOOR_SQL = [
    """DELETE FROM executions_executionstatuschange WHERE execution_id IN (
           SELECT id FROM executions_execution WHERE finished_at < %(cutoff)s AND status <> 'running')""",
    "DELETE FROM executions_execution WHERE finished_at < %(cutoff)s AND status <> 'running'",
]


def run_floor(database_url: str) -> float:
    """The same deletion as plain SQL, in one transaction, timed in a process of its own."""
    script = (
        "import sys, time, datetime\n"
        "from django.db import connection, transaction\n"
        "from django.utils import timezone\n"
        "cutoff = connection.ops.adapt_datetimefield_value(timezone.now() - datetime.timedelta(days=90))\n"
        "started = time.perf_counter()\n"
        "with transaction.atomic(), connection.cursor() as cursor:\n"
        "    for sql in eval(sys.argv[1]): cursor.execute(sql, {'cutoff': cutoff})\n"
        "print(time.perf_counter() - started)\n"
    )
    return float(harness.run_django(database_url, script, repr(FLOOR_SQL)).strip().splitlines()[-1])


def count_left(database_url: str) -> tuple[int, int]:
    output = harness.run_django(
        database_url,
        "from executions.models import Execution, ExecutionStatusChange as C\n"
        "print(Execution.objects.count(), C.objects.count())",
    )
    executions, changes = output.split()
    return int(executions), int(changes)


if __name__ == "__main__":
    main()
