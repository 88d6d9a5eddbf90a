"""Exactly once with several workers: 4 `manage.py run_worker` processes on one database
(one SQLite file; one PostgreSQL database) race over 1,000 deadlines that fall due together.
Each execution is failed once, with one audit record, by whichever worker won it; every
worker runs the same batches at the same moments, so most of what each tries another already
did (the compare-and-set skips it). The per-process counts are printed (pytest -s)."""

import re
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from devtools.servers import WorkerProcess, service_env
from executions.models import Execution, ExecutionStatus, ExecutionStatusChange

from .test_executions_run import served_database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKERS = 4
DEADLINES = 1000
# Small batches, so that the workers' batches interleave rather than one taking all.
BATCH = 50
DEADLINE_SECONDS = 120


@pytest.fixture
def workers(transactional_db):
    env = service_env(served_database_url(), DATABASE_CONN_MAX_AGE="0", WORKER_BATCH_SIZE=str(BATCH))
    started = [WorkerProcess(env) for _ in range(WORKERS)]
    yield started
    for worker in started:
        worker.close()


def test_four_workers_fail_each_of_1000_executions_once(workers):
    # Due together, shortly after every worker is up and sweeping.
    now = timezone.now()
    deadline_at = now + timedelta(seconds=2)
    Execution.objects.bulk_create(
        [
            Execution(
                name=f"race-{index}",
                created_at=now,
                max_runtime_seconds=2,
                deadline_at=deadline_at,
                last_heartbeat_at=now,
            )
            for index in range(DEADLINES)
        ]
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    while Execution.objects.filter(status=ExecutionStatus.RUNNING).exists():
        assert time.monotonic() < deadline, "the workers did not fail every execution in time"
        time.sleep(0.1)
    for worker in workers:
        assert worker.stop() == 0, worker.log()

    assert Execution.objects.filter(status=ExecutionStatus.FAILED).count() == DEADLINES
    records = ExecutionStatusChange.objects.all()
    assert records.count() == DEADLINES
    assert not records.values("execution").annotate(times=Count("id")).filter(times__gt=1).exists()
    assert set(records.values_list("channel", flat=True)) == {"worker"}
    by_worker = Counter(records.values_list("correlation_id", flat=True))
    pids = {f":{worker.pid}" for worker in workers}
    assert all(identity[identity.rindex(":") :] in pids for identity in by_worker), by_worker
    # What each worker process says it did adds up to the same.
    said = sum(
        int(count)
        for worker in workers
        for count in re.findall(r"fail_executions_past_deadline: (\d+) execution", worker.log())
    )
    assert said == DEADLINES
    print(f"\n{WORKERS} workers, {DEADLINES} deadlines: changes per worker {sorted(by_worker.values())}")
