"""The worker at 1M executions: how soon after its deadline an execution is failed, what one
idle sweep costs, and how fast a backlog is worked off.

Seeds, in SQL (not the ORM): --size executions, all finished but --running of them, which
run with a heartbeat just now and a deadline an hour or more away (so they are in the
deadline index but never due). Then:
- the idle sweep: every task of executions/worker/tasks.py called once, in this process,
  with nothing due (after sweeping until no task has work due at once), --sweeps times:
  median and worst, and each task's median (target: 100 ms for the sweep);
- promptness: a real `manage.py run_worker` process; --due executions are created with
  deadlines spread over the next 15 s; each one's lag is its audit record's time minus its
  deadline (target: 2 s for every one);
- the backlog: --backlog executions already overdue by an hour, worked off by the same
  worker (its batches of WORKER_BATCH_SIZE): the seconds and rows per second.

    python bench/worker_promptness.py                           # SQLite
    scripts/with-postgres.sh python bench/worker_promptness.py  # PostgreSQL

Options: --size 1000000  --running 10000  --due 60  --sweeps 200  --backlog 10000
"""

import statistics
import time
from datetime import UTC, datetime, timedelta

import harness

TARGET_LAG_SECONDS = 2.0
TARGET_SWEEP_MS = 100.0
SPREAD_SECONDS = 15.0


def seed(size: int, running: int) -> None:
    """`size` executions, finished one second apart going back from an hour ago, but the
    newest `running`: running, heartbeated now, deadlines 1 h + n s away."""
    from django.db import connection

    now = datetime.now(UTC)
    finished = size - running
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                """
                INSERT INTO executions_execution (id, name, status, error_info, metadata,
                    created_at, updated_at, finished_at)
                SELECT gen_random_uuid(), 'bench-' || n, 'completed', NULL, '{}'::jsonb,
                       %(now)s::timestamptz - make_interval(secs => 3600 + n + 60),
                       %(now)s::timestamptz - make_interval(secs => 3600 + n),
                       %(now)s::timestamptz - make_interval(secs => 3600 + n)
                FROM generate_series(1, %(finished)s) AS n;
                INSERT INTO executions_execution (id, name, status, error_info, metadata,
                    created_at, updated_at, last_heartbeat_at, max_runtime_seconds, deadline_at)
                SELECT gen_random_uuid(), 'bench-running-' || n, 'running', NULL, '{}'::jsonb,
                       %(now)s, %(now)s, %(now)s, 3600 + n,
                       %(now)s::timestamptz + make_interval(secs => 3600 + n)
                FROM generate_series(1, %(running)s) AS n;
                """,
                {"now": now, "finished": finished, "running": running},
            )
        else:
            stamp = "%%Y-%%m-%%d %%H:%%M:%%f"  # strftime's, with %% for the driver
            base = now.strftime("%Y-%m-%d %H:%M:%S.%f")
            cursor.execute(
                f"""
                WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %s)
                INSERT INTO executions_execution (id, name, status, error_info, metadata,
                    created_at, updated_at, finished_at)
                SELECT lower(hex(randomblob(16))), 'bench-' || n, 'completed', NULL, '{{}}',
                       strftime('{stamp}', %s, '-' || (3660 + n) || ' seconds'),
                       strftime('{stamp}', %s, '-' || (3600 + n) || ' seconds'),
                       strftime('{stamp}', %s, '-' || (3600 + n) || ' seconds')
                FROM seq
                """,
                [finished, base, base, base],
            )
            cursor.execute(
                f"""
                WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %s)
                INSERT INTO executions_execution (id, name, status, error_info, metadata,
                    created_at, updated_at, last_heartbeat_at, max_runtime_seconds, deadline_at)
                SELECT lower(hex(randomblob(16))), 'bench-running-' || n, 'running', NULL, '{{}}',
                       %s, %s, %s, 3600 + n, strftime('{stamp}', %s, '+' || (3600 + n) || ' seconds')
                FROM seq
                """,
                [running, base, base, base, base],
            )
        cursor.execute("ANALYZE")


def task_name(task) -> str:
    return getattr(task, "__name__", type(task).__name__)


def settle() -> int:
    """Sweeps until no task has work due at once (a task that catches up on something at
    start, e.g. a feed read from its beginning, answers 0 until it is done); how many."""
    from django.utils import timezone

    from executions.worker.tasks import TASKS

    for rounds in range(1, 1001):
        now = timezone.now()
        if all(answer is None or answer > 0 for answer in [task(now) for task in TASKS]):
            return rounds
    raise SystemExit("the tasks still had work due after 1,000 sweeps")


