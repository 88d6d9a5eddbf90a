"""Monitors' states: a run's start, its end (from the change feed), a missed start, pause and
resume; every change recorded once. The clock is passed in where the watch reads it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from executions.models import (
    ChangeChannel,
    Execution,
    ExecutionStatus,
    Monitor,
    MonitorState,
    MonitorStateChange,
)
from executions.monitors.services import (
    FOLLOW_RUNS_EVERY,
    Actor,
    monitor_delete,
    monitor_update,
    monitors_follow_runs,
    monitors_mark_missed,
    state_after_run_end,
)
from executions.retention.purge import executions_purge_finished
from executions.services import execution_change_status, execution_change_status_bulk, execution_create

from .factories import UserFactory, monitor_for

pytestmark = pytest.mark.django_db

# Run ends are read from the change feed, which on PostgreSQL serves only committed
# transactions: those tests commit for real.
FOLLOWS_THE_FEED = pytest.mark.django_db(transaction=True)


def history(monitor):
    return [
        (change.previous_state, change.new_state, change.reason)
        for change in MonitorStateChange.objects.filter(monitor=monitor).order_by("id")
    ]


def start_run(monitor, owner):
    return execution_create(name=monitor.name, created_by=owner, monitor=monitor, channel=ChangeChannel.API)


def change(execution, status, **fields):
    execution_change_status(execution_id=execution.id, status=status, channel=ChangeChannel.API, **fields)


def end_run(execution, status, **fields):
    change(execution, status, **fields)
    monitors_follow_runs()


@pytest.fixture
def monitor(owner):
    return monitor_for(owner, schedule="every 1h", grace_seconds=300)


def test_a_new_monitor_is_due_one_period_from_its_creation(monitor):
    assert monitor.state == MonitorState.NEW
    assert monitor.next_due_at == monitor.created_at + timedelta(hours=1)
    assert monitor.late_after == monitor.next_due_at + timedelta(minutes=5)
    assert history(monitor) == []


def test_a_runs_start_makes_a_new_monitor_up_and_moves_when_it_is_due(monitor, owner):
    run = start_run(monitor, owner)

    monitor.refresh_from_db()
    assert monitor.state == MonitorState.UP
    assert monitor.last_execution_id == run.id
    assert monitor.next_due_at == run.created_at + timedelta(hours=1)
    assert monitor.late_after == run.created_at + timedelta(hours=1, minutes=5)
    change = MonitorStateChange.objects.get(monitor=monitor)
    assert (change.previous_state, change.new_state, change.reason) == ("new", "up", None)
    assert (change.execution_id, change.actor, change.channel) == (run.id, owner, "api")


@FOLLOWS_THE_FEED
def test_a_success_is_up_a_failure_is_down_failed_and_the_next_success_recovers(monitor, owner):
    end_run(start_run(monitor, owner), ExecutionStatus.FAILED, error_info={"exit_code": 1})
    monitor.refresh_from_db()
    assert (monitor.state, monitor.state_reason) == ("down", "failed")

    end_run(start_run(monitor, owner), ExecutionStatus.COMPLETED)
    monitor.refresh_from_db()
    assert (monitor.state, monitor.state_reason) == ("up", None)
    assert history(monitor) == [("new", "up", None), ("up", "down", "failed"), ("down", "up", None)]


@FOLLOWS_THE_FEED
def test_an_interrupted_run_is_a_failure_and_a_cancelled_one_is_neither(monitor, owner):
    end_run(start_run(monitor, owner), ExecutionStatus.CANCELLED)
    monitor.refresh_from_db()
    assert monitor.state == MonitorState.UP

    interrupted = start_run(monitor, owner)
    execution_change_status_bulk(
        executions=Execution.objects.filter(pk=interrupted.pk),
        status=ExecutionStatus.INTERRUPTED,
        channel=ChangeChannel.COMMAND,
    )
    monitors_follow_runs()
    monitor.refresh_from_db()
    assert (monitor.state, monitor.state_reason) == ("down", "failed")
    last = MonitorStateChange.objects.filter(monitor=monitor).latest("id")
    assert (last.execution_id, last.channel, last.actor) == (interrupted.id, "command", None)


@FOLLOWS_THE_FEED
def test_run_ends_are_applied_once_and_in_order(monitor, owner):
    first, second = start_run(monitor, owner), start_run(monitor, owner)
    change(first, ExecutionStatus.FAILED)
    change(second, ExecutionStatus.COMPLETED)

    assert monitors_follow_runs() == FOLLOW_RUNS_EVERY
    assert monitors_follow_runs() == FOLLOW_RUNS_EVERY

    monitor.refresh_from_db()
    assert monitor.state == MonitorState.UP
    assert history(monitor) == [("new", "up", None), ("up", "down", "failed"), ("down", "up", None)]


@FOLLOWS_THE_FEED
def test_a_full_batch_of_run_ends_asks_to_be_called_again_at_once(monitor, owner):
    for _ in range(3):
        change(start_run(monitor, owner), ExecutionStatus.COMPLETED)

    assert monitors_follow_runs(batch_size=2) == 0
    assert monitors_follow_runs(batch_size=2) == FOLLOW_RUNS_EVERY


@FOLLOWS_THE_FEED
def test_changes_of_executions_without_a_monitor_move_nothing(monitor, owner):
    change(execution_create(name="plain", created_by=owner), ExecutionStatus.FAILED)

    monitors_follow_runs()

    monitor.refresh_from_db()
    assert monitor.state == MonitorState.NEW
    assert history(monitor) == []


def test_a_late_monitor_goes_down_missed_once(monitor):
    before = monitors_mark_missed(now=monitor.late_after - timedelta(seconds=1))
    assert before == pytest.approx(1.0)

    assert monitors_mark_missed(now=monitor.late_after) is None
    assert monitors_mark_missed(now=monitor.late_after + timedelta(hours=1)) is None

    monitor.refresh_from_db()
    assert (monitor.state, monitor.state_reason) == ("down", "missed")
    change = MonitorStateChange.objects.get(monitor=monitor)
    assert (change.previous_state, change.new_state, change.reason, change.channel) == (
        "new",
        "down",
        "missed",
        "worker",
    )
    assert change.actor is None and change.execution is None


def test_a_start_before_the_late_moment_keeps_it_up(monitor, owner):
    # Created half an hour ago: late 35 minutes from now, unless a run starts.
    half_an_hour = timedelta(minutes=30)
    Monitor.objects.filter(pk=monitor.pk).update(late_after=monitor.late_after - half_an_hour)
    run = start_run(monitor, owner)

    monitors_mark_missed(now=monitor.late_after - half_an_hour + timedelta(seconds=1))

    monitor.refresh_from_db()
    assert monitor.state == MonitorState.UP
    assert monitor.late_after == run.created_at + timedelta(hours=1, minutes=5)


@FOLLOWS_THE_FEED
def test_a_down_monitor_stays_down_when_a_run_starts_and_a_failure_after_a_miss_is_recorded(monitor, owner):
    monitors_mark_missed(now=monitor.late_after)
    run = start_run(monitor, owner)
    monitor.refresh_from_db()
    assert (monitor.state, monitor.state_reason) == ("down", "missed")

    end_run(run, ExecutionStatus.FAILED)

    assert history(monitor) == [("new", "down", "missed"), ("down", "down", "failed")]


def test_mark_missed_returns_the_seconds_until_the_next_late_monitor(owner):
    soon = monitor_for(owner, name="soon", schedule="every 1m", grace_seconds=0)
    monitor_for(owner, name="later", schedule="every 1h", grace_seconds=0)

    assert monitors_mark_missed(now=soon.late_after - timedelta(seconds=20)) == pytest.approx(20.0)


def test_the_watch_takes_late_monitors_in_batches(owner):
    monitors = [monitor_for(owner, name=f"m{i}", schedule="every 1m", grace_seconds=0) for i in range(5)]
    later = max(monitor.late_after for monitor in monitors)

    monitors_mark_missed(now=later, batch_size=2)

    assert Monitor.objects.filter(state=MonitorState.DOWN).count() == 5
    assert MonitorStateChange.objects.count() == 5


@FOLLOWS_THE_FEED
def test_pause_stops_watching_and_resume_starts_afresh_as_new(monitor, owner):
    actor = Actor(owner, ChangeChannel.API, "req-1")
    monitor_update(monitor_id=monitor.id, changes={"paused": True}, actor=actor)
    monitor.refresh_from_db()
    assert (monitor.state, monitor.late_after) == ("paused", None)

    monitors_mark_missed(now=timezone.now() + timedelta(days=2))
    end_run(start_run(monitor, owner), ExecutionStatus.FAILED)
    monitor.refresh_from_db()
    assert monitor.state == MonitorState.PAUSED

    monitor_update(monitor_id=monitor.id, changes={"paused": False}, actor=actor)
    monitor.refresh_from_db()
    assert monitor.state == MonitorState.NEW
    assert monitor.late_after > timezone.now() + timedelta(minutes=59)
    assert history(monitor) == [("new", "paused", None), ("paused", "new", None)]
    assert {change.correlation_id for change in MonitorStateChange.objects.all()} == {"req-1"}


def test_a_new_schedule_counts_from_the_last_start_but_never_makes_it_late_at_once(monitor, owner):
    run = start_run(monitor, owner)
    actor = Actor(owner, ChangeChannel.API)

    monitor = monitor_update(monitor_id=monitor.id, changes={"schedule": "every 2h"}, actor=actor)
    assert monitor.next_due_at == run.created_at + timedelta(hours=2)

    Execution.objects.filter(pk=run.pk).update(created_at=run.created_at - timedelta(days=1))
    Monitor.objects.filter(pk=monitor.pk).update(schedule_from=run.created_at - timedelta(days=1))
    before = timezone.now()
    monitor = monitor_update(monitor_id=monitor.id, changes={"grace_seconds": 10}, actor=actor)
    assert monitor.next_due_at >= before + timedelta(hours=2)
    assert monitor.late_after == monitor.next_due_at + timedelta(seconds=10)


def test_deleting_a_monitor_keeps_its_runs(monitor, owner):
    run = start_run(monitor, owner)

    monitor_delete(monitor_id=monitor.id)

    run.refresh_from_db()
    assert run.monitor_id is None
    assert not MonitorStateChange.objects.exists()


@FOLLOWS_THE_FEED
def test_the_purge_deletes_old_runs_that_monitors_and_their_records_name(monitor, owner):
    run = start_run(monitor, owner)
    end_run(run, ExecutionStatus.FAILED)

    result = executions_purge_finished(finished_before=timezone.now() + timedelta(seconds=1), batch_size=10)

    assert result.executions == 1
    monitor.refresh_from_db()
    assert monitor.last_execution is None
    assert set(MonitorStateChange.objects.values_list("execution", flat=True)) == {None}


@pytest.mark.parametrize(
    ("state", "reason", "status", "expected"),
    [
        ("new", None, "completed", ("up", None)),
        ("up", None, "completed", None),
        ("down", "missed", "completed", ("up", None)),
        ("down", "failed", "completed", ("up", None)),
        ("new", None, "failed", ("down", "failed")),
        ("up", None, "failed", ("down", "failed")),
        ("up", None, "interrupted", ("down", "failed")),
        ("down", "missed", "failed", ("down", "failed")),
        ("down", "failed", "failed", None),
        ("up", None, "cancelled", None),
        ("down", "failed", "cancelled", None),
        ("paused", None, "completed", None),
        ("paused", None, "failed", None),
    ],
)
def test_the_rule_for_a_runs_end(state, reason, status, expected):
    assert state_after_run_end(state, reason, status) == expected


def test_two_owners_may_use_one_name():
    monitor_for(UserFactory(username="a"), name="same")
    monitor_for(UserFactory(username="b"), name="same")

    assert Monitor.objects.filter(name="same").count() == 2


def test_a_run_takes_its_monitors_max_runtime_unless_it_gives_its_own(owner):
    monitor = monitor_for(owner, max_runtime_seconds=600)

    inherited = execution_create(name="a", created_by=owner, monitor=monitor)
    own = execution_create(name="b", created_by=owner, monitor=monitor, max_runtime_seconds=5)

    assert inherited.max_runtime_seconds == 600
    assert inherited.deadline_at == inherited.created_at + timedelta(seconds=600)
    assert own.max_runtime_seconds == 5


@FOLLOWS_THE_FEED
def test_a_run_past_its_deadline_is_a_failure_of_its_monitor(owner):
    from executions.services import executions_fail_past_deadline

    monitor = monitor_for(owner, max_runtime_seconds=60)
    run = start_run(monitor, owner)

    executions_fail_past_deadline(now=run.deadline_at + timedelta(seconds=1), detected_by="tests")
    monitors_follow_runs()

    monitor.refresh_from_db()
    assert (monitor.state, monitor.state_reason) == ("down", "failed")
    last = MonitorStateChange.objects.filter(monitor=monitor).latest("id")
    assert (last.execution_id, last.channel) == (run.id, "worker")
