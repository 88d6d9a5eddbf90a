"""Writes to executions. Every status change, from the API, the admin or a command, goes
through `execution_change_status` or `execution_change_status_bulk`: one rule
(models.ALLOWED_TRANSITIONS), one compare-and-set, one audit record per change."""

import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, models, router, transaction
from django.db.models import F, OuterRef, Subquery, Value
from django.db.models.expressions import BaseExpression
from django.utils import timezone

from . import metrics
from .errors import (
    ExecutionNotFound,
    ExecutionNotRunning,
    IdempotencyKeyReused,
    InvalidStatusTransition,
    PreconditionFailed,
)
from .models import (
    ChangeChannel,
    Execution,
    ExecutionStatus,
    ExecutionStatusChange,
    IdempotencyKey,
    statuses_that_can_become,
)
from .selectors import (
    executions_finished_before,
    executions_with_history,
    idempotency_key_get,
    idempotency_keys_expired,
    parse_execution_id,
)
from .signals import execution_status_changed


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


def execution_create(*, name: str, created_by=None, metadata: dict | None = None) -> Execution:
    return Execution.objects.create(name=name, created_by=created_by, metadata=metadata or {})


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

    with transaction.atomic():
        existing = idempotency_key_get(created_by, idempotency_key)
        if existing is not None:
            return replay(existing)
        try:
            with transaction.atomic():
                execution = execution_create(name=name, created_by=created_by, metadata=metadata)
                body = response_body(execution)
                IdempotencyKey.objects.create(
                    user=created_by, key=idempotency_key, request_fingerprint=request_fingerprint,
                    execution=execution, response_body=body,
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


@metrics.counting_refusals
def execution_change_status(
    *,
    execution_id,
    status: str,
    channel: ChangeChannel,
    actor=None,
    error_info: dict | None = None,
    correlation_id: str = "",
    executions: models.QuerySet | None = None,
    expected_updated_at: datetime | Collection[datetime] | None = None,
) -> StatusChangeResult:
    """Move one execution to `status` if ALLOWED_TRANSITIONS lets it, atomically.

    `executions` is what the actor may act on (see selectors.executions_visible_to); an
    execution outside it is not found. Of any number of concurrent calls for one execution,
    exactly one succeeds. Asking for the status it already has is not an error: the result
    has `success=False` and nothing is written. Raises ExecutionNotFound or
    InvalidStatusTransition.

    `expected_updated_at` (one value or several) makes the change conditional on the
    execution's `updated_at` (the API's ETag): the condition is part of the same UPDATE, and
    when it does not hold nothing is written and PreconditionFailed is raised.
    """
    execution_id = parse_execution_id(execution_id)
    executions = Execution.objects.all() if executions is None else executions
    if expected_updated_at is not None:
        if isinstance(expected_updated_at, datetime):
            expected_updated_at = [expected_updated_at]
        executions_to_change = executions.filter(updated_at__in=list(expected_updated_at))
    else:
        executions_to_change = executions
    now = timezone.now()
    changes = {"status": status, "finished_at": now, "updated_at": now}
    if error_info is not None:
        changes["error_info"] = error_info

    with transaction.atomic():
        for source in statuses_that_can_become(status):
            # The compare-and-set: the WHERE clause, not an earlier read, decides who wins.
            if executions_to_change.filter(pk=execution_id, status=source).update(**changes):
                record = _audit_record(
                    execution_id=execution_id, previous_status=source, status=status, actor=actor,
                    channel=channel, error_info=error_info, correlation_id=correlation_id, at=now,
                )
                record.save(force_insert=True)
                _after_commit(Counter({(source, status, channel): 1}), [record])
                return StatusChangeResult(execution_id, True, source, status)

    # Nothing changed: one read tells why.
    row = executions.filter(pk=execution_id).values_list("status", "updated_at").first()
    if row is None:
        raise ExecutionNotFound()
    current, updated_at = row
    if expected_updated_at is not None and updated_at not in expected_updated_at:
        raise PreconditionFailed()
    if current == status:
        return StatusChangeResult(execution_id, False, current, current)
    raise InvalidStatusTransition(current, status)


def _batches(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def execution_change_status_bulk(
    *,
    execution_ids: Iterable,
    status: str,
    channel: ChangeChannel,
    actor=None,
    error_info: dict | Callable[[dict[str, Any]], dict] | BaseExpression | None = None,
    correlation_id: str = "",
    batch_size: int | None = None,
    on_batch: Callable[[BulkStatusChangeResult], None] | None = None,
    executions: models.QuerySet | None = None,
) -> BulkStatusChangeResult:
    """Move many executions to `status`, one transaction and one UPDATE per batch.

    `execution_ids` may be any iterable (a generator streaming ids keeps memory flat).
    Ids that are no longer in a status that may become `status` (or do not exist) are
    skipped, never overwritten. `error_info` is one object for all, or a function of the
    row ({"id", "name", "created_at", "last_heartbeat_at"}) for one per execution, or a
    query expression of the row (e.g. JSONObject(...)) that the database evaluates: then the
    audit rows are copied from the executions by one INSERT ... SELECT and no row passes
    through Python, the fastest way for very large batches.
    `on_batch` is called with the running totals after each committed batch.
    `executions` narrows what may change (what the actor may act on, or a condition such
    as staleness): it is re-checked on the locked rows, so an id that left it since the
    caller read it is skipped too.
    """
    sources = statuses_that_can_become(status)
    if not sources:
        raise ValueError(f"No status may become {status!r}")
    batch_size = batch_size or settings.EXECUTIONS_BULK_BATCH_SIZE
    executions = Execution.objects.all() if executions is None else executions
    result = BulkStatusChangeResult()

    in_sql = isinstance(error_info, BaseExpression)
    row_fields = ("id", "status") if in_sql else ("id", "name", "status", "created_at", "last_heartbeat_at")
    for batch in _batches(execution_ids, batch_size):
        with transaction.atomic():
            # Lock the rows still changeable (PostgreSQL; SQLite holds the write lock from
            # BEGIN IMMEDIATE), in id order so that concurrent runs cannot deadlock.
            rows = list(
                executions.select_for_update()
                .filter(pk__in=batch, status__in=sources)
                .order_by("pk")
                .values(*row_fields)
            )
            if rows and in_sql:
                _apply_locked_batch_in_sql(rows, status, channel, actor, error_info, correlation_id)
            elif rows:
                _apply_locked_batch(rows, status, channel, actor, error_info, correlation_id, sources)
        result.changed += len(rows)
        result.skipped += len(batch) - len(rows)
        result.batches += 1
        if on_batch is not None:
            on_batch(result)
    return result


def _apply_locked_batch(rows, status, channel, actor, error_info, correlation_id, sources):
    now = timezone.now()
    records = [
        _audit_record(
            execution_id=row["id"], previous_status=row["status"], status=status, actor=actor,
            channel=channel, error_info=error_info(row) if callable(error_info) else error_info,
            correlation_id=correlation_id, at=now,
        )
        for row in rows
    ]
    # The audit rows go first, so that a per-row error_info is copied from them inside the one
    # UPDATE (a correlated subquery on their index) rather than sent again as a CASE with one
    # branch per row, which costs more than everything else in a big batch.
    ExecutionStatusChange.objects.bulk_create(records)
    changes = {"status": status, "finished_at": now, "updated_at": now}
    if callable(error_info):
        changes["error_info"] = Subquery(
            ExecutionStatusChange.objects.filter(execution_id=OuterRef("pk"), created_at=now, new_status=status)
            .order_by()
            .values("error_info")[:1]
        )
    elif error_info is not None:
        changes["error_info"] = error_info
    Execution.objects.filter(pk__in=[row["id"] for row in rows], status__in=sources).update(**changes)
    _after_commit(Counter((row["status"], status, channel) for row in rows), records)


def _apply_locked_batch_in_sql(rows, status, channel, actor, error_info, correlation_id):
    now = timezone.now()
    ids = [row["id"] for row in rows]
    actor = _known_actor(actor)
    audit_fields = {
        "execution": F("pk"),
        "previous_status": F("status"),
        "new_status": Value(status, output_field=models.CharField()),
        "error_info": error_info,
        "actor": Value(actor.pk if actor else None, output_field=ExecutionStatusChange.actor.field.target_field),
        "actor_username": Value(actor.get_username() if actor else "", output_field=models.CharField()),
        "channel": Value(channel, output_field=models.CharField()),
        "correlation_id": Value(correlation_id or "", output_field=models.CharField()),
        "created_at": Value(now, output_field=models.DateTimeField()),
    }
    # The rows are locked and unchanged yet: the audit rows read their status and error_info.
    source = Execution.objects.filter(pk__in=ids).values(
        **{f"audit_{name}": expression for name, expression in audit_fields.items()}
    )
    select_sql, params = source.query.sql_with_params()
    opts, quote = ExecutionStatusChange._meta, connection.ops.quote_name
    columns = ", ".join(quote(opts.get_field(name).column) for name in audit_fields)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(opts.db_table)} ({columns}) {select_sql}", params)
    Execution.objects.filter(pk__in=ids).update(
        status=status, finished_at=now, updated_at=now, error_info=error_info
    )
    # The counts come from the locked rows; the records are read back only for listeners.
    records = []
    if execution_status_changed.has_listeners(Execution):
        records = list(ExecutionStatusChange.objects.filter(execution_id__in=ids, created_at=now, new_status=status))
        for record in records:
            record.actor = actor
    _after_commit(Counter((row["status"], status, channel) for row in rows), records)


@dataclass(frozen=True)
class HeartbeatResult:
    execution_id: uuid.UUID
    last_heartbeat_at: datetime


def execution_heartbeat(*, execution_id, executions: models.QuerySet | None = None) -> HeartbeatResult:
    """Record a worker's sign of life on a running execution.

    A compare-and-set like a status change: the UPDATE only touches a running execution, so
    a heartbeat can never revive one an operator stopped. It moves `updated_at` too (and so
    the API's ETag), because `last_heartbeat_at` is part of what a reader sees. Raises
    ExecutionNotFound, or ExecutionNotRunning with the current status so the worker stops.
    """
    execution_id = parse_execution_id(execution_id)
    executions = Execution.objects.all() if executions is None else executions
    now = timezone.now()
    changed = executions.filter(pk=execution_id, status=ExecutionStatus.RUNNING).update(
        last_heartbeat_at=now, updated_at=now
    )
    if changed:
        metrics.HEARTBEATS.labels(metrics.HEARTBEAT_ACCEPTED).inc()
        return HeartbeatResult(execution_id, now)
    current = executions.filter(pk=execution_id).values_list("status", flat=True).first()
    if current is None:
        metrics.HEARTBEATS.labels(metrics.HEARTBEAT_NOT_FOUND).inc()
        raise ExecutionNotFound()
    metrics.HEARTBEATS.labels(metrics.HEARTBEAT_NOT_RUNNING).inc()
    raise ExecutionNotRunning(current)


@dataclass
class PurgeResult:
    executions: int = 0
    status_changes: int = 0
    batches: int = 0


def executions_purge_finished(
    *,
    finished_before: datetime,
    batch_size: int,
    limit: int | None = None,
    archive: Callable[[list[dict]], None] | None = None,
    on_batch: Callable[[PurgeResult], None] | None = None,
) -> PurgeResult:
    """Delete executions that finished before `finished_before`, with their audit records,
    oldest first, `batch_size` per transaction, at most `limit` in all. Never a running one.

    Each batch: lock its rows (on PostgreSQL skipping rows that another purge holds, so that
    runs on several hosts share the work instead of queueing), hand them with their history
    to `archive` (executions_with_history), which must have stored them durably when it
    returns, then delete. A batch that fails, or is killed, is rolled back whole: nothing
    of it is deleted, and a run after it starts over with it.
    """
    result = PurgeResult()
    since = None  # the last batch's newest finished_at: the next starts its index walk there
    while limit is None or result.executions < limit:
        size = batch_size if limit is None else min(batch_size, limit - result.executions)
        with transaction.atomic():
            candidates = executions_finished_before(finished_before)
            if since is not None:
                candidates = candidates.filter(finished_at__gte=since)
            rows = list(
                candidates.order_by("finished_at")
                .select_for_update(skip_locked=True)
                .values_list("pk", "finished_at")[:size]
            )
            if not rows:
                break
            ids = [pk for pk, _ in rows]
            if archive is not None:
                archive(executions_with_history(ids))
            # The audit records first: their foreign key protects the executions. Then one
            # DELETE: QuerySet.delete() would load every execution into Python first, to look
            # for the (now deleted) protected records and to send delete signals nobody
            # listens to, and that was three quarters of the purge's time.
            status_changes, _ = ExecutionStatusChange.objects.filter(execution_id__in=ids).delete()
            # An Idempotency-Key still kept for one of them goes with it: a retry after this
            # creates a new execution, as it would after the key expired.
            IdempotencyKey.objects.filter(execution_id__in=ids).delete()
            executions = Execution.objects.filter(pk__in=ids)._raw_delete(router.db_for_write(Execution))
        result.executions += executions
        result.status_changes += status_changes
        result.batches += 1
        since = rows[-1][1]
        if on_batch is not None:
            on_batch(result)
    return result


def idempotency_keys_purge_expired(*, batch_size: int) -> int:
    """Delete the Idempotency-Keys older than IDEMPOTENCY_KEYS_KEPT_FOR, `batch_size` per
    transaction; how many were deleted. Their executions stay."""
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(idempotency_keys_expired().order_by("created_at").values_list("pk", flat=True)[:batch_size])
            if not ids:
                return deleted
            deleted += IdempotencyKey.objects.filter(pk__in=ids).delete()[0]
