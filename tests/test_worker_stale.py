"""The stale-heartbeat rule in the worker: the same service as cleanup_stale_executions
(executions_interrupt_stale), run continuously with the `worker` channel."""

from datetime import timedelta

import pytest
from django.utils import timezone

from executions.models import Execution, ExecutionStatusChange
from executions.services import execution_heartbeat
from executions.worker.identity import worker_identity
from executions.worker.stale import interrupt_stale_executions

from .factories import ExecutionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def stale_after(settings):
    settings.EXECUTIONS_STALE_AFTER = timedelta(minutes=30)


def last_seen(minutes_ago: float, **fields) -> Execution:
    return ExecutionFactory(created_at=timezone.now() - timedelta(minutes=minutes_ago), **fields)


def test_a_running_execution_silent_for_too_long_is_interrupted_by_the_worker():
    silent = last_seen(45)
    recent = last_seen(5)
    interrupt_stale_executions(timezone.now())

    silent.refresh_from_db()
    recent.refresh_from_db()
    assert (silent.status, recent.status) == ("interrupted", "running")
    assert silent.error_info == {
        "reason": "stale",
        "last_seen_at": silent.created_at.isoformat(),
        "threshold": "30m",
        "detected_by": "run_worker",
    }
    [record] = ExecutionStatusChange.objects.all()
    assert (record.execution_id, record.channel, record.actor, record.new_status) == (
        silent.pk,
        "worker",
        None,
        "interrupted",
    )
    assert record.correlation_id == worker_identity()


def test_it_answers_when_the_next_execution_may_become_stale():
    last_seen(20)
    assert 9.9 * 60 < interrupt_stale_executions(timezone.now()) <= 10 * 60


def test_with_nothing_running_it_knows_of_nothing():
    ExecutionFactory(status="completed", created_at=timezone.now() - timedelta(days=1))
    assert interrupt_stale_executions(timezone.now()) is None


def test_a_heartbeat_keeps_an_old_execution_alive():
    old = last_seen(45)
    execution_heartbeat(execution_id=old.pk)
    assert interrupt_stale_executions(timezone.now()) > 29 * 60
    old.refresh_from_db()
    assert old.status == "running"


def test_one_bounded_batch_per_call(settings):
    settings.WORKER_BATCH_SIZE = 2
    for minutes in (50, 49, 48):
        last_seen(minutes)
    now = timezone.now()
    assert interrupt_stale_executions(now) == 0
    assert Execution.objects.filter(status="interrupted").count() == 2
    assert interrupt_stale_executions(now) == 0
    assert interrupt_stale_executions(now) is None
    assert ExecutionStatusChange.objects.count() == 3
