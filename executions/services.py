"""Writes to executions. Every status change, from the API, the admin or a command, goes
through `execution_change_status` or `execution_change_status_bulk`: one rule
(models.ALLOWED_TRANSITIONS), one compare-and-set, one audit record per change."""

import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F, Q, Value
from django.db.models.expressions import BaseExpression
from django.db.models.functions import Coalesce, JSONObject
from django.utils import timezone

from . import metrics
from .db.functions import UtcIsoformat
from .durations import format_duration
from .errors import (
    ExecutionNotFound,
    ExecutionNotRunning,
    IdempotencyKeyReused,
    InvalidStatusTransition,
    PreconditionFailed,
    UnknownMonitor,
)
from .models import (
    ChangeChannel,
    Execution,
    ExecutionStatus,
    ExecutionStatusChange,
    IdempotencyKey,
    Monitor,
    statuses_that_can_become,
)
from .monitors.services import Actor as MonitorActor
from .monitors.services import monitor_record_start
from .selectors import (
    ALL,
    Visibility,
    executions_in,
    executions_past_deadline,
    executions_stale,
    idempotency_key_get,
    parse_execution_id,
    visibility_of,
)
from .signals import execution_status_changed
from .statements import (
    change_batch_with_audit,
    compare_and_set,
    insert_audit_record,
    prepare_for_many_commits,
    write_transaction,
)


@dataclass(frozen=True)
class StatusChangeResult:
    execution_id: uuid.UUID
    success: bool
    previous_status: str
    current_status: str


@dataclass
class BulkStatusChangeResult:
    changed: int = 0
    skipped: int = 0
    batches: int = 0


def execution_create(
    *,
    name: str,
    created_by=None,
    metadata: dict | None = None,
    max_runtime_seconds: int | None = None,
    monitor: Monitor | None = None,
    channel: ChangeChannel = ChangeChannel.API,
    correlation_id: str = "",
) -> Execution:
    """A running execution. With `max_runtime_seconds`, its deadline is fixed now (creation
    plus that), and the worker fails it if it is still running then.

    With `monitor` (monitors.selectors.monitor_for_run), it is a run of that monitor: its
    creation is the run's start, in the same transaction (monitors.services.
    monitor_record_start), and without a max runtime of its own it takes the monitor's.
    Raises UnknownMonitor if the monitor was deleted meanwhile."""
    now = timezone.now()
    if monitor is None:
        with write_transaction(single_statement=True):
            return _create_execution(name, created_by, metadata, max_runtime_seconds, None, now)
    with write_transaction():
        locked = Monitor.objects.select_for_update().filter(pk=monitor.pk).values_list("max_runtime_seconds")
        row = locked.first()
        if row is None:
            raise UnknownMonitor(monitor.name)
        if max_runtime_seconds is None:
            max_runtime_seconds = row[0]
        execution = _create_execution(name, created_by, metadata, max_runtime_seconds, monitor.pk, now)
        monitor_record_start(
            monitor_id=monitor.pk,
            execution=execution,
            actor=MonitorActor(created_by, channel, correlation_id),
        )
    return execution


def _create_execution(name, created_by, metadata, max_runtime_seconds, monitor_id, now) -> Execution:
    deadline_at = None if max_runtime_seconds is None else now + timedelta(seconds=max_runtime_seconds)
    return Execution.objects.create(
        name=name,
        created_by=created_by,
        metadata=metadata or {},
        created_at=now,
        updated_at=now,
        max_runtime_seconds=max_runtime_seconds,
        deadline_at=deadline_at,
        monitor_id=monitor_id,
    )


@dataclass(frozen=True)
class IdempotentCreateResult:
    execution_id: uuid.UUID
    response_body: dict
    replayed: bool


