"""Every service that writes queues for SQLite's writer lock (executions/db/sqlite3): its
INSERTs, UPDATEs and DELETEs run while the connection holds the lock, because they run in
db.statements.write_transaction(). A write that forgets it skips the queue and waits in
SQLite's busy handler instead, which is what made throughput fall as writers were added.

A spy on the connection checks, statement by statement, that the lock is held whenever one
writes; and the list of writing services is checked against the services modules, so a new
public function there must be classified here (a writer, with a call that exercises it, or
a reader) before the suite passes."""

import inspect
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from executions import services, tokens
from executions.models import (
    ApiToken,
    ChangeChannel,
    Execution,
    IdempotencyKey,
    MessageState,
    NotificationEndpoint,
    NotificationMessage,
)
from executions.monitors import services as monitors
from executions.notifications import deletion, delivery, fanout
from executions.notifications import services as notification_services
from executions.notifications.transports import Answer
from executions.retention import notifications as notification_retention
from executions.retention import purge

from .factories import ExecutionFactory, UserFactory
from .test_sqlite_writer_queue import queue_is_free

pytestmark = [pytest.mark.django_db(transaction=True)]

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "WITH")
# The modules of services, by the label their functions have below.
MODULES = {
    "services": services,
    "tokens": tokens,
    "purge": purge,
    "monitors": monitors,
    "notifications.services": notification_services,
    "notifications.fanout": fanout,
    "notifications.delivery": delivery,
    "notifications.retention": notification_retention,
    "notifications.deletion": deletion,
}
# Public functions of those modules that never write.
READERS = {
    "tokens.key_hash",
    "tokens.user_for_key",
    "purge.idempotency_keys_expired",
    "purge.executions_finished_before",
    "monitors.state_after_run_end",
    "purge.executions_with_history",
    "notifications.services.check_endpoint_fields",
    "notifications.delivery.earliest_pending_of_its_subject",
    "notifications.delivery.secrets_in_use",
    "notifications.delivery.look_for_new_messages",
    "notifications.fanout.monitor_event_type",
    "notifications.delivery.tell_owner_endpoint_disabled",  # reads, then sends an email
    "notifications.retention.notification_messages_expired",
}


@pytest.fixture(autouse=True)
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: the writer lock is part of the SQLite backend")


def _long_ago(**kwargs):
    return timezone.now() - timedelta(days=400, **kwargs)


def _finished_long_ago():
    execution = ExecutionFactory()
    services.execution_change_status(
        execution_id=execution.pk, status="failed", channel=ChangeChannel.COMMAND
    )
    Execution.objects.filter(pk=execution.pk).update(finished_at=_long_ago())
    return execution


# name -> a call that makes the service write (what it needs is made before the spy starts).
WRITERS = {
    "services.execution_create": lambda ctx: services.execution_create(name="new", created_by=ctx["user"]),
    "services.execution_create_idempotent": lambda ctx: services.execution_create_idempotent(
        idempotency_key="k-1",
        request_fingerprint="f",
        name="new",
        created_by=ctx["user"],
        response_body=lambda execution: {"id": str(execution.pk)},
    ),
    "services.execution_change_status": lambda ctx: services.execution_change_status(
        execution_id=ctx["running"].pk, status="cancelled", channel=ChangeChannel.API, actor=ctx["user"]
    ),
    "services.execution_change_status_bulk": lambda ctx: services.execution_change_status_bulk(
        executions=Execution.objects.filter(pk=ctx["running"].pk),
        status="failed",
        channel=ChangeChannel.ADMIN,
    ),
    "services.execution_heartbeat": lambda ctx: services.execution_heartbeat(execution_id=ctx["running"].pk),
    "services.executions_interrupt_stale": lambda ctx: services.executions_interrupt_stale(
        stale_after=timedelta(minutes=1),
        detected_by="tests",
        channel=ChangeChannel.COMMAND,
        now=timezone.now() + timedelta(hours=1),
    ),
    "services.executions_fail_past_deadline": lambda ctx: services.executions_fail_past_deadline(
        now=timezone.now(), detected_by="tests"
    ),
    "tokens.token_create": lambda ctx: tokens.token_create(user=ctx["user"], name="new"),
    "tokens.token_save_new": lambda ctx: tokens.token_save_new(ApiToken(user=ctx["user"], name="new")),
    "tokens.tokens_revoke": lambda ctx: tokens.tokens_revoke(ApiToken.objects.filter(user=ctx["user"])),
    "tokens.token_rotate": lambda ctx: tokens.token_rotate(user=ctx["user"]),
    "tokens.token_mark_used": lambda ctx: tokens.token_mark_used(ctx["token"].pk, timezone.now()),
    "purge.executions_purge_finished": lambda ctx: purge.executions_purge_finished(
        finished_before=_long_ago(seconds=-60)
    ),
    # With an archive, SQLite reads and archives a batch before it takes the lock: the
    # DELETEs still run under it.
    "purge.executions_purge_finished (archived)": lambda ctx: purge.executions_purge_finished(
        finished_before=_long_ago(seconds=-60), archive=lambda lines: ctx.setdefault("archived", list(lines))
    ),
    "purge.idempotency_keys_purge_expired": lambda ctx: purge.idempotency_keys_purge_expired(),
    "notifications.services.notification_endpoint_create": lambda ctx: (
        notification_services.notification_endpoint_create(
            owner=ctx["user"], kind="email", emails=["a@example.com"], events=["execution.failed"]
        )
    ),
    "notifications.services.notification_endpoint_update": lambda ctx: (
        notification_services.notification_endpoint_update(ctx["endpoint"], name_prefix="nightly-")
    ),
    "notifications.services.notification_endpoint_set_enabled": lambda ctx: (
        notification_services.notification_endpoint_set_enabled(ctx["endpoint"], False)
    ),
    "notifications.services.notification_endpoint_rotate_secret": lambda ctx: (
        notification_services.notification_endpoint_rotate_secret(ctx["endpoint"])
    ),
    "notifications.services.notification_endpoint_send_test": lambda ctx: (
        notification_services.notification_endpoint_send_test(ctx["endpoint"])
    ),
    "notifications.services.notification_message_replay": lambda ctx: (
        notification_services.notification_message_replay(ctx["failed_message"])
    ),
    "notifications.services.notification_messages_replay_failed": lambda ctx: (
        notification_services.notification_messages_replay_failed(ctx["endpoint"], since=_long_ago())
    ),
    "notifications.fanout.fan_out_execution_changes": lambda ctx: fanout.fan_out_execution_changes(),
    "notifications.fanout.notifications_fan_out": lambda ctx: fanout.notifications_fan_out(timezone.now()),
    "notifications.fanout.fan_out_monitor_changes": lambda ctx: fanout.fan_out_monitor_changes(),
    "notifications.delivery.NotificationDelivery": lambda ctx: _deliver_one(),
    "notifications.deletion.notification_endpoint_delete": lambda ctx: deletion.notification_endpoint_delete(
        ctx["endpoint"]
    ),
    "notifications.retention.notification_messages_purge_expired": lambda ctx: (
        notification_retention.notification_messages_purge_expired()
    ),
    "monitors.monitor_create": lambda ctx: monitors.monitor_create(
        owner=ctx["user"], name="new", schedule="every 1h", grace_seconds=60
    ),
    "monitors.monitor_update": lambda ctx: monitors.monitor_update(
        monitor_id=ctx["monitor"].pk, changes={"paused": True}, actor=monitors.Actor(ctx["user"])
    ),
    "monitors.monitor_delete": lambda ctx: monitors.monitor_delete(monitor_id=ctx["monitor"].pk),
    "monitors.monitor_record_start": lambda ctx: services.execution_create(
        name="run", created_by=ctx["user"], monitor=ctx["monitor"]
    ),
    "monitors.monitors_follow_runs": lambda ctx: monitors.monitors_follow_runs(),
    "monitors.monitors_mark_missed": lambda ctx: monitors.monitors_mark_missed(
        now=timezone.now() + timedelta(days=1)
    ),
}


