"""cleanup_stale_executions at 100k, 300k and 1M stale running executions, against its floor.

For each size: seed that many running executions last seen two days ago (one INSERT ...
SELECT, not the ORM row by row), make an identical copy of the database, then
- run `manage.py cleanup_stale_executions --older-than 1d` as a separate process, timing it
  and reading its peak RSS from the kernel (wait4);
- on the copy, time the floor: the same change as plain SQL, one UPDATE plus one
  INSERT ... SELECT for the audit records, in one transaction.
Prints seconds, peak RSS, rows/s and command/floor, and checks both databases ended alike.

    python bench/cleanup_at_scale.py                           # SQLite
    scripts/with-postgres.sh python bench/cleanup_at_scale.py  # PostgreSQL

Options: --sizes 100000,300000,1000000   --batch-size N (default: the command's)
Each size runs in a process of its own (Django is set up once per process).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import harness

TARGET_RATIO = 1.5
TARGET_RSS_MB = 150
TARGET_SCALING = 11  # 1M may cost at most 11x what 100k costs (issue #11)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument(
        "--batch-size", type=int, help="default: the command's own (EXECUTIONS_BULK_BATCH_SIZE)"
    )
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one_size:
        with harness.bench_database() as (database_url, folder):
            print(json.dumps(measure(args.one_size, args.batch_size, database_url, folder)))
        return

    results = []
    for size in [int(size) for size in args.sizes.split(",")]:
        child = subprocess.run(
            [harness.PYTHON, __file__, "--one-size", str(size)]
            + ([] if args.batch_size is None else ["--batch-size", str(args.batch_size)]),
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            sys.exit(f"the {size} run failed:\n{child.stdout}{child.stderr}")
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    report(results)


def measure(size: int, batch_size: int, database_url: str, folder: Path) -> dict:
    harness.django_setup(database_url)
    from django.db import connection

    harness.seed_running_executions(size, None, datetime.now(UTC) - timedelta(days=2))
    vendor = connection.vendor
    connection.close()
    copy_url = copy_database(database_url, folder)

    command_seconds, peak_rss_mb, output, command_cpu = run_command(database_url, batch_size)
    floor_seconds, floor_cpu, floor_checkpoint = run_floor(copy_url)
    changed_by_command = count_changed(database_url)
    changed_by_floor = count_changed(copy_url)
    drop_copy(copy_url)
    return {
        "vendor": vendor,
        "size": size,
        "command_s": command_seconds,
        "floor_s": floor_seconds,
        "command_cpu_s": command_cpu,
        "floor_cpu_s": floor_cpu,
        "floor_checkpoint_s": floor_checkpoint,
        "rss_mb": peak_rss_mb,
        "changed": changed_by_command,
        "floor_changed": changed_by_floor,
        "summary": output.strip().splitlines()[-1] if output.strip() else "",
    }


def copy_database(database_url: str, folder: Path) -> str:
    from django.db import connection

    if database_url.startswith("sqlite"):
        source = database_url.removeprefix("sqlite:///")
        target = folder / "floor.sqlite3"
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
        shutil.copyfile(source, target)
        return f"sqlite:///{target}"
    name = database_url.rsplit("/", 1)[1]
    copy_name = name + "_floor"
    connection.close()
    harness._postgres_admin(database_url, f"CREATE DATABASE {copy_name} TEMPLATE {name}")
    return database_url.rsplit("/", 1)[0] + "/" + copy_name


def drop_copy(copy_url: str) -> None:
    if copy_url.startswith("postgres"):
        name = copy_url.rsplit("/", 1)[1]
        harness._postgres_admin(
            copy_url.rsplit("/", 1)[0] + "/postgres", f"DROP DATABASE {name} WITH (FORCE)"
        )


def run_command(database_url: str, batch_size: int) -> tuple[float, float, str, float]:
    return harness.run_measured(
        [harness.PYTHON, "manage.py", "cleanup_stale_executions", "--older-than", "1d"]
        + ([] if batch_size is None else ["--batch-size", str(batch_size)]),
        database_url,
        with_cpu=True,
    )


# The floor: the same change as plain SQL. Only the JSON constructor differs by database.
FLOOR_SQL_TEMPLATE = [
    """INSERT INTO executions_executionstatuschange
           (execution_id, previous_status, new_status, error_info, actor_id, actor_username,
            channel, correlation_id, created_at)
       SELECT id, 'running', 'interrupted', {why}, NULL, '', 'command', '', %(now)s
       FROM executions_execution
       WHERE status = 'running' AND coalesce(last_heartbeat_at, created_at) < %(cutoff)s""",
    """UPDATE executions_execution
       SET status = 'interrupted', finished_at = %(now)s, updated_at = %(now)s, error_info = {why}
       WHERE status = 'running' AND coalesce(last_heartbeat_at, created_at) < %(cutoff)s""",
]
WHY = (
    "{json}('reason', 'stale', 'last_seen_at', coalesce(last_heartbeat_at, created_at), "
    "'threshold', '1d', 'detected_by', 'floor')"
)
FLOOR_SQL = {
    vendor: [sql.format(why=WHY.format(json=json_function)) for sql in FLOOR_SQL_TEMPLATE]
    for vendor, json_function in [("sqlite", "json_object"), ("postgresql", "jsonb_build_object")]
}


def run_floor(database_url: str) -> tuple[float, float, float]:
    """The same change as plain SQL, in one transaction, timed in a process of its own: its
    seconds, and the CPU seconds of that process over the same span (on SQLite, the
    database's own work; on PostgreSQL, the server's work is not in it); then, on SQLite, the
    seconds of the checkpoint that copies its changes from the WAL into the database file,
    which the floor leaves to later and the command does as it goes (0 on PostgreSQL)."""
    script = (
        "import sys, time, datetime\n"
        "from django.db import connection, transaction\n"
        "from django.utils import timezone\n"
        "now = timezone.now(); cutoff = now - datetime.timedelta(days=1)\n"
        "adapt = connection.ops.adapt_datetimefield_value\n"
        "now, cutoff = adapt(now), adapt(cutoff)\n"
        "statements = eval(sys.argv[1])[connection.vendor]\n"
        "started, cpu_started = time.perf_counter(), time.process_time()\n"
        "with transaction.atomic(), connection.cursor() as cursor:\n"
        "    for sql in statements: cursor.execute(sql, {'now': now, 'cutoff': cutoff})\n"
        "wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started\n"
        "started = time.perf_counter()\n"
        "if connection.vendor == 'sqlite':\n"
        "    with connection.cursor() as cursor: cursor.execute('PRAGMA wal_checkpoint(PASSIVE)')\n"
        "print(wall, cpu, time.perf_counter() - started)\n"
    )
    output = harness.run_django(database_url, script, repr(FLOOR_SQL))
    wall, cpu, checkpoint = output.strip().splitlines()[-1].split()
    return float(wall), float(cpu), float(checkpoint)


def count_changed(database_url: str) -> int:
    return int(
        harness.run_django(
            database_url,
            "from executions.models import ExecutionStatusChange as C\n"
            "print(C.objects.filter(new_status='interrupted').count())",
        ).strip()
    )


def report(results: list[dict]) -> None:
    print(f"cleanup_stale_executions at scale on {results[0]['vendor']}, {os.cpu_count()} cores")
    print(
        f"{'rows':>9} {'command s':>10} {'floor s':>8} {'ratio':>6} "
        f"{'peak RSS MB':>12} {'rows/s':>9} {'changed':>9} {'CPU s: command':>15} {'floor':>6} {'ratio':>6}"
    )
    ok = True
    for r in results:
        ratio = r["command_s"] / r["floor_s"]
        print(
            f"{r['size']:>9} {r['command_s']:>10.2f} {r['floor_s']:>8.2f} {ratio:>6.2f} {r['rss_mb']:>12.1f} "
            f"{r['size'] / r['command_s']:>9.0f} {r['changed']:>9} {r['command_cpu_s']:>15.2f} "
            f"{r['floor_cpu_s']:>6.2f} {r['command_cpu_s'] / max(r['floor_cpu_s'], 0.01):>6.2f}"
        )
        if r["changed"] != r["size"] or r["floor_changed"] != r["size"]:
            print(
                f"  ERROR: expected {r['size']} changes, command made {r['changed']}, "
                f"floor {r['floor_changed']}"
            )
            ok = False
    largest = results[-1]
    ratio = largest["command_s"] / largest["floor_s"]
    print(
        f"at {largest['size']}: command/floor {ratio:.2f} (target <= {TARGET_RATIO}: "
        f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}), peak RSS {largest['rss_mb']:.0f} MB "
        f"(target < {TARGET_RSS_MB}: {'met' if largest['rss_mb'] < TARGET_RSS_MB else 'MISSED'})"
    )
    if largest["floor_checkpoint_s"]:
        with_checkpoint = largest["floor_s"] + largest["floor_checkpoint_s"]
        print(
            f"the floor leaves its changes in the WAL; copying them into the database file took "
            f"{largest['floor_checkpoint_s']:.2f} s more (the command's own checkpoints, every "
            f"~40 MB, are in its time): command / (floor + that) {largest['command_s'] / with_checkpoint:.2f}"
        )
    if len(results) > 1:
        smallest = results[0]
        scaling = largest["command_s"] / smallest["command_s"]
        verdict = ""
        if (smallest["size"], largest["size"]) == (100_000, 1_000_000):
            verdict = f" (target <= {TARGET_SCALING}x: {'met' if scaling <= TARGET_SCALING else 'MISSED'})"
        print(f"{largest['size']} rows cost {scaling:.1f}x what {smallest['size']} cost{verdict}")
    print(f"last line of the command's output: {largest['summary']}")
    print(
        "CPU s: the processes' own CPU time (the command's includes Python's and Django's start-up;"
        " on PostgreSQL the server's work is in neither)."
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
