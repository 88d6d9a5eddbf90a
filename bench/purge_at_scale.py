"""purge_executions on a million finished executions with one audit record each, against
its floor.

Seed SIZE executions that finished 100 to ~112 days ago (one INSERT ... SELECT, not the ORM),
each with one audit record, make an identical copy of the database, then
- run `manage.py purge_executions --finished-before 90d` (with `--archive` to a gzip file
  if asked) as a separate process, timing it and reading its peak RSS from the kernel (wait4);
  on SQLite a probe process meanwhile writes (an empty UPDATE in a write transaction) every
  10 ms and times each wait for the write lock: the longest is how long the purge kept other
  writers waiting, about the longest it held the lock for one batch;
- on the copy, time the floor: the same deletion as plain SQL, the first BATCH_SIZE oldest
  in one transaction (timed alone: a plain-SQL batch, to compare that wait with), then the
  rest in one more (no batches, no archive: what the database alone needs).
Prints seconds, peak RSS, rows/s and command/floor, and checks that both deleted everything.

With --big-rows every execution's metadata and error_info, and its audit record's
error_info, are 16 KiB of `{"a":[{},{},...]}` as the API takes it, the shape that costs Python
most memory per byte (the rows of issue #22: 1.35 MB per execution once parsed).

    python bench/purge_at_scale.py                           # SQLite
    scripts/with-postgres.sh python bench/purge_at_scale.py  # PostgreSQL

Options: --size 1000000   --batch-size 1000   --archive   --big-rows
"""

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cleanup_at_scale  # its database copy helpers
import harness

TARGET_RSS_MB = 150


def main():
    args = harness.parse_options(__doc__, size=1_000_000, batch_size=1000, archive=False, big_rows=False)

    with harness.bench_database() as (database_url, folder):
        harness.django_setup(database_url)
        from django.db import connection

        seed_finished_executions(args.size, datetime.now(UTC) - timedelta(days=100), args.big_rows)
        vendor = connection.vendor
        connection.close()
        copy_url = cleanup_at_scale.copy_database(database_url, folder)

        archive = folder / "purged.jsonl.gz" if args.archive else None
        probe = WriterProbe(database_url) if vendor == "sqlite" else None
        command_seconds, peak_rss_mb, output, lock_holds = run_command(database_url, args.batch_size, archive)
        writer_waits = probe.stop() if probe else None
        floor_seconds, floor_batch_seconds = run_floor(copy_url, args.batch_size)
        left = count_left(database_url)
        floor_left = count_left(copy_url)
        cleanup_at_scale.drop_copy(copy_url)
        archive_mb = archive.stat().st_size / 2**20 if archive else None

    ratio = command_seconds / floor_seconds
    print(
        f"purge_executions at scale on {vendor}, {os.cpu_count()} cores, batch size {args.batch_size}"
        f"{', with --archive' if archive else ''}{', big rows' if args.big_rows else ''}"
    )
    print(f"{'rows':>9} {'command s':>10} {'floor s':>8} {'ratio':>6} {'peak RSS MB':>12} {'rows/s':>9}")
    print(
        f"{args.size:>9} {command_seconds:>10.2f} {floor_seconds:>8.2f} {ratio:>6.2f} {peak_rss_mb:>12.1f} "
        f"{args.size / command_seconds:>9.0f}"
    )
    if archive_mb is not None:
        print(f"archive: {archive_mb:.1f} MB")
    print(f"plain-SQL batch of {args.batch_size}: {floor_batch_seconds * 1000:.0f} ms in its transaction")
    if lock_holds:
        batches = sorted(lock_holds[:-1]) or lock_holds  # the last: the Idempotency-Keys'
        print(
            f"the purge held the write lock {len(batches)} times for its batches: median "
            f"{batches[len(batches) // 2] * 1000:.0f} ms, longest {batches[-1] * 1000:.0f} ms "
            f"({batches[-1] / floor_batch_seconds:.1f}x the plain-SQL batch)"
        )
    if writer_waits is not None:
        longest, p99, count = writer_waits
        print(
            f"another writer's wait for the write lock during the purge ({count} writes): "
            f"longest {longest * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
            f"({longest / floor_batch_seconds:.1f}x the plain-SQL batch)"
        )
    print(
        f"peak RSS {peak_rss_mb:.0f} MB (target < {TARGET_RSS_MB}: "
        f"{'met' if peak_rss_mb < TARGET_RSS_MB else 'MISSED'})"
    )
    print(f"last line of the command's output: {output.strip().splitlines()[-1] if output.strip() else ''}")
    if left != (0, 0) or floor_left != (0, 0):
        sys.exit(f"ERROR: left (executions, audit records): command {left}, floor {floor_left}")


