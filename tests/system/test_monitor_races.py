"""Four real worker processes (`manage.py run_worker`) on one database race over 1,000 late
monitors and the ends of 1,000 runs: each transition happens exactly once, with exactly one
record. On SQLite the four share the file (the writer queue); on PostgreSQL the late monitors
are locked with SKIP LOCKED and the run feed's position row with FOR UPDATE."""

import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from devtools.servers import REPO_ROOT, service_env
from executions.models import (
    ChangeChannel,
    Execution,
    ExecutionStatus,
    ExecutionStatusChange,
    Monitor,
    MonitorRunFeedPosition,
    MonitorStateChange,
)
from executions.services import execution_change_status_bulk, execution_create

from ..factories import UserFactory, monitor_for
from .test_executions_run import served_database_url, wait_until

pytestmark = pytest.mark.slow

MONITORS = 1000
WORKERS = 4


@pytest.mark.django_db(transaction=True)
def test_four_workers_make_each_monitor_transition_exactly_once(tmp_path):
    owner = UserFactory(username="racer")
    now = timezone.now()
    # 1,000 monitors late already: each must go down/missed once.
    late = Monitor.objects.bulk_create(
        Monitor(
            owner=owner,
            name=f"late-{number}",
            schedule="every 1h",
            grace_seconds=0,
            schedule_from=now - timedelta(hours=2),
            next_due_at=now - timedelta(hours=1),
            late_after=now - timedelta(hours=1),
        )
        for number in range(MONITORS)
    )
    # 1,000 monitors each with a run that failed: each must go up -> down/failed once.
    failing = [monitor_for(owner, name=f"failing-{number}") for number in range(MONITORS)]
    runs = [
        execution_create(name=m.name, created_by=owner, monitor=m, channel=ChangeChannel.API) for m in failing
    ]
    execution_change_status_bulk(
        executions=Execution.objects.filter(pk__in=[run.pk for run in runs]),
        status=ExecutionStatus.FAILED,
        channel=ChangeChannel.API,
        batch_size=100,
    )
    connection.close()  # the workers' turn

    env = service_env(served_database_url(), WORKER_IDLE_INTERVAL="0.1")
    logs = [open(tmp_path / f"worker-{number}.log", "wb") for number in range(WORKERS)]
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "run_worker"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
        )
        for log in logs
    ]
    started = time.monotonic()
    try:
        wait_until(
            lambda: (
                MonitorStateChange.objects.filter(reason="missed").count() >= MONITORS
                and MonitorStateChange.objects.filter(reason="failed").count() >= MONITORS
            ),
            "every transition",
        )
        elapsed = time.monotonic() - started
        time.sleep(1)  # let any double have its chance
    finally:
        for worker in workers:
            worker.terminate()
        codes = [worker.wait(timeout=30) for worker in workers]
        for log in logs:
            log.close()
    assert codes == [0] * WORKERS, [
        (tmp_path / f"worker-{n}.log").read_text()[-3000:] for n in range(WORKERS)
    ]

    missed = MonitorStateChange.objects.filter(reason="missed")
    failed = MonitorStateChange.objects.filter(reason="failed")
    assert missed.count() == MONITORS
    assert set(missed.values_list("monitor_id", flat=True)) == {m.pk for m in late}
    assert set(missed.values_list("previous_state", "new_state", "channel").distinct()) == {
        ("new", "down", "worker")
    }
    assert failed.count() == MONITORS
    assert set(failed.values_list("monitor_id", flat=True)) == {m.pk for m in failing}
    assert set(failed.values_list("previous_state", "new_state", "channel").distinct()) == {
        ("up", "down", "api")
    }
    assert set(failed.values_list("execution_id", flat=True)) == {run.pk for run in runs}
    assert Monitor.objects.filter(state="down").count() == 2 * MONITORS
    # Every run's end was read, once: the feed position is at the last change.
    position = MonitorRunFeedPosition.objects.get()
    newest = ExecutionStatusChange.objects.order_by("-transaction_id", "-id").values_list(
        "transaction_id", "id"
    )[0]
    assert (position.transaction_id, position.change_id) == newest
    print(
        f"\n{WORKERS} workers: {2 * MONITORS} transitions, each once, in {elapsed:.1f}s ({connection.vendor})"
    )
