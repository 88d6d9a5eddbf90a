"""PATCH throughput against its floor, on one production-like server.

gunicorn (DEBUG off, persistent connections) serves the app; wrk drives, at 16 connections:
first the floor, GET /healthz (a JSON view with no database and no authentication), then
PATCH {"status": "cancelled"}, each request on a different running execution owned by the
bench user, with its token. Prints requests/s, p50 and p99 latency, errors, and PATCH/floor.

    python bench/patch_throughput.py                           # SQLite
    scripts/with-postgres.sh python bench/patch_throughput.py  # PostgreSQL

Options: --duration SECONDS (20), --connections N (16), --workers N (gunicorn, 4),
--executions N (running executions seeded, 200000).

--production measures the production setup instead (deploy/serve.py: nginx in front of
gunicorn with config/gunicorn.conf.py, --workers processes x --threads threads, gthread):

    python bench/patch_throughput.py --production --workers 5 --threads 2
"""

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_requests.lua"
TARGET_RATIO = 0.40


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--executions", type=int, default=200_000)
    parser.add_argument("--production", action="store_true", help="nginx in front of gunicorn (deploy/serve.py)")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker with --production")
    args = parser.parse_args()

    with harness.bench_database() as (database_url, folder):
        harness.django_setup(database_url)
        from django.db import connection

        from executions.models import Execution, ExecutionStatusChange

        user, token = harness.create_bench_user()
        harness.seed_running_executions(args.executions, user.id, datetime.now(timezone.utc))
        ids_file = folder / "ids.txt"
        with open(ids_file, "w") as out:
            for execution_id in Execution.objects.values_list("id", flat=True).iterator(chunk_size=10_000):
                out.write(f"{execution_id}\n")
        connection.close()

        env = {"BENCH_IDS_FILE": str(ids_file), "BENCH_TOKEN": token, "BENCH_WRK_THREADS": "2"}
        server = (
            harness.production(database_url, folder, args.workers, args.threads)
            if args.production
            else harness.gunicorn(database_url, folder, workers=args.workers)
        )
        with server as base_url:
            # A short warm-up, so that both runs meet warm workers and open connections.
            harness.wrk(base_url, WRK_SCRIPT, 2, args.connections, {**env, "BENCH_MODE": "floor"})
            floor = harness.wrk(base_url, WRK_SCRIPT, args.duration, args.connections, {**env, "BENCH_MODE": "floor"})
            patch = harness.wrk(base_url, WRK_SCRIPT, args.duration, args.connections, {**env, "BENCH_MODE": "patch"})

        changed = Execution.objects.filter(status="cancelled").count()
        audited = ExecutionStatusChange.objects.count()
        vendor = connection.vendor
        connection.close()

    report(vendor, args, floor, patch, changed, audited)


def report(vendor, args, floor, patch, changed, audited):
    def rps(run):
        return run["requests"] / run["seconds"]

    ratio = rps(patch) / rps(floor)
    errors = patch["status_errors"] + patch["socket_errors"] + patch["ids_exhausted"]
    server = f"gunicorn {args.workers} workers"
    if args.production:
        server = f"nginx, gunicorn {args.workers} x {args.threads} threads"
    print(f"PATCH throughput on {vendor}: {server}, wrk 2 threads, "
          f"{args.connections} connections, {args.duration} s, {os.cpu_count()} cores")
    print(f"{'':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, run, run_errors in [
        ("floor", floor, floor["status_errors"] + floor["socket_errors"]),
        ("PATCH", patch, errors),
    ]:
        print(f"{name:8} {rps(run):9.0f} {run['p50_ms']:8.2f} {run['p99_ms']:8.2f} {run_errors:7d}")
    print(f"PATCH/floor: {ratio:.2f} (target >= {TARGET_RATIO:.2f}: {'met' if ratio >= TARGET_RATIO else 'MISSED'})")
    print(f"executions cancelled: {changed}, audit records: {audited}, PATCH answers counted by wrk: {patch['requests']}")
    if errors or changed != audited:
        print("ERRORS: see above")
        sys.exit(1)


if __name__ == "__main__":
    main()