def execution_create_idempotent(
    *,
    idempotency_key: str,
    request_fingerprint: str,
    name: str,
    created_by,
    metadata: dict | None = None,
    max_runtime_seconds: int | None = None,
    monitor: Monitor | None = None,
    channel: ChangeChannel = ChangeChannel.API,
    correlation_id: str = "",
    response_body: Callable[[Execution], dict],
) -> IdempotentCreateResult:
    """Create an execution once per (created_by, idempotency_key).

    The first call creates it and keeps `response_body(execution)`, the answer the caller
    gives, with the key. A later call with the same key and the same `request_fingerprint`
    creates nothing and returns that answer (`replayed=True`); with another fingerprint it
    raises IdempotencyKeyReused. Concurrent first calls create exactly one execution: the
    unique (user, key) constraint makes the losers wait for the winner's commit, roll back
    their own execution and answer the winner's.
    """

    def replay(existing: IdempotencyKey) -> IdempotentCreateResult:
        if existing.request_fingerprint != request_fingerprint:
            raise IdempotencyKeyReused()
        return IdempotentCreateResult(existing.execution_id, existing.response_body, True)

    with write_transaction():
        existing = idempotency_key_get(created_by, idempotency_key)
        if existing is not None:
            return replay(existing)
        try:
            with transaction.atomic():
                execution = execution_create(
                    name=name,
                    created_by=created_by,
                    metadata=metadata,
                    max_runtime_seconds=max_runtime_seconds,
                    monitor=monitor,
                    channel=channel,
                    correlation_id=correlation_id,
                )
                body = response_body(execution)
                IdempotencyKey.objects.create(
                    user=created_by,
                    key=idempotency_key,
                    request_fingerprint=request_fingerprint,
                    execution=execution,
                    response_body=body,
                )
        except IntegrityError:
            # Another request with this key committed first (its row is visible now: READ
            # COMMITTED reads again per statement).
            existing = idempotency_key_get(created_by, idempotency_key)
            if existing is None:
                raise
            return replay(existing)
    return IdempotentCreateResult(execution.id, body, False)


def _known_actor(actor):
    """The user to record as the actor: None for the system, and for an anonymous user."""
    return actor if actor is not None and actor.is_authenticated else None


def _audit_record(*, execution_id, previous_status, status, actor, channel, error_info, correlation_id, at):
    actor = _known_actor(actor)
    return ExecutionStatusChange(
        execution_id=execution_id,
        previous_status=previous_status,
        new_status=status,
        error_info=error_info,
        actor=actor,
        actor_username=actor.get_username() if actor is not None else "",
        channel=channel,
        correlation_id=correlation_id or "",
        created_at=at,
    )


def _after_commit(transitions: Counter, records: list[ExecutionStatusChange]) -> None:
    """Once the transaction commits: count the changes (`transitions`, by previous status,
    new status and channel) and send the signal for each of `records`."""

    def send():
        metrics.count_status_changes(transitions)
        for record in records:
            execution_status_changed.send(
                sender=Execution,
                execution_id=record.execution_id,
                previous_status=record.previous_status,
                new_status=record.new_status,
                error_info=record.error_info,
                actor=record.actor,
                channel=record.channel,
                correlation_id=record.correlation_id,
            )

    transaction.on_commit(send)


def _visibility(visible_to) -> Visibility:
    return Visibility(ALL) if visible_to is None else visibility_of(visible_to)


def _distinct_versions(expected_updated_at) -> list[datetime] | None:
    if expected_updated_at is None:
        return None
    if isinstance(expected_updated_at, datetime):
        return [expected_updated_at]
    return list(dict.fromkeys(expected_updated_at))