def dense_json() -> str:
    """16 KiB of `{"a":[{},{},...]}`: as large as the API takes, the most objects per byte."""
    from executions.api.limits import MAX_JSON_OBJECT_BYTES

    items = (MAX_JSON_OBJECT_BYTES - len('{"a":[]}')) // 3 + 1
    return '{"a":[' + ",".join(["{}"] * items) + "]}"


def seed_finished_executions(count: int, newest_finished_at, big_rows: bool = False) -> None:
    """`count` completed executions, finished one second apart going back from
    `newest_finished_at`, each with its audit record (with --big-rows, their JSON 16 KiB of
    empty objects); then ANALYZE."""
    from django.db import connection

    harness.seed_running_executions(count, None, newest_finished_at - timedelta(hours=1))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            finished_at = "created_at + interval '1 hour'"
            json_value = "%s::json"
        else:
            finished_at = "strftime('%Y-%m-%d %H:%M:%f', created_at, '+1 hour')"
            json_value = "%s"
        big = [dense_json()] if big_rows else []
        cursor.execute(
            f"UPDATE executions_execution SET status = 'completed', finished_at = {finished_at}, "
            f"updated_at = {finished_at}"
            + (f", metadata = {json_value}, error_info = {json_value}" * big_rows),
            big * 2,
        )
        cursor.execute(
            f"""INSERT INTO executions_executionstatuschange
                   (execution_id, previous_status, new_status, error_info, actor_id, actor_username,
                    channel, correlation_id, created_at)
               SELECT id, 'running', 'completed', {json_value if big_rows else "NULL"}, NULL, 'bench',
                      'api', '', finished_at
               FROM executions_execution""",
            big,
        )
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


# SQLite: the command, with each hold of the writer lock (executions/db/sqlite3) timed in
# its own process and printed at exit, one JSON list on standard error.
TIMING_WRITER_LOCK = """
import atexit, json, sys, time
import django
django.setup()
from executions.db.sqlite3 import base

holds, taken = [], []
acquire, release = base.DatabaseWrapper._acquire_writer_lock, base.DatabaseWrapper._release_writer_lock


def timed_acquire(self):
    acquire(self)
    taken.append(time.perf_counter())


def timed_release(self):
    if self._holds_writer_lock and taken:
        holds.append(time.perf_counter() - taken.pop())
    release(self)


base.DatabaseWrapper._acquire_writer_lock = timed_acquire
base.DatabaseWrapper._release_writer_lock = timed_release
atexit.register(lambda: print(HOLDS, json.dumps(holds), file=sys.stderr))
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", *sys.argv[1:]])
"""
HOLDS = "writer lock holds (s):"


