"""The outbox, filled from the audit feed: every channel's changes become messages for the
endpoints that want them and may see them, each change once, a rolled-back one never.

Committed transactions (transaction=True): on PostgreSQL the feed serves only what every
running transaction is newer than, and a test's own open transaction would hold it all."""

import threading
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from executions.models import (
    ChangeChannel,
    Execution,
    ExecutionStatus,
    ExecutionStatusChange,
    MonitorStateChange,
    NotificationEndpoint,
    NotificationFeedPosition,
    NotificationMessage,
)
from executions.monitors.services import monitor_create, monitors_follow_runs, monitors_mark_missed
from executions.notifications.fanout import (
    fan_out_execution_changes,
    fan_out_monitor_changes,
    monitor_event_type,
    notifications_fan_out,
)
from executions.notifications.services import InvalidEndpoint, notification_endpoint_create
from executions.services import (
    execution_change_status,
    execution_change_status_bulk,
    execution_create,
    executions_interrupt_stale,
)
from tests.api import patch_status
from tests.factories import ExecutionFactory, UserFactory
from tests.test_api_status_changes import HeldTransaction

pytestmark = pytest.mark.django_db(transaction=True)

ALL_EXECUTION_EVENTS = [
    "execution.completed",
    "execution.failed",
    "execution.cancelled",
    "execution.interrupted",
]


def endpoint_of(owner, events=ALL_EXECUTION_EVENTS, **fields):
    return notification_endpoint_create(
        owner=owner, kind="webhook", url="http://127.0.0.1:9/hook", events=events, **fields
    )


def fan_out_all():
    while fan_out_execution_changes(batch_size=1000):
        pass


def messages_of(endpoint):
    return list(NotificationMessage.objects.filter(endpoint=endpoint).order_by("id"))


def change(execution, status=ExecutionStatus.FAILED, **fields):
    execution_change_status(execution_id=execution.id, status=status, channel=ChangeChannel.API, **fields)


def test_every_channel_notifies(client_for):
    """The API, an admin action, the cleanup command and the worker's service: each writes
    the audit record, so each change reaches the endpoint, with its channel."""
    owner = UserFactory(username="alice")
    operator = UserFactory(
        username="operator",
        is_staff=True,
        permissions=["view_execution", "change_execution", "manage_all_executions"],
    )
    endpoint = endpoint_of(owner)
    by_api, by_admin, by_command, by_worker = ExecutionFactory.create_batch(4, created_by=owner)

    assert patch_status(client_for(owner), by_api, "cancelled").status_code == 200
    admin = Client()
    admin.force_login(operator)
    admin.post(
        "/admin/executions/execution/",
        {"action": "cancel_selected", "index": 0, ACTION_CHECKBOX_NAME: [str(by_admin.pk)]},
    )
    long_ago = timezone.now() - timedelta(days=1)
    Execution.objects.filter(pk__in=[by_command.pk, by_worker.pk]).update(created_at=long_ago)
    call_command("cleanup_stale_executions", "--older-than", "1h", "--name", by_command.name, stdout=None)
    executions_interrupt_stale(
        stale_after=timedelta(hours=1),
        detected_by="worker",
        channel=ChangeChannel.COMMAND,
        name=by_worker.name,
    )

    fan_out_all()
    received = {(m.subject_id, m.event_type, m.payload["channel"]) for m in messages_of(endpoint)}
    assert received == {
        (str(by_api.id), "execution.cancelled", "api"),
        (str(by_admin.id), "execution.cancelled", "admin"),
        (str(by_command.id), "execution.interrupted", "command"),
        (str(by_worker.id), "execution.interrupted", "command"),
    }


def test_the_message_carries_the_change_and_the_execution(settings):
    settings.EXECUTIONS_PUBLIC_URL = "https://runs.example.com"
    owner = UserFactory(username="alice")
    endpoint = endpoint_of(owner)
    execution = ExecutionFactory(created_by=owner, name="nightly-report", metadata={"shard": 3})
    change(execution, error_info={"reason": "exit 2"}, actor=owner, correlation_id="req-9")

    fan_out_all()
    [message] = messages_of(endpoint)
    record = ExecutionStatusChange.objects.get(execution=execution)
    assert message.event_type == "execution.failed"
    assert message.state == "pending" and message.attempts == 0
    assert message.webhook_id.startswith("msg_")
    assert message.occurred_at == record.created_at
    assert message.payload == {
        "id": str(execution.id),
        "name": "nightly-report",
        "owner": "alice",
        "previous_status": "running",
        "current_status": "failed",
        "error_info": {"reason": "exit 2"},
        "metadata": {"shard": 3},
        "actor": "alice",
        "channel": "api",
        "correlation_id": "req-9",
        "changed_at": record.created_at.isoformat(),
        "change_id": record.id,
        "links": {
            "execution": f"https://runs.example.com/api/v1/executions/{execution.id}",
            "history": f"https://runs.example.com/api/v1/executions/{execution.id}/history",
            "admin": f"https://runs.example.com/admin/executions/execution/{execution.id}/change/",
        },
        "truncated": [],
    }