def _deliver_one():
    """The delivery's claim, then the record of its answer (a transport that answers 200)."""
    task = delivery.NotificationDelivery(send=lambda client, outgoing: Answer(True, 200))
    task(timezone.now())
    while task.in_flight:
        task(timezone.now())


def _notification_context(user) -> dict:
    """An email endpoint (no network), a failed message and one finished long ago."""
    endpoint = NotificationEndpoint.objects.create(
        owner=user, kind="email", emails=["a@example.com"], events=["execution.failed"]
    )

    def message(**fields):
        return NotificationMessage.objects.create(
            endpoint=endpoint, event_type="execution.failed", occurred_at=timezone.now(), payload={}, **fields
        )

    message(subject_id="due")
    message(subject_id="old", state=MessageState.DELIVERED, finished_at=_long_ago())
    return {"endpoint": endpoint, "failed_message": message(subject_id="x", state=MessageState.FAILED)}


def _public_functions():
    for short, module in MODULES.items():
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == module.__name__ and not name.startswith("_"):
                yield f"{short}.{name}"


def test_every_public_service_function_is_classified_as_a_writer_or_a_reader():
    unclassified = set(_public_functions()) - set(WRITERS) - READERS
    assert not unclassified, f"add to WRITERS (with a call) or READERS: {sorted(unclassified)}"


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_write_of_every_service_runs_holding_the_writer_lock(writer):
    user = UserFactory(username="writer")
    token, _ = tokens.token_create(user=user, name="existing")
    running = ExecutionFactory(created_by=user)
    ExecutionFactory(created_by=user, last_heartbeat_at=_long_ago())  # stale
    ExecutionFactory(created_by=user, max_runtime_seconds=60, deadline_at=_long_ago())  # overdue
    old = _finished_long_ago()
    IdempotencyKey.objects.create(
        user=user, key="old", request_fingerprint="f", execution=ExecutionFactory(), response_body={}
    )
    IdempotencyKey.objects.filter(key="old").update(created_at=_long_ago())
    monitor = monitors.monitor_create(owner=user, name="watched", schedule="every 1m", grace_seconds=0)
    services.execution_change_status(
        execution_id=services.execution_create(name="run", created_by=user, monitor=monitor).pk,
        status="completed",
        channel=ChangeChannel.API,
    )
    context = {
        "user": user,
        "token": token,
        "running": running,
        "old": old,
        "monitor": monitor,
        **_notification_context(user),
    }

    writes, unqueued = [], []

    def spy(execute, sql, params, many, context_):
        if sql.lstrip().upper().startswith(WRITES):
            writes.append(sql)
            if queue_is_free():
                unqueued.append(sql)
        return execute(sql, params, many, context_)

    with connection.execute_wrapper(spy):
        WRITERS[writer](context)

    assert writes, f"{writer} wrote nothing: its call in WRITERS does not exercise it"
    assert not unqueued, f"{writer} wrote outside write_transaction(): {unqueued}"
