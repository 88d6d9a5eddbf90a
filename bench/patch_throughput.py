"""PATCH and heartbeat throughput against the floor and against the FastAPI peer, on one
production-like server.

gunicorn (DEBUG off, persistent connections) serves the app; wrk drives every run with the
same settings. The runs are interleaved, so that the machine's noise falls on all of them
alike: floor, peer, PATCH, peer, PATCH, heartbeat.
- floor: GET /healthz (a JSON view with no database and no authentication);
- PATCH: {"status": "cancelled"}, each request on a different running execution owned by the
  bench user, with its token;
- peer: the same PATCH on the FastAPI peer (`<repo>/../shared/peer-fastapi`, run by
  bench/peer.py in its own virtual environment, seeded per its README, on SQLite, with the
  same number of worker processes); skipped with a message when ../shared is absent;
- heartbeat: POST .../heartbeat on running executions of the bench user.
Prints requests/s, p50 and p99 latency and errors of each run, then PATCH/floor, PATCH/peer,
heartbeat/floor and PATCH p99/p50 (PATCH is the mean of its two runs, the peer too).

    python bench/patch_throughput.py                           # SQLite
    scripts/with-postgres.sh python bench/patch_throughput.py  # PostgreSQL (the peer: SQLite)

Options: --duration SECONDS (10), --connections N (16), --workers N (each server's worker
processes, 2), --executions N (running executions seeded for each PATCH run, 100000),
--no-peer.

--production measures the production setup instead (deploy/serve.py: nginx in front of
gunicorn with config/gunicorn.conf.py, --workers processes x --threads threads, gthread):

    python bench/patch_throughput.py --production --workers 5 --threads 2
"""

import argparse
import contextlib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import harness
import peer

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_requests.lua"
# Issue #11's targets, by database: PostgreSQL's PATCH/floor is 0.30; heartbeat/floor and the
# peer (which runs on SQLite only) are set for SQLite.
TARGETS = {
    "sqlite": {"PATCH/floor": 0.40, "PATCH/peer": 3.0, "heartbeat/floor": 0.50},
    "postgresql": {"PATCH/floor": 0.30},
}
TARGET_P99_P50 = 2.0
HEARTBEAT_EXECUTIONS = 1000


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument(
        "--production", action="store_true", help="nginx in front of gunicorn (deploy/serve.py)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="gunicorn threads per worker with --production"
    )
    args = parser.parse_args()

    peer_source = None if args.no_peer else peer.peer_folder()
    if peer_source is None and not args.no_peer:
        print("The FastAPI peer is not there (<repo>/../shared/peer-fastapi): PATCH/peer is skipped.")

    with harness.bench_database() as (database_url, folder):
        harness.django_setup(database_url)
        from django.db import connection

        from executions.models import Execution, ExecutionStatusChange

        user, token = harness.create_bench_user()
        harness.seed_running_executions(
            2 * args.executions + HEARTBEAT_EXECUTIONS, user.id, datetime.now(UTC)
        )
        ids = [str(pk) for pk in Execution.objects.values_list("id", flat=True).iterator(chunk_size=10_000)]
        connection.close()
        # One file of fresh ids for each PATCH run, one for the heartbeats.
        files = {}
        for name, chunk in [
            ("patch1", ids[: args.executions]),
            ("patch2", ids[args.executions : 2 * args.executions]),
            ("heartbeat", ids[2 * args.executions :]),
        ]:
            files[name] = folder / f"{name}-ids.txt"
            files[name].write_text("\n".join(chunk) + "\n")

        env = {"BENCH_TOKEN": token, "BENCH_WRK_THREADS": "2"}
        runs = {}

        def run(name, url, mode, ids_file=None):
            run_env = {**env, "BENCH_MODE": mode, "BENCH_IDS_FILE": str(ids_file or files["heartbeat"])}
            runs[name] = harness.wrk(url, WRK_SCRIPT, args.duration, args.connections, run_env)

        with contextlib.ExitStack() as servers:
            server = (
                harness.production(database_url, folder, args.workers, args.threads)
                if args.production
                else harness.gunicorn(database_url, folder, workers=args.workers)
            )
            base_url = servers.enter_context(server)
            peer_url = peer_ids = None
            if peer_source is not None:
                peer_url, peer_ids = servers.enter_context(
                    peer.peer_server(peer_source, folder, 2 * args.executions, args.workers)
                )
                halves = peer_ids.read_text().split()
                for index in (1, 2):
                    half = halves[(index - 1) * args.executions : index * args.executions]
                    (folder / f"peer{index}-ids.txt").write_text("\n".join(half) + "\n")
            # Warm-up: every worker of both servers meets its first requests here, not in a run.
            harness.wrk(base_url, WRK_SCRIPT, 2, args.connections, {**env, "BENCH_MODE": "floor"})
            harness.wrk(
                base_url,
                WRK_SCRIPT,
                2,
                args.connections,
                {**env, "BENCH_MODE": "heartbeat", "BENCH_IDS_FILE": str(files["heartbeat"])},
            )
            if peer_url:
                # PATCHes of unknown ids: the peer answers 404 and changes nothing.
                harness.wrk(
                    peer_url,
                    WRK_SCRIPT,
                    2,
                    args.connections,
                    {**env, "BENCH_MODE": "heartbeat", "BENCH_IDS_FILE": str(files["heartbeat"])},
                )

            run("floor", base_url, "floor")
            for index in (1, 2):
                if peer_url:
                    run(f"peer {index}", peer_url, "peer", folder / f"peer{index}-ids.txt")
                run(f"PATCH {index}", base_url, "patch", files[f"patch{index}"])
            run("heartbeat", base_url, "heartbeat")

        changed = Execution.objects.filter(status="cancelled").count()
        audited = ExecutionStatusChange.objects.count()
        vendor = connection.vendor
        connection.close()

    report(vendor, args, runs, changed, audited)