def execution_change_status(
    *,
    execution_id,
    status: str,
    channel: ChangeChannel,
    actor=None,
    error_info: dict | None = None,
    correlation_id: str = "",
    visible_to=None,
    expected_updated_at: datetime | Collection[datetime] | None = None,
) -> StatusChangeResult:
    """Move one execution to `status` if ALLOWED_TRANSITIONS lets it, atomically.

    `visible_to` is the user whose view applies (selectors.executions_visible_to); an
    execution outside it is not found. None: any execution (the system). Of any number of
    concurrent calls for one execution, exactly one succeeds. Asking for the status it
    already has is not an error: the result has `success=False` and nothing is written.
    Raises ExecutionNotFound or InvalidStatusTransition.

    `expected_updated_at` (one value or several) makes the change conditional on the
    execution's `updated_at` (the API's ETag): the condition is part of the same UPDATE, and
    when it does not hold nothing is written and PreconditionFailed is raised.
    """
    try:
        execution_id = parse_execution_id(execution_id)
    except ExecutionNotFound:
        metrics.count_refusal(metrics.REFUSED_NOT_FOUND, channel)
        raise
    visibility = _visibility(visible_to)
    expected_updated_at = _distinct_versions(expected_updated_at)
    now = timezone.now()
    changes = {"status": status, "finished_at": now, "updated_at": now}
    if error_info is not None:
        changes["error_info"] = error_info

    # On PostgreSQL the change and its audit record are one statement (statements.py);
    # SQLite has no UPDATE in a WITH: two statements in a transaction.
    one_statement = connection.vendor == "postgresql"
    with write_transaction(single_statement=True):
        for source in statuses_that_can_become(status):
            record = _audit_record(
                execution_id=execution_id,
                previous_status=source,
                status=status,
                actor=actor,
                channel=channel,
                error_info=error_info,
                correlation_id=correlation_id,
                at=now,
            )
            # The compare-and-set: the WHERE clause, not an earlier read, decides who wins.
            if one_statement:
                changed = compare_and_set(
                    visibility, execution_id, source, changes, expected_updated_at, record
                )
            else:
                changed = compare_and_set(visibility, execution_id, source, changes, expected_updated_at)
                if changed:
                    insert_audit_record(record)
            if changed:
                listened = execution_status_changed.has_listeners(Execution)
                _after_commit(Counter({(source, status, channel): 1}), [record] if listened else [])
                return StatusChangeResult(execution_id, True, source, status)

    # Nothing changed: one read tells why.
    row = executions_in(visibility).filter(pk=execution_id).values_list("status", "updated_at").first()
    if row is None:
        metrics.count_refusal(metrics.REFUSED_NOT_FOUND, channel)
        raise ExecutionNotFound()
    current, updated_at = row
    if expected_updated_at is not None and updated_at not in expected_updated_at:
        metrics.count_refusal(metrics.REFUSED_PRECONDITION_FAILED, channel)
        raise PreconditionFailed()
    if current == status:
        metrics.count_refusal(metrics.REFUSED_SAME_STATUS, channel)
        return StatusChangeResult(execution_id, False, current, current)
    metrics.count_refusal(metrics.REFUSED_INVALID_TRANSITION, channel)
    raise InvalidStatusTransition(current, status)


def execution_change_status_bulk(
    *,
    executions: models.QuerySet,
    status: str,
    channel: ChangeChannel,
    actor=None,
    error_info: dict | BaseExpression | None = None,
    correlation_id: str = "",
    batch_size: int | None = None,
    in_order_of: str | BaseExpression = "pk",
    limit: int | None = None,
    on_batch: Callable[[BulkStatusChangeResult], None] | None = None,
) -> BulkStatusChangeResult:
    """Move the executions of `executions` (what to change, within what the actor may act on)
    to `status`, one transaction per batch; those no longer in a status that may become
    `status` are skipped, never overwritten.

    Batches follow `in_order_of` (a field, or an expression with an index, then the id to
    break ties) and are named by their range of it, not by lists of ids: each is the next
    `batch_size` rows after the one before. Per batch, one statement locks, changes and
    copies the audit records on PostgreSQL (an UPDATE ... RETURNING feeding an INSERT); on
    SQLite, which holds the write lock from BEGIN IMMEDIATE, an INSERT ... SELECT then the
    UPDATE, over the same range. No row passes through Python. `error_info` is one object
    for all, or a query expression of the row (e.g. JSONObject(...)) that the database
    evaluates. `limit` caps how many executions the run takes on (changed or skipped).
    `on_batch` is called with the running totals after each committed batch.
    """
    sources = statuses_that_can_become(status)
    if not sources:
        raise ValueError(f"No status may become {status!r}")
    batch_size = batch_size or settings.EXECUTIONS_BULK_BATCH_SIZE
    keys = ("pk",) if in_order_of == "pk" else (in_order_of, "pk")
    walk_keys = {_walk_name(index): F(key) if isinstance(key, str) else key for index, key in enumerate(keys)}
    walk = executions.annotate(**walk_keys).order_by(*walk_keys)
    result = BulkStatusChangeResult()
    after = None
    while limit is None or result.changed + result.skipped < limit:
        size = batch_size if limit is None else min(batch_size, limit - result.changed - result.skipped)
        with write_transaction():
            remaining = walk if after is None else walk.filter(_beyond(after))
            last = remaining.values_list(*walk_keys)[size - 1 : size].first()
            # The batch's range comes first in its WHERE clause: SQLite bounds its index scan
            # by the first upper bound it finds, and the range's is the tight one.
            in_range = Execution.objects.annotate(**walk_keys)
            if after is not None:
                in_range = in_range.filter(_beyond(after))
            if last is not None:
                in_range = in_range.filter(_up_to(last))
            batch = in_range & executions
            taken = size if last is not None else batch.count()
            if not taken:
                break
            changed = sum(
                _change_batch(
                    batch.filter(status=source).order_by(*walk_keys),
                    source,
                    status,
                    channel,
                    actor,
                    error_info,
                    correlation_id,
                )
                for source in sources
            )
        result.changed += changed
        result.skipped += taken - changed
        result.batches += 1
        if on_batch is not None:
            on_batch(result)
        if last is None:
            break
        after = last
    return result


