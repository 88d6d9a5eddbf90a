"""Every process's counters reach /metrics: what the worker (manage.py run_worker) and the
commands (cleanup_stale_executions, purge_executions) count, in processes of their own, is in
the scrape of the web's gunicorn, whether those processes still run or have ended, and across
a restart of gunicorn while the worker runs on (nothing wiped, nothing counted twice).
All of them share one PROMETHEUS_MULTIPROC_DIR, as in production (executions/metrics_files.py)."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from devtools.net import request
from devtools.servers import Gunicorn, WorkerProcess, manage, service_env
from executions.models import ChangeChannel, Execution, ExecutionStatus
from executions.services import execution_change_status

from .test_executions_run import served_database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOKEN = "every-process-metrics-token-0123456789"
DEADLINE_SECONDS = 60
DEADLINE_TASK = "fail_executions_past_deadline"


def scrape(port) -> dict:
    status, _, body = request(port, "GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def overdue(count: int) -> None:
    now = timezone.now()
    for _ in range(count):
        Execution.objects.create(
            name="overdue",
            created_at=now - timedelta(minutes=2),
            max_runtime_seconds=60,
            deadline_at=now - timedelta(minutes=1),
            last_heartbeat_at=now,
        )


def wait_until_failed(count: int) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while Execution.objects.filter(status=ExecutionStatus.FAILED, name="overdue").count() < count:
        assert time.monotonic() < deadline, "the worker did not act in time"
        time.sleep(0.05)


def writers(folder) -> set[int]:
    """The pids whose values files are in the folder."""
    return {int(path.stem.rsplit("_", 1)[1]) for path in folder.glob("*_[0-9]*.db")}


def assert_counted(samples, *, deadlines: int):
    changes = "executions_status_changes_total"
    assert (
        value(samples, changes, previous_status="running", new_status="interrupted", channel="command") == 2
    )
    assert (
        value(samples, changes, previous_status="running", new_status="failed", channel="worker") == deadlines
    )
    assert value(samples, "executions_watch_transitions_total", reason="stale") == 2
    assert value(samples, "executions_watch_transitions_total", reason="deadline_exceeded") == deadlines
    assert value(samples, "executions_worker_lag_seconds_count", task=DEADLINE_TASK) == deadlines
    assert value(samples, "executions_purged_total", record="execution") == 4
    assert value(samples, "executions_purged_total", record="status_change") == 4


def test_the_worker_and_the_commands_counters_reach_metrics(tmp_path):
    folder = tmp_path / "metrics"
    env = service_env(
        served_database_url(),
        DATABASE_CONN_MAX_AGE="0",
        METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(folder),
        GUNICORN_CMD_ARGS="--config config/gunicorn.conf.py",
    )
    # Two stale executions for the cleanup command, four finished long ago for the purge.
    long_ago = timezone.now() - timedelta(hours=2)
    for _ in range(2):
        Execution.objects.create(name="stale", created_at=long_ago)
    for _ in range(4):
        finished = Execution.objects.create(name="old")
        execution_change_status(execution_id=finished.pk, status="completed", channel=ChangeChannel.API)
    Execution.objects.filter(name="old").update(finished_at=timezone.now() - timedelta(days=10))
    manage(env, "cleanup_stale_executions", "--older-than", "1h")
    manage(env, "purge_executions", "--finished-before", "1d")
    overdue(3)
    with WorkerProcess(env):
        wait_until_failed(3)
    # Every process that counted has ended before the server starts.
    with Gunicorn(env, workers=2, threads=2) as gunicorn:
        assert_counted(scrape(gunicorn.port), deadlines=3)
        # Their files were archived: what remains besides the archives is the server's own.
        assert writers(folder) <= {gunicorn.process.pid, *gunicorn.worker_pids()}
        assert {"counter_archive.db", "histogram_archive.db"} <= {path.name for path in folder.glob("*.db")}

    with WorkerProcess(env) as worker:
        gunicorn = Gunicorn(env, workers=2, threads=2)
        try:
            overdue(1)
            wait_until_failed(4)
            assert_counted(scrape(gunicorn.port), deadlines=4)  # a worker still running
            # The server restarts; the worker runs on and counts into the same file.
            gunicorn.close()
            gunicorn = Gunicorn(env, workers=2, threads=2)
            assert_counted(scrape(gunicorn.port), deadlines=4)
            overdue(1)
            wait_until_failed(5)
            assert_counted(scrape(gunicorn.port), deadlines=5)
            assert worker.pid in writers(folder)
        finally:
            gunicorn.close()