def test_an_endpoint_gets_only_its_events_and_its_name_prefix():
    owner = UserFactory(username="alice")
    failures = endpoint_of(owner, events=["execution.failed"])
    nightly = endpoint_of(owner, name_prefix="nightly-")
    failed = ExecutionFactory(created_by=owner, name="nightly-a")
    completed = ExecutionFactory(created_by=owner, name="nightly-b")
    other_name = ExecutionFactory(created_by=owner, name="hourly-c")
    change(failed, ExecutionStatus.FAILED)
    change(completed, ExecutionStatus.COMPLETED)
    change(other_name, ExecutionStatus.FAILED)

    fan_out_all()
    assert {m.subject_id for m in messages_of(failures)} == {str(failed.id), str(other_name.id)}
    assert {m.subject_id for m in messages_of(nightly)} == {str(failed.id), str(completed.id)}


def test_an_endpoint_sees_only_what_its_owner_may_see():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    manager = UserFactory(username="manager", permissions=["manage_all_executions"])
    root = UserFactory(username="root", is_superuser=True)
    gone = UserFactory(username="gone")
    endpoints = {user.username: endpoint_of(user) for user in (alice, bob, manager, root, gone)}
    gone.is_active = False
    gone.save()
    alices, bobs = ExecutionFactory(created_by=alice), ExecutionFactory(created_by=bob)
    change(alices)
    change(bobs)

    fan_out_all()
    seen = {name: {m.subject_id for m in messages_of(endpoint)} for name, endpoint in endpoints.items()}
    assert seen == {
        "alice": {str(alices.id)},
        "bob": {str(bobs.id)},
        "manager": {str(alices.id), str(bobs.id)},
        "root": {str(alices.id), str(bobs.id)},
        "gone": set(),
    }


def test_a_disabled_endpoint_and_one_made_after_the_change_get_nothing():
    owner = UserFactory(username="alice")
    disabled = endpoint_of(owner)
    NotificationEndpoint.objects.filter(pk=disabled.pk).update(enabled=False)
    execution = ExecutionFactory(created_by=owner)
    change(execution)
    later = endpoint_of(owner)

    fan_out_all()
    assert messages_of(disabled) == [] and messages_of(later) == []


def test_each_change_is_fanned_out_once_in_batches_and_the_position_follows():
    owner = UserFactory(username="alice")
    endpoint = endpoint_of(owner)
    executions = ExecutionFactory.create_batch(25, created_by=owner)
    execution_change_status_bulk(
        executions=Execution.objects.filter(created_by=owner), status="completed", channel=ChangeChannel.ADMIN
    )

    reads = [fan_out_execution_changes(batch_size=10) for _ in range(4)]
    assert reads == [10, 10, 5, 0]
    assert fan_out_execution_changes(batch_size=10) == 0
    subjects = [m.subject_id for m in messages_of(endpoint)]
    assert sorted(subjects) == sorted(str(e.id) for e in executions)
    last = ExecutionStatusChange.objects.order_by("-transaction_id", "-id").first()
    position = NotificationFeedPosition.objects.get(feed="execution_status_changes")
    assert (position.transaction_id, position.change_id) == (last.transaction_id, last.id)


def test_the_worker_task_says_when_more_is_waiting(settings):
    settings.WORKER_BATCH_SIZE = 3
    owner = UserFactory(username="alice")
    endpoint_of(owner)
    for execution in ExecutionFactory.create_batch(4, created_by=owner):
        change(execution)
    now = timezone.now()
    assert notifications_fan_out(now) == 0  # a full batch: call again at once
    assert 0 < notifications_fan_out(now) <= 1  # the rest; then poll
    assert NotificationMessage.objects.count() == 4


def test_changes_without_any_endpoint_move_the_position_and_are_never_sent_later():
    owner = UserFactory(username="alice")
    before = ExecutionFactory(created_by=owner)
    change(before)
    fan_out_all()
    endpoint = endpoint_of(owner)
    after = ExecutionFactory(created_by=owner)
    change(after)
    fan_out_all()
    assert [m.subject_id for m in messages_of(endpoint)] == [str(after.id)]


def test_two_workers_fanning_out_at_once_make_each_message_once():
    """Four threads (four workers, each its own connection) fan out 200 changes at once,
    in batches of 7: the position's compare-and-set lets one of them take each batch."""
    owner = UserFactory(username="alice")
    endpoint = endpoint_of(owner)
    ExecutionFactory.create_batch(200, created_by=owner)
    execution_change_status_bulk(
        executions=Execution.objects.filter(created_by=owner), status="failed", channel=ChangeChannel.ADMIN
    )
    start = threading.Barrier(4)
    errors = []

    def worker():
        try:
            start.wait()
            idle = 0
            while idle < 3:
                idle = 0 if fan_out_execution_changes(batch_size=7) else idle + 1
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    subjects = [m.subject_id for m in messages_of(endpoint)]
    assert len(subjects) == 200 and len(set(subjects)) == 200