def _walk_name(index: int) -> str:
    return f"_walk_{index}"


def _beyond(values: tuple) -> Q:
    """Rows after `values` in the walk's order; the first key alone bounds the index range."""
    if len(values) == 1:
        return Q(_walk_0__gt=values[0])
    return Q(_walk_0__gte=values[0]) & (Q(_walk_0__gt=values[0]) | Q(_walk_1__gt=values[1]))


def _up_to(values: tuple) -> Q:
    """Rows up to `values` included, in the walk's order."""
    if len(values) == 1:
        return Q(_walk_0__lte=values[0])
    return Q(_walk_0__lte=values[0]) & (Q(_walk_0__lt=values[0]) | Q(_walk_1__lte=values[1]))


def _change_batch(batch, source, status, channel, actor, error_info, correlation_id) -> int:
    """Change the rows of `batch` (all in `source`) and copy their audit records; how many."""
    now = timezone.now()
    actor = _known_actor(actor)
    changes = {"status": status, "finished_at": now, "updated_at": now}
    if error_info is not None:
        changes["error_info"] = error_info
    audit_values = {
        "previous_status": Value(source, output_field=models.CharField()),
        "new_status": Value(status, output_field=models.CharField()),
        "actor": Value(
            actor.pk if actor else None, output_field=ExecutionStatusChange.actor.field.target_field
        ),
        "actor_username": Value(actor.get_username() if actor else "", output_field=models.CharField()),
        "channel": Value(channel, output_field=models.CharField()),
        "correlation_id": Value(correlation_id or "", output_field=models.CharField()),
        "created_at": Value(now, output_field=models.DateTimeField()),
    }
    signalled = execution_status_changed.has_listeners(Execution)
    changed, record_ids = change_batch_with_audit(
        batch, changes, audit_values, error_info, returning_ids=signalled
    )
    _after_commit(Counter({(source, status, channel): changed}), _records(record_ids, actor))
    return changed


def _records(record_ids: list[int], actor) -> list[ExecutionStatusChange]:
    """The audit records written, for the signal's listeners (none: no query)."""
    if not record_ids:
        return []
    records = list(ExecutionStatusChange.objects.filter(pk__in=record_ids))
    for record in records:
        record.actor = actor  # known already: no query per record
    return records


@dataclass(frozen=True)
class HeartbeatResult:
    execution_id: uuid.UUID
    last_heartbeat_at: datetime


def execution_heartbeat(*, execution_id, visible_to=None) -> HeartbeatResult:
    """Record a worker's sign of life on a running execution.

    A compare-and-set like a status change (the same statement, built once): the UPDATE
    only touches a running execution, so a heartbeat can never revive one an operator
    stopped. It moves `updated_at` too (and so the API's ETag), because `last_heartbeat_at`
    is part of what a reader sees. `visible_to` as for execution_change_status. Raises
    ExecutionNotFound, or ExecutionNotRunning with the current status so the worker stops.
    """
    execution_id = parse_execution_id(execution_id)
    visibility = _visibility(visible_to)
    now = timezone.now()
    changes = {"last_heartbeat_at": now, "updated_at": now}
    with write_transaction(single_statement=True):
        changed = compare_and_set(visibility, execution_id, ExecutionStatus.RUNNING, changes, None)
    if changed:
        metrics.count_heartbeat(metrics.HEARTBEAT_ACCEPTED)
        return HeartbeatResult(execution_id, now)
    current = executions_in(visibility).filter(pk=execution_id).values_list("status", flat=True).first()
    if current is None:
        metrics.count_heartbeat(metrics.HEARTBEAT_NOT_FOUND)
        raise ExecutionNotFound()
    metrics.count_heartbeat(metrics.HEARTBEAT_NOT_RUNNING)
    raise ExecutionNotRunning(current)