def run_command(database_url: str, batch_size: int, archive: Path | None) -> tuple[float, float, str, list]:
    """The command's seconds, peak RSS, output, and on SQLite how long it held the writer
    lock each time (the batches' write transactions, then the Idempotency-Keys')."""
    arguments = ["purge_executions", "--finished-before", "90d", "--batch-size", str(batch_size)]
    if archive:
        arguments += ["--archive", str(archive)]
    if database_url.startswith("sqlite"):
        program = [harness.PYTHON, "-c", TIMING_WRITER_LOCK.replace("HOLDS", repr(HOLDS))]
    else:
        program = [harness.PYTHON, "manage.py"]
    seconds, peak_rss_mb, output = harness.run_measured(program + arguments, database_url)
    holds = []
    for line in output.splitlines():
        if line.startswith(HOLDS):
            holds = json.loads(line.removeprefix(HOLDS))
    output = "\n".join(line for line in output.splitlines() if not line.startswith(HOLDS))
    return seconds, peak_rss_mb, output, holds


FINISHED = "SELECT id FROM executions_execution WHERE finished_at < %(cutoff)s AND status <> 'running'"
FIRST_BATCH = f"{FINISHED} ORDER BY finished_at LIMIT %(batch_size)s"
FLOOR_FIRST_BATCH_SQL = [
    f"DELETE FROM executions_executionstatuschange WHERE execution_id IN ({FIRST_BATCH})",
    f"DELETE FROM executions_execution WHERE id IN ({FIRST_BATCH})",
]
FLOOR_SQL = [
    f"DELETE FROM executions_executionstatuschange WHERE execution_id IN ({FINISHED})",
    "DELETE FROM executions_execution WHERE finished_at < %(cutoff)s AND status <> 'running'",
]


def run_floor(database_url: str, batch_size: int) -> tuple[float, float]:
    """The same deletion as plain SQL, timed in a process of its own: the first batch in one
    transaction, the rest in another; the seconds of both, and of the first batch."""
    script = (
        "import sys, time, datetime\n"
        "from django.db import connection, transaction\n"
        "from django.utils import timezone\n"
        "cutoff = connection.ops.adapt_datetimefield_value(timezone.now() - datetime.timedelta(days=90))\n"
        "params = {'cutoff': cutoff, 'batch_size': int(sys.argv[3])}\n"
        "seconds = []\n"
        "for statements in (eval(sys.argv[1]), eval(sys.argv[2])):\n"
        "    started = time.perf_counter()\n"
        "    with transaction.atomic(), connection.cursor() as cursor:\n"
        "        for sql in statements: cursor.execute(sql, params)\n"
        "    seconds.append(time.perf_counter() - started)\n"
        "print(sum(seconds), seconds[0])\n"
    )
    output = harness.run_django(
        database_url, script, repr(FLOOR_FIRST_BATCH_SQL), repr(FLOOR_SQL), str(batch_size)
    )
    total, first_batch = output.strip().splitlines()[-1].split()
    return float(total), float(first_batch)


PROBE = """
import signal, sys, time
from django.db import OperationalError, connection
from executions.statements import write_transaction

stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
waits = []
print("ready", flush=True)
while not stopping:
    started = time.perf_counter()
    try:
        with write_transaction(), connection.cursor() as cursor:
            waits.append(time.perf_counter() - started)  # the lock is taken at BEGIN
            cursor.execute("UPDATE executions_execution SET name = name WHERE id = ''")
    except OperationalError:  # waited longer than SQLITE_BUSY_TIMEOUT
        waits.append(time.perf_counter() - started)
    time.sleep(0.01)
waits.sort()
print(waits[-1], waits[int(len(waits) * 0.99)], len(waits))
"""


class WriterProbe:
    """SQLite: another process that writes every 10 ms while the purge runs, timing each
    wait for the write lock (see the module's docstring)."""

    def __init__(self, database_url: str):
        self.process = subprocess.Popen(
            [harness.PYTHON, "-c", "import django; django.setup()\n" + PROBE],
            cwd=harness.PROJECT,
            env=harness.service_env(database_url),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> tuple[float, float, int]:
        """The longest wait, the 99th percentile, and how many writes."""
        self.process.send_signal(signal.SIGTERM)
        longest, p99, count = self.process.communicate(timeout=60)[0].split()
        return float(longest), float(p99), int(count)


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
