"""Notifications: how fast one worker drains a backlog of status changes to a fast receiver,
and how much memory it takes (issue #21: >= 500 deliveries/s, worker RSS < 150 MB).

Seeds N running executions of one user with a webhook endpoint, fails them all (N audit
records: the backlog), then starts one `manage.py run_worker` and times it from its start
until every message is delivered (the fan-out from the audit feed and the delivery both
inside the time), reading the worker's resident memory from /proc as it goes and its peak
(VmHWM) at the end. The receiver is bench/fast_receiver.py, which answers at once and checks
nothing, so the figure is the worker's.

It also reads the worker's CPU time from /proc: on a shared machine the wall time says how
busy the others were as much as how fast the worker is, and deliveries per CPU second is what
one core given to the worker would do (the worker is one process; its sending threads share
one interpreter).

The floor, measured in the same run: the same HTTP client and threads POSTing the same
number of bodies of the same size to the same receiver, with no database at all: what one
process can send. delivered/s over floor/s is what the outbox (claims, the delivery log,
retries' bookkeeping) costs.

    python bench/notifications_throughput.py                           # SQLite
    scripts/with-postgres.sh python bench/notifications_throughput.py  # PostgreSQL

Options: --changes 100000   --floor-requests 20000
"""

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import harness

TARGET_RATE = 500
TARGET_RSS_MB = 150
RECEIVER = Path(__file__).with_name("fast_receiver.py")


def main():
    options = harness.parse_options(__doc__, changes=100_000, floor_requests=20_000)
    with harness.bench_database() as (database_url, folder):
        receiver = subprocess.Popen([harness.PYTHON, str(RECEIVER)], stdout=subprocess.PIPE, text=True)
        try:
            port = int(receiver.stdout.readline().split()[-1])
            url = f"http://127.0.0.1:{port}/hook"
            result = measure(options.changes, database_url, folder, url)
            print(result, flush=True)
            result["floor_rate"] = floor(url, options.floor_requests, result["body_bytes"])
        finally:
            receiver.terminate()
            receiver.wait()
    report(result)


def env_of(database_url: str) -> dict:
    return harness.service_env(database_url, NOTIFICATIONS_ALLOW_PRIVATE_TARGETS="true", LOG_LEVEL="INFO")


def measure(changes: int, database_url: str, folder: Path, url: str) -> dict:
    os.environ["NOTIFICATIONS_ALLOW_PRIVATE_TARGETS"] = "true"
    harness.django_setup(database_url)
    from django.db import connection

    from executions.models import ChangeChannel, Execution, MessageState, NotificationMessage
    from executions.notifications.services import notification_endpoint_create
    from executions.services import execution_change_status_bulk

    user, _ = harness.create_bench_user()
    notification_endpoint_create(owner=user, kind="webhook", url=url, events=["execution.failed"])
    started = time.perf_counter()
    harness.seed_running_executions(changes, user.pk, datetime.now(UTC) - timedelta(minutes=1))
    execution_change_status_bulk(
        executions=Execution.objects.all(),
        status="failed",
        channel=ChangeChannel.COMMAND,
        error_info={"exit": 1},
    )
    seeded_in = time.perf_counter() - started
    vendor = connection.vendor
    connection.close()

    log_path = folder / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [harness.PYTHON, "manage.py", "run_worker"],
            cwd=harness.PROJECT,
            env=env_of(database_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        while "Worker started" not in log_path.read_text():
            if worker.poll() is not None:
                sys.exit(f"the worker exited:\n{log_path.read_text()}")
            time.sleep(0.05)
        began = time.perf_counter()
        fanned_out_at = None
        rss_samples = []
        while True:
            time.sleep(1)
            if worker.poll() is not None:
                sys.exit(f"the worker exited:\n{log_path.read_text()}")
            rss_samples.append(memory_mb(worker.pid, "VmRSS"))
            made = NotificationMessage.objects.count()
            if fanned_out_at is None and made >= changes:
                fanned_out_at = time.perf_counter() - began
            delivered = NotificationMessage.objects.filter(state=MessageState.DELIVERED).count()
            connection.close()
            if delivered >= changes:
                drained_in = time.perf_counter() - began
                break
        peak_rss = memory_mb(worker.pid, "VmHWM")
        cpu_seconds = cpu_seconds_of(worker.pid)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    body_bytes = len(harness_body(NotificationMessage.objects.first()))
    failed_attempts = NotificationMessage.objects.exclude(attempts=1).count()
    connection.close()
    return {
        "vendor": vendor,
        "changes": changes,
        "seeded_s": seeded_in,
        "fanned_out_s": fanned_out_at,
        "drained_s": drained_in,
        "rate": changes / drained_in,
        "rss_mb": max(rss_samples),
        "peak_rss_mb": peak_rss,
        "cpu_s": cpu_seconds,
        "body_bytes": body_bytes,
        "retried": failed_attempts,
    }


def harness_body(message) -> bytes:
    from executions.notifications.events import body_bytes

    return body_bytes(message.event_type, message.occurred_at, message.payload)


def memory_mb(pid: int, field: str) -> float:
    """A memory figure of a process (VmRSS: now, VmHWM: its peak), in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def cpu_seconds_of(pid: int) -> float:
    """The CPU time a process has used so far (user and system, all its threads), from /proc:
    on a shared machine, how much of the wall time the worker actually ran."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def floor(url: str, requests: int, body_size: int) -> float:
    """POSTs/s of the delivery's own HTTP client and thread count, with no database."""
    from executions.notifications.delivery import CONCURRENCY
    from executions.notifications.transports import http_post, new_http_client

    body = b"x" * body_size
    with new_http_client(CONCURRENCY) as client, ThreadPoolExecutor(CONCURRENCY) as pool:
        started = time.perf_counter()
        answers = list(pool.map(lambda _: http_post(client, url, body, {}), range(requests)))
        seconds = time.perf_counter() - started
    failed = [answer.error for answer in answers if not answer.succeeded]
    if failed:
        sys.exit(f"the floor's requests failed ({len(failed)} of {requests}), e.g. {failed[0]}")
    return requests / seconds


def report(r: dict) -> None:
    print(f"notifications: one worker drains {r['changes']} changes on {r['vendor']}, {os.cpu_count()} cores")
    print(f"  seeded {r['changes']} executions and their failures in {r['seeded_s']:.1f} s")
    print(f"  fanned out (every message made) after {r['fanned_out_s']:.1f} s")
    print(f"  delivered every message after {r['drained_s']:.1f} s: {r['rate']:.0f} deliveries/s")
    share = r["cpu_s"] / r["drained_s"]
    print(
        f"  the worker ran {r['cpu_s']:.1f} CPU s of those {r['drained_s']:.1f} s ({share:.0%} of one core): "
        f"{r['changes'] / r['cpu_s']:.0f} deliveries per CPU second"
    )
    print(
        f"  floor (same client and threads, no database, {r['body_bytes']} B bodies): {r['floor_rate']:.0f}/s"
    )
    print(
        f"  delivered/floor: {r['rate'] / r['floor_rate']:.2f}; messages sent more than once: {r['retried']}"
    )
    print(f"  worker RSS: {r['rss_mb']:.0f} MB at most when sampled, peak (VmHWM) {r['peak_rss_mb']:.0f} MB")
    print(
        f"targets: >= {TARGET_RATE}/s {'met' if r['rate'] >= TARGET_RATE else 'MISSED'}; "
        f"RSS < {TARGET_RSS_MB} MB {'met' if r['peak_rss_mb'] < TARGET_RSS_MB else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