# Why a stale execution was moved, per execution; the database fills in the time.
STALE_REASON = "stale"


def executions_interrupt_stale(
    *,
    stale_after: timedelta,
    status: str = ExecutionStatus.INTERRUPTED,
    detected_by: str,
    channel: ChangeChannel,
    threshold_text: str | None = None,
    name: str | None = None,
    correlation_id: str = "",
    batch_size: int | None = None,
    limit: int | None = None,
    now: datetime | None = None,
    on_batch: Callable[[BulkStatusChangeResult], None] | None = None,
) -> BulkStatusChangeResult:
    """Move running executions with no sign of life (last heartbeat, or creation where there
    was none) for longer than `stale_after` to `status`, oldest sign of life first, through
    execution_change_status_bulk. Each gets `error_info` {"reason": "stale", "last_seen_at",
    "threshold", "detected_by"}. Staleness is checked again on the locked rows, so one that
    finished or reported since its batch was named is skipped, not overwritten. `name`:
    only executions with exactly this name. The command (cleanup_stale_executions) and the
    worker both call it."""
    stale = executions_stale(Execution.objects.all(), stale_after, now=now)
    if name is not None:
        stale = stale.filter(name=name)
    why = JSONObject(
        reason=Value(STALE_REASON),
        last_seen_at=UtcIsoformat(Coalesce("last_heartbeat_at", "created_at")),
        threshold=Value(threshold_text or format_duration(stale_after)),
        detected_by=Value(detected_by),
    )
    prepare_for_many_commits()
    return execution_change_status_bulk(
        executions=stale,
        in_order_of=Coalesce("last_heartbeat_at", "created_at"),
        status=status,
        channel=channel,
        error_info=why,
        correlation_id=correlation_id,
        batch_size=batch_size,
        limit=limit,
        on_batch=_counting_transitions(STALE_REASON, on_batch),
    )


def _counting_transitions(reason: str, on_batch):
    """An on_batch that counts each committed batch's changes by `reason`, then calls `on_batch`."""
    counted = 0

    def counting(result: BulkStatusChangeResult) -> None:
        nonlocal counted
        metrics.count_watch_transitions(reason, result.changed - counted)
        counted = result.changed
        if on_batch is not None:
            on_batch(result)

    return counting


# Why an execution past its deadline was failed; the database fills in the rest per execution.
DEADLINE_EXCEEDED_REASON = "deadline_exceeded"


def executions_fail_past_deadline(
    *,
    now: datetime,
    detected_by: str,
    channel: ChangeChannel = ChangeChannel.WORKER,
    correlation_id: str = "",
    batch_size: int | None = None,
    limit: int | None = None,
    on_batch: Callable[[BulkStatusChangeResult], None] | None = None,
) -> BulkStatusChangeResult:
    """Move running executions whose deadline passed at `now` to failed, soonest deadline
    first, through execution_change_status_bulk. Each gets `error_info` {"reason":
    "deadline_exceeded", "deadline_at", "max_runtime_seconds", "detected_by"}. The deadline is
    checked again on the locked rows, so one that finished meanwhile (or that another worker
    failed first) is skipped, not overwritten: with any number of workers, each fails once."""
    overdue = executions_past_deadline(Execution.objects.all(), now)
    why = JSONObject(
        reason=Value(DEADLINE_EXCEEDED_REASON),
        deadline_at=UtcIsoformat(F("deadline_at")),
        max_runtime_seconds=F("max_runtime_seconds"),
        detected_by=Value(detected_by),
    )
    return execution_change_status_bulk(
        executions=overdue,
        in_order_of="deadline_at",
        status=ExecutionStatus.FAILED,
        channel=channel,
        error_info=why,
        correlation_id=correlation_id,
        batch_size=batch_size,
        limit=limit,
        on_batch=_counting_transitions(DEADLINE_EXCEEDED_REASON, on_batch),
    )