def rps(run):
    return run["requests"] / run["seconds"]


def errors_of(name, run):
    errors = run["status_errors"] + run["socket_errors"]
    if name.startswith(("PATCH", "peer")):
        errors += run["ids_exhausted"]
    return errors


def report(vendor, args, runs, changed, audited):
    server = f"{args.workers} worker processes per server"
    if args.production:
        server = f"nginx, gunicorn {args.workers} x {args.threads} threads"
    print(
        f"PATCH throughput on {vendor}: {server}, wrk 2 threads, "
        f"{args.connections} connections, {args.duration} s per run, {os.cpu_count()} cores"
    )
    print(f"{'run':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, run in runs.items():
        print(
            f"{name:10} {rps(run):9.0f} {run['p50_ms']:8.2f} {run['p99_ms']:8.2f} {errors_of(name, run):7d}"
        )

    def mean(prefix, figure=rps):
        values = [figure(run) for name, run in runs.items() if name.startswith(prefix)]
        return sum(values) / len(values) if values else None

    patch = mean("PATCH")
    ratios = {
        "PATCH/floor": patch / rps(runs["floor"]),
        "heartbeat/floor": rps(runs["heartbeat"]) / rps(runs["floor"]),
    }
    if mean("peer") is not None:
        ratios["PATCH/peer"] = patch / mean("peer")
    for name, ratio in ratios.items():
        target = TARGETS[vendor].get(name)
        verdict = (
            "no target"
            if target is None
            else f"target >= {target:.2f}: {'met' if ratio >= target else 'MISSED'}"
        )
        print(f"{name}: {ratio:.2f} ({verdict})")
    tail = mean("PATCH", lambda run: run["p99_ms"]) / mean("PATCH", lambda run: run["p50_ms"])
    print(
        f"PATCH p99/p50: {tail:.2f} "
        f"(target <= {TARGET_P99_P50:.1f}: {'met' if tail <= TARGET_P99_P50 else 'MISSED'})"
    )
    patch_requests = sum(run["requests"] for name, run in runs.items() if name.startswith("PATCH"))
    print(
        f"executions cancelled: {changed}, audit records: {audited}, "
        f"PATCH answers counted by wrk: {patch_requests}"
    )
    if any(errors_of(name, run) for name, run in runs.items()) or changed != audited:
        print("ERRORS: see above")
        sys.exit(1)


if __name__ == "__main__":
    main()
