"""What one scrape of /metrics costs the database: the COUNTs behind executions_running and
executions_stale (executions/metrics.py, ExecutionsCollector), on a million rows.

Two tables of 1M executions: all running and stale (the worst case: every row is in the
partial index execution_running_seen_idx), then all but 1,000 finished (the usual case).
Prints the median of 5 scrapes' collector time for each.

    python bench/metrics_gauges.py                           # SQLite
    scripts/with-postgres.sh python bench/metrics_gauges.py  # PostgreSQL

Options: --size 1000000
"""

import statistics
import time
from datetime import UTC, datetime, timedelta

import harness


def collect_seconds(repeat: int = 5) -> tuple[float, dict]:
    from executions.metrics import ExecutionsCollector

    times, values = [], {}
    for _ in range(repeat):
        started = time.perf_counter()
        values = {family.name: family.samples[0].value for family in ExecutionsCollector().collect()}
        times.append(time.perf_counter() - started)
    return statistics.median(times), values


def main():
    args = harness.parse_options(__doc__, size=1_000_000)
    with harness.bench_database() as (database_url, _folder):
        harness.django_setup(database_url)
        from django.db import connection

        harness.seed_running_executions(args.size, None, datetime.now(UTC) - timedelta(days=2))
        all_running, values = collect_seconds()
        print(
            f"{connection.vendor}, {args.size} executions, all running and stale: "
            f"{all_running * 1000:.1f} ms per scrape {values}"
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE executions_execution SET status = 'completed', finished_at = created_at "
                "WHERE id NOT IN (SELECT id FROM executions_execution ORDER BY id LIMIT 1000)"
            )
            cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
        mostly_finished, values = collect_seconds()
        print(
            f"{connection.vendor}, {args.size} executions, 1000 running: "
            f"{mostly_finished * 1000:.1f} ms per scrape {values}"
        )


if __name__ == "__main__":
    main()
