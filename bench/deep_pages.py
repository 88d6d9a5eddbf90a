"""The list endpoint on 1M executions: the first page, a page 10,000 pages deep, and a
filtered list (status=running&stale=true), each timed over many requests against gunicorn.

The deep page's cursor is the one the API itself would hand out after 10,000 pages: the
position of the last row of page 10,000, encoded with the API's own encode_cursor. The
floor is the first page; the result is deep/first.

    python bench/deep_pages.py                           # SQLite
    scripts/with-postgres.sh python bench/deep_pages.py  # PostgreSQL

Options: --executions N (1000000)  --requests N per case (200)  --depth PAGES (10000)
"""

import http.client
import os
import statistics
import sys
import time
from datetime import UTC, datetime

import harness

TARGET_RATIO = 1.3


def main():
    args = harness.parse_options(__doc__, executions=1_000_000, requests=200, depth=10_000)

    with harness.bench_database() as (database_url, folder):
        harness.django_setup(database_url)
        from django.db import connection

        from executions.api.pagination import DEFAULT_PAGE_SIZE, encode_cursor
        from executions.models import Execution

        user, token = harness.create_bench_user()
        harness.seed_running_executions(args.executions, user.id, datetime.now(UTC))
        last_of_depth = (
            Execution.objects.filter(created_by=user)
            .order_by("-created_at", "-id")
            .values_list("created_at", "id")[args.depth * DEFAULT_PAGE_SIZE - 1]
        )
        deep_cursor = encode_cursor(*last_of_depth)
        vendor = connection.vendor
        connection.close()

        cases = {
            "first page": "/api/v1/executions",
            f"page {args.depth + 1:,}": f"/api/v1/executions?cursor={deep_cursor}",
            "status=running&stale=true": "/api/v1/executions?status=running&stale=true",
        }
        with harness.gunicorn(database_url, folder, workers=1) as base_url:
            timings = {
                name: time_requests(base_url, path, token, args.requests) for name, path in cases.items()
            }

    report(vendor, args, timings)


def time_requests(base_url: str, path: str, token: str, count: int) -> list[float]:
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": f"Token {token}"}
    timings = []
    for attempt in range(count + 10):
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200 or b'"results":[{' not in body:
            sys.exit(f"GET {path} answered {response.status}: {body[:300]!r}")
        if attempt >= 10:  # the first ones warm caches and the connection
            timings.append(elapsed)
    connection.close()
    return timings


def report(vendor, args, timings):
    print(
        f"List latency on {vendor}, {args.executions:,} executions, {args.requests} requests a case, "
        f"one connection, gunicorn 1 worker, {os.cpu_count()} cores"
    )
    print(f"{'':28} {'p50 ms':>8} {'p90 ms':>8}")
    p50 = {}
    for name, values in timings.items():
        p50[name] = statistics.median(values)
        print(f"{name:28} {p50[name]:8.2f} {statistics.quantiles(values, n=10)[-1]:8.2f}")
    names = list(timings)
    ratio = p50[names[1]] / p50[names[0]]
    print(
        f"deep/first (p50): {ratio:.2f} "
        f"(target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'MISSED'})"
    )
    print(f"filtered/first (p50): {p50[names[2]] / p50[names[0]]:.2f}")


if __name__ == "__main__":
    main()
