"""The watch at scale: 10,000 monitors and 1M executions. How long after a monitor's
`late_after` the real worker process (`manage.py run_worker`, default idle interval) marks it
down/missed (target: within 2 s), and what one idle round of the monitors' two tasks costs
(target: at most 100 ms).

1M executions (all but 1,000 finished, as in bench/metrics_gauges.py) and 10,000 monitors,
9,000 due in an hour, 1,000 made due over the next few seconds (`late_after` spread over
`--spread` seconds, starting 3 s after the worker is up). The lag of each is the time of its
record (when the worker noticed, in the transaction that made the change) minus its
late_after; prints the median, the 99th percentile and the maximum, and the idle round's
median over 50 calls in this process.

    python bench/monitor_watch.py                           # SQLite
    scripts/with-postgres.sh python bench/monitor_watch.py  # PostgreSQL

Options: --executions 1000000 --monitors 10000 --due 1000 --spread 5
"""

import statistics
import subprocess
import time
from datetime import UTC, datetime, timedelta

import harness


def seed(executions: int, monitors: int):
    from django.db import connection

    from executions.models import Monitor

    user, _ = harness.create_bench_user()
    harness.seed_running_executions(executions, user.pk, datetime.now(UTC) - timedelta(days=2))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE executions_execution SET status = 'completed', finished_at = created_at "
            "WHERE id NOT IN (SELECT id FROM executions_execution ORDER BY id LIMIT 1000)"
        )
    later = datetime.now(UTC) + timedelta(hours=1)
    Monitor.objects.bulk_create(
        (
            Monitor(
                owner=user,
                name=f"monitor-{number}",
                schedule="every 1h",
                grace_seconds=60,
                schedule_from=later - timedelta(hours=1, minutes=1),
                next_due_at=later - timedelta(minutes=1),
                late_after=later,
            )
            for number in range(monitors)
        ),
        batch_size=1000,
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def idle_round_ms(repeat: int = 50) -> float:
    from executions.monitors.services import monitors_follow_runs, monitors_mark_missed

    times = []
    for _ in range(repeat):
        now = datetime.now(UTC)
        started = time.perf_counter()
        monitors_follow_runs(now)
        monitors_mark_missed(now)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main():
    args = harness.parse_options(__doc__, executions=1_000_000, monitors=10_000, due=1000, spread=5.0)
    with harness.bench_database() as (database_url, folder):
        harness.django_setup(database_url)
        from django.db import connection

        from executions.models import Monitor, MonitorStateChange

        started = time.perf_counter()
        seed(args.executions, args.monitors)
        print(
            f"{connection.vendor}: seeded {args.executions} executions, {args.monitors} monitors "
            f"in {time.perf_counter() - started:.0f}s"
        )
        idle = idle_round_ms()
        print(f"{connection.vendor}: one idle round of the monitors' tasks: {idle:.1f} ms (median of 50)")

        log = open(folder / "worker.log", "wb")
        worker = subprocess.Popen(
            [harness.PYTHON, "manage.py", "run_worker"],
            cwd=harness.PROJECT,
            env=harness.service_env(database_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            time.sleep(3)  # the worker is up and idle
            # Written at once (one statement per 1,000), well before the first is due: the lag
            # measured is the worker's, not this script's.
            first = datetime.now(UTC) + timedelta(seconds=5)
            due = list(Monitor.objects.order_by("id")[: args.due])
            for index, monitor in enumerate(due):
                monitor.late_after = first + timedelta(seconds=args.spread * index / len(due))
            Monitor.objects.bulk_update(due, ["late_after"], batch_size=1000)
            assert datetime.now(UTC) < first, "the due times were written too late"
            deadline = time.monotonic() + args.spread + 60
            while MonitorStateChange.objects.filter(reason="missed").count() < len(due):
                if time.monotonic() > deadline or worker.poll() is not None:
                    tail = (folder / "worker.log").read_text()[-3000:]
                    raise SystemExit(f"not all marked down in time; worker log:\n{tail}")
                time.sleep(0.2)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            log.close()
        rows = MonitorStateChange.objects.filter(reason="missed").values_list(
            "created_at", "monitor__late_after"
        )
        lags = sorted((noticed - late_after).total_seconds() for noticed, late_after in rows)
        print(
            f"{connection.vendor}: {len(lags)} monitors marked down after their late_after by "
            f"median {statistics.median(lags):.2f} s, p99 {lags[int(len(lags) * 0.99) - 1]:.2f} s, "
            f"max {lags[-1]:.2f} s (target: 2 s); down now: {Monitor.objects.filter(state='down').count()}"
        )


if __name__ == "__main__":
    main()