def idle_sweeps(count: int) -> tuple[list[float], dict[str, float]]:
    """Seconds of each of `count` idle sweeps (every task once, nothing due), and each
    task's median milliseconds."""
    from django.utils import timezone

    from executions.worker.tasks import TASKS

    times, per_task = [], {task_name(task): [] for task in TASKS}
    for _ in range(count):
        now = timezone.now()
        started = time.perf_counter()
        for task in TASKS:
            task_started = time.perf_counter()
            answer = task(now)
            per_task[task_name(task)].append(time.perf_counter() - task_started)
            assert answer is None or answer > 0, (task_name(task), answer)  # nothing was due
        times.append(time.perf_counter() - started)
    return times, {name: statistics.median(spent) * 1000 for name, spent in per_task.items()}


def create_due(count: int, first_in: float) -> datetime:
    """`count` running executions whose deadlines fall over the next SPREAD_SECONDS."""
    from django.utils import timezone

    from executions.models import Execution

    now = timezone.now()
    step = SPREAD_SECONDS / count
    Execution.objects.bulk_create(
        [
            Execution(
                name=f"due-{index}",
                created_at=now,
                last_heartbeat_at=now,
                max_runtime_seconds=1,
                deadline_at=now + timedelta(seconds=first_in + index * step),
            )
            for index in range(count)
        ]
    )
    return now


def lags(name_prefix: str) -> list[float]:
    """For each failed execution named so: its audit record's time minus its deadline."""
    from executions.models import ExecutionStatusChange

    records = ExecutionStatusChange.objects.filter(
        execution__name__startswith=name_prefix, channel="worker"
    ).values_list("created_at", "execution__deadline_at")
    return [(changed - deadline).total_seconds() for changed, deadline in records]


def wait_for(name_prefix: str, count: int, timeout: float) -> float:
    from executions.models import Execution

    started = time.perf_counter()
    while Execution.objects.filter(name__startswith=name_prefix, status="failed").count() < count:
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"the worker did not fail {count} {name_prefix!r} executions in {timeout}s")
        time.sleep(0.2)
    return time.perf_counter() - started


def create_backlog(count: int) -> None:
    from django.utils import timezone

    from executions.models import Execution

    now = timezone.now()
    Execution.objects.bulk_create(
        [
            Execution(
                name=f"backlog-{index}",
                created_at=now - timedelta(hours=2),
                last_heartbeat_at=now,
                max_runtime_seconds=3600,
                deadline_at=now - timedelta(hours=1),
            )
            for index in range(count)
        ],
        batch_size=2000,
    )


def main():
    args = harness.parse_options(__doc__, size=1_000_000, running=10_000, due=60, sweeps=200, backlog=10_000)
    with harness.bench_database() as (database_url, _folder):
        harness.django_setup(database_url)
        from django.conf import settings
        from django.db import connection

        started = time.perf_counter()
        seed(args.size, args.running)
        vendor = connection.vendor
        print(
            f"{vendor}: seeded {args.size:,} executions ({args.running:,} running with deadlines) "
            f"in {time.perf_counter() - started:.0f} s"
        )

        print(f"settled after {settle()} sweep(s)")
        sweeps, per_task = idle_sweeps(args.sweeps)
        sweep_ms = statistics.median(sweeps) * 1000
        worst_ms = max(sweeps) * 1000
        print(
            f"idle sweep ({args.sweeps}x, every task once): median {sweep_ms:.2f} ms, "
            f"worst {worst_ms:.2f} ms (target {TARGET_SWEEP_MS:.0f} ms: "
            f"{'met' if sweep_ms <= TARGET_SWEEP_MS else 'MISSED'})"
        )
        print("  per task, median: " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in per_task.items()))

        env = harness.service_env(database_url)
        connection.close()
        with harness.servers.WorkerProcess(env):
            create_due(args.due, first_in=2.0)
            wait_for("due-", args.due, timeout=SPREAD_SECONDS + 60)
            measured = sorted(lags("due-"))
            worst = measured[-1]
            print(
                f"promptness ({args.due} deadlines over {SPREAD_SECONDS:.0f} s, worker idle interval "
                f"{settings.WORKER_IDLE_INTERVAL:g} s): lag median {statistics.median(measured):.3f} s, "
                f"p95 {measured[int(len(measured) * 0.95) - 1]:.3f} s, worst {worst:.3f} s "
                f"(target {TARGET_LAG_SECONDS:.0f} s: {'met' if worst <= TARGET_LAG_SECONDS else 'MISSED'})"
            )
            create_backlog(args.backlog)
            seconds = wait_for("backlog-", args.backlog, timeout=600)
            print(
                f"backlog: {args.backlog:,} executions overdue by 1 h failed in {seconds:.1f} s "
                f"({args.backlog / seconds:,.0f}/s, batches of {settings.WORKER_BATCH_SIZE})"
            )
        settle()
        sweeps, _ = idle_sweeps(args.sweeps)
        median_ms, worst_ms = statistics.median(sweeps) * 1000, max(sweeps) * 1000
        print(f"idle sweep after: median {median_ms:.2f} ms, worst {worst_ms:.2f} ms")


if __name__ == "__main__":
    main()
