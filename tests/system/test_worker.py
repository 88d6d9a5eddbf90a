"""The worker as it runs: `manage.py run_worker` in a process of its own against the test
database. It stops within 5 s of SIGTERM or SIGINT, a stop (even SIGKILL) never leaves half a
batch, and after a long stop it catches up, once, saying how far behind it was. The race of
several workers: tests/system/test_worker_race.py."""

import re
import signal
import time
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from devtools.postgres import ThrowawayPostgres
from devtools.servers import WorkerProcess, manage, service_env
from executions.models import Execution, ExecutionStatus, ExecutionStatusChange

from .test_executions_run import served_database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BATCH = 500
DEADLINE_SECONDS = 60


@pytest.fixture
def worker_env(transactional_db):
    # No connection kept between rounds: the test database is emptied after each test.
    return service_env(served_database_url(), DATABASE_CONN_MAX_AGE="0", WORKER_BATCH_SIZE=str(BATCH))


def overdue(count: int, by: timedelta) -> None:
    """`count` running executions whose deadline passed `by` ago, still heartbeating (hung,
    not dead: the stale rule leaves them to the deadline)."""
    now = timezone.now()
    deadline_at = now - by
    Execution.objects.bulk_create(
        [
            Execution(
                name=f"overdue-{index}",
                created_at=deadline_at - timedelta(minutes=1),
                max_runtime_seconds=60,
                deadline_at=deadline_at,
                last_heartbeat_at=now,
            )
            for index in range(count)
        ],
        batch_size=2000,
    )


def failed_count() -> int:
    return Execution.objects.filter(status=ExecutionStatus.FAILED).count()


def wait_until(condition, what):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {DEADLINE_SECONDS}s")
        time.sleep(0.05)


def assert_each_failed_once_by_whole_batches():
    records = ExecutionStatusChange.objects.filter(channel="worker")
    assert records.count() == failed_count()
    assert not records.values("execution").annotate(times=Count("id")).filter(times__gt=1).exists()
    # Batches commit whole or not at all, and nothing else changed these rows.
    assert failed_count() % BATCH == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda signum: signum.name)
def test_a_signal_stops_it_within_5_seconds(worker_env, signum):
    worker = WorkerProcess(worker_env)
    try:
        worker.process.send_signal(signum)
        assert worker.process.wait(timeout=5) == 0
    finally:
        worker.close()
    log = worker.log()
    assert f"Worker: {signum.name} received, stopping after the current batch" in log
    assert re.search(rf"Worker stopped \({signum.name}\) after \d+ round\(s\)", log)


def test_after_a_long_stop_it_catches_up_once_and_says_how_far_behind_it_was(worker_env):
    overdue(2 * BATCH + 100, by=timedelta(hours=1))
    with WorkerProcess(worker_env) as worker:
        wait_until(lambda: failed_count() == 2 * BATCH + 100, "catch-up")
    records = ExecutionStatusChange.objects.filter(channel="worker")
    assert records.count() == 2 * BATCH + 100
    assert not records.values("execution").annotate(times=Count("id")).filter(times__gt=1).exists()
    behind = [int(seconds) for seconds in re.findall(r"catching up: (\d+) s behind", worker.log())]
    assert len(behind) == 3  # one warning per batch
    assert all(3600 <= seconds < 3600 + DEADLINE_SECONDS for seconds in behind), behind


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=lambda signum: signum.name)
def test_a_stop_in_the_middle_of_the_work_never_leaves_half_a_batch(worker_env, signum):
    overdue(40 * BATCH, by=timedelta(minutes=5))
    worker = WorkerProcess(worker_env)
    try:
        wait_until(lambda: failed_count() > 0, "first batch")
        worker.process.send_signal(signum)
        code = worker.process.wait(timeout=5 if signum == signal.SIGTERM else 30)
    finally:
        worker.close()
    assert code == (0 if signum == signal.SIGTERM else -signal.SIGKILL)
    assert 0 < failed_count()
    assert_each_failed_once_by_whole_batches()


@pytest.mark.postgres_only
def test_the_database_going_away_is_logged_and_the_worker_resumes_without_a_restart():
    """PostgreSQL stops (every connection cut) under a running worker and starts again: the
    worker logs each failed round, backs off, and fails the next deadline with no restart.
    A PostgreSQL of its own, so that stopping it disturbs nothing else."""
    with ThrowawayPostgres(durable=True) as postgres:
        postgres.create_database()
        env = service_env(postgres.url(), DATABASE_CONN_MAX_AGE="600")
        manage(env, "migrate", "--no-input")
        with WorkerProcess(env) as worker:
            postgres.stop()
            wait_until(lambda: "failed (2 time(s) in a row)" in worker.log(), "failed rounds in the log")
            postgres.start()
            code = (
                "from executions.services import execution_create;"
                "execution_create(name='after', max_runtime_seconds=1)"
            )
            manage(env, "shell", "-c", code)
            wait_until(
                lambda: (
                    postgres.query("SELECT status FROM executions_execution WHERE name = 'after'")
                    == [("failed",)]
                ),
                "the deadline acted on after the outage",
            )
            assert worker.process.poll() is None
        log = worker.log()
    assert "Task fail_executions_past_deadline failed (1 time(s) in a row); next try in 1.0 s" in log
    assert "OperationalError" in log
    assert "Task fail_executions_past_deadline works again after" in log