@pytest.mark.postgres_only
def test_a_change_committed_late_is_fanned_out_and_a_rolled_back_one_never():
    """A change whose transaction took its id early and commits after later changes were
    fanned out is still fanned out (the feed's xmin guard); a change that rolls back never."""
    owner = UserFactory(username="alice")
    endpoint = endpoint_of(owner)
    held_execution, doomed, others = (
        ExecutionFactory(created_by=owner),
        ExecutionFactory(created_by=owner),
        ExecutionFactory.create_batch(3, created_by=owner),
    )
    held = HeldTransaction(lambda: change(held_execution, ExecutionStatus.COMPLETED))
    held.next()  # written, not committed

    def change_then_fail():
        change(doomed)
        raise RuntimeError("rolled back")

    rolled_back = HeldTransaction(change_then_fail)
    with pytest.raises(RuntimeError):
        rolled_back.next()
    rolled_back.thread.join()
    for execution in others:
        change(execution)
        fan_out_all()
    assert {m.subject_id for m in messages_of(endpoint)} == set()  # held back behind the open one
    held.commit()
    fan_out_all()
    subjects = [m.subject_id for m in messages_of(endpoint)]
    assert subjects[0] == str(held_execution.id)
    assert sorted(subjects) == sorted(str(e.id) for e in [held_execution, *others])


# --- Monitors ------------------------------------------------------------------------------


MONITOR_EVENTS = ["monitor.down", "monitor.up"]


def monitor_of(owner, name="nightly"):
    return monitor_create(owner=owner, name=name, schedule="every 1h", grace_seconds=60)


def test_a_monitor_that_goes_down_and_recovers_tells_its_endpoints(settings):
    settings.EXECUTIONS_PUBLIC_URL = "https://runs.example.com"
    owner = UserFactory(username="alice")
    endpoint = endpoint_of(owner, events=MONITOR_EVENTS)
    monitor = monitor_of(owner)
    monitors_mark_missed(now=timezone.now() + timedelta(days=1))  # new -> down, missed
    run = execution_create(name="nightly", created_by=owner, monitor=monitor)
    change(run, ExecutionStatus.COMPLETED)
    monitors_follow_runs()  # down -> up

    fan_out_all()
    while fan_out_monitor_changes():
        pass
    down, up = messages_of(endpoint)
    assert (down.event_type, up.event_type) == ("monitor.down", "monitor.up")
    assert down.subject_id == up.subject_id == str(monitor.id)
    record = MonitorStateChange.objects.get(new_state="down")
    links = down.payload.pop("links")
    assert links["monitor"] == f"https://runs.example.com/api/v1/monitors/{monitor.id}"
    assert links["history"] == f"https://runs.example.com/api/v1/monitors/{monitor.id}/history"
    assert set(links) <= {"monitor", "history", "admin"}  # the admin page, where monitors have one
    assert down.payload == {
        "id": str(monitor.id),
        "name": "nightly",
        "owner": "alice",
        "previous_state": "new",
        "current_state": "down",
        "reason": "missed",
        "run": None,
        "actor": None,
        "channel": "worker",
        "correlation_id": None,
        "changed_at": record.created_at.isoformat(),
        "change_id": record.id,
        "truncated": [],
    }
    assert up.payload["run"] == str(run.id) and up.payload["previous_state"] == "down"


def test_a_monitor_endpoint_gets_only_its_monitor_and_what_its_owner_sees():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    nightly, hourly = monitor_of(alice, "nightly"), monitor_of(alice, "hourly")
    only_nightly = endpoint_of(alice, events=["monitor.down"], monitor=nightly)
    every_monitor = endpoint_of(alice, events=["monitor.down"])
    bobs = endpoint_of(bob, events=MONITOR_EVENTS)
    first_run = execution_create(name="nightly", created_by=alice, monitor=nightly)  # new -> up: no event
    change(first_run, ExecutionStatus.FAILED)
    monitors_mark_missed(now=timezone.now() + timedelta(days=1))  # hourly: new -> down
    monitors_follow_runs()  # nightly: up -> down, failed

    while fan_out_monitor_changes():
        pass
    assert [m.subject_id for m in messages_of(only_nightly)] == [str(nightly.id)]
    assert sorted(m.subject_id for m in messages_of(every_monitor)) == sorted(
        [str(nightly.id), str(hourly.id)]
    )
    assert messages_of(bobs) == []


def test_an_endpoint_cannot_name_a_monitor_its_owner_does_not_see():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    with pytest.raises(InvalidEndpoint, match="no such monitor") as refused:
        endpoint_of(bob, events=MONITOR_EVENTS, monitor=monitor_of(alice))
    assert refused.value.field == "monitor"


@pytest.mark.parametrize(
    ("previous", "new", "event"),
    [
        ("new", "down", "monitor.down"),
        ("up", "down", "monitor.down"),
        ("down", "down", None),  # only the reason changed: still down
        ("down", "up", "monitor.up"),
        ("new", "up", None),  # a first run: it was never down
        ("up", "paused", None),
        ("down", "paused", None),
        ("paused", "new", None),
    ],
)
def test_which_state_changes_are_events(previous, new, event):
    assert monitor_event_type(previous, new) == event
