"""Writes to executions. Every status change, from the API, the admin or a command, goes
through `execution_change_status` or `execution_change_status_bulk`: one rule
(models.ALLOWED_TRANSITIONS), one compare-and-set, one audit record per change."""

import uuid
from collections import Counter
from collections.abc import Callable, Collection
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import IntegrityError, connection, models, router, transaction
from django.db.models import F, Q, Value, sql
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
    ALL,
    NONE,
    OWN_OR_MANAGED,
    Visibility,
    executions_finished_before,
    executions_in,
    executions_with_history,
    idempotency_key_get,
    idempotency_keys_expired,
    parse_execution_id,
    visibility_of,
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


# --- The compare-and-set, as SQL built once ---------------------------------------------
# Building and compiling the UPDATE and the audit INSERT with the ORM cost more than the rest
# of a PATCH. Their SQL text depends only on the shape of the request (who may see what,
# whether error_info is set, how many If-Match versions), so the ORM builds it once per shape
# (`_compare_and_set_query` is the ORM form) and each call only runs it with its parameters.
# tests/test_services.py proves the two forms give the same SQL and parameters.

_SENTINEL_ID = uuid.UUID(int=0)
_SENTINEL_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def _compare_and_set_query(
    visibility: Visibility, execution_id, source: str, changes: dict, expected_updated_at
):
    """The ORM form of the compare-and-set: UPDATE the execution if it is in `visibility`,
    in `source`, and (when given) at one of the `expected_updated_at` versions."""
    executions = executions_in(visibility).filter(pk=execution_id, status=source)
    if expected_updated_at is not None:
        executions = executions.filter(updated_at__in=expected_updated_at)
    query = executions.query.chain(sql.UpdateQuery)
    query.add_update_values(changes)
    query.clear_select_clause()
    return query


@cache
def _compare_and_set_sql(alias: str, kind: str, changed_fields: tuple[str, ...], versions: int | None) -> str:
    expected = (
        None
        if versions is None
        else [_SENTINEL_TIME + i * timedelta(microseconds=1) for i in range(versions)]
    )
    # Any value but None (which the ORM writes as a NULL literal, not a parameter).
    changes = {
        name: _SENTINEL_TIME if isinstance(Execution._meta.get_field(name), models.DateTimeField) else ""
        for name in changed_fields
    }
    query = _compare_and_set_query(Visibility(kind, 0), _SENTINEL_ID, "", changes, expected)
    return query.get_compiler(alias).as_sql()[0]


def _compare_and_set_params(
    connection, visibility, execution_id, source, changes, expected_updated_at
) -> list:
    """The parameters of `_compare_and_set_sql`, in the order the ORM form compiles them: the
    new values, the visibility's user, the id and status, the expected versions."""
    field = Execution._meta.get_field
    params = [field(name).get_db_prep_save(value, connection) for name, value in changes.items()]
    if visibility.kind == OWN_OR_MANAGED:
        params += [visibility.user_pk] * 3  # created_by, and the permission's two EXISTS
    params.append(field("id").get_db_prep_value(execution_id, connection))
    params.append(source)
    if expected_updated_at is not None:
        updated_at = field("updated_at")
        params += [updated_at.get_db_prep_value(version, connection) for version in expected_updated_at]
    return params


def _compare_and_set(
    visibility: Visibility, execution_id, source: str, changes: dict, expected_updated_at, audit_record=None
) -> int:
    """Run the compare-and-set; the number of rows it changed (0 or 1). With `audit_record`
    (PostgreSQL: `_change_and_audit_sql`), the same statement writes it when the change wins."""
    if visibility.kind == NONE or expected_updated_at == []:
        return 0  # nothing can match
    shape = (
        connection.alias,
        visibility.kind,
        tuple(changes),
        None if expected_updated_at is None else len(expected_updated_at),
    )
    params = _compare_and_set_params(
        connection, visibility, execution_id, source, changes, expected_updated_at
    )
    if audit_record is None:
        sql_text = _compare_and_set_sql(*shape)
    else:
        sql_text = _change_and_audit_sql(*shape)
        params += _audit_insert_params(audit_record)
    with connection.cursor() as cursor:
        cursor.execute(sql_text, params)
        return cursor.rowcount


# The database fills in the rest (the id, and transaction_id from its db_default).
_AUDIT_FIELDS = [
    field
    for field in ExecutionStatusChange._meta.local_concrete_fields
    if not field.primary_key and not field.has_db_default()
]


@cache
def _audit_insert_sql(alias: str) -> str:
    query = sql.InsertQuery(ExecutionStatusChange)
    query.insert_values(_AUDIT_FIELDS, [ExecutionStatusChange(execution_id=_SENTINEL_ID)])
    [(sql_text, _)] = query.get_compiler(alias).as_sql()
    return sql_text


def _audit_insert_params(record: ExecutionStatusChange) -> list:
    return [field.get_db_prep_save(field.pre_save(record, True), connection) for field in _AUDIT_FIELDS]


def _insert_audit_record(record: ExecutionStatusChange) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_audit_insert_sql(connection.alias), _audit_insert_params(record))


@cache
def _change_and_audit_sql(
    alias: str, kind: str, changed_fields: tuple[str, ...], versions: int | None
) -> str:
    """PostgreSQL: the compare-and-set and the audit INSERT, both as compiled above, joined into
    one statement: the INSERT copies its one row from what the UPDATE changed, so it writes
    the audit record exactly when the compare-and-set won."""
    update = _compare_and_set_sql(alias, kind, changed_fields, versions)
    insert_into, values = _audit_insert_sql(alias).split(" VALUES ", 1)
    assert values.startswith("(") and values.endswith(")"), values  # one row, no RETURNING
    return f"WITH changed AS ({update} RETURNING 1) {insert_into} SELECT {values[1:-1]} FROM changed"


def _write_transaction():
    """The transaction around one status change or one heartbeat. On PostgreSQL each is a
    single statement, atomic by itself, so none: no BEGIN and COMMIT round trips (measured:
    PATCH 940 -> 1,050 req/s, heartbeat 1,130 -> 1,230). On SQLite a transaction: it holds a
    change and its audit record together, and it is what queues the writer on the lock
    (config/sqlite3/base.py) rather than in SQLite's busy handler."""
    return nullcontext() if connection.vendor == "postgresql" else transaction.atomic()


def _visibility(visible_to) -> Visibility:
    return Visibility(ALL) if visible_to is None else visibility_of(visible_to)


def _distinct_versions(expected_updated_at) -> list[datetime] | None:
    if expected_updated_at is None:
        return None
    if isinstance(expected_updated_at, datetime):
        return [expected_updated_at]
    return list(dict.fromkeys(expected_updated_at))


@metrics.counting_refusals
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
    execution_id = parse_execution_id(execution_id)
    visibility = _visibility(visible_to)
    expected_updated_at = _distinct_versions(expected_updated_at)
    now = timezone.now()
    changes = {"status": status, "finished_at": now, "updated_at": now}
    if error_info is not None:
        changes["error_info"] = error_info

    # On PostgreSQL the change and its audit record are one statement (_change_and_audit_sql);
    # SQLite has no UPDATE in a WITH: two statements in a transaction.
    one_statement = connection.vendor == "postgresql"
    with _write_transaction():
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
                changed = _compare_and_set(
                    visibility, execution_id, source, changes, expected_updated_at, record
                )
            else:
                changed = _compare_and_set(visibility, execution_id, source, changes, expected_updated_at)
                if changed:
                    _insert_audit_record(record)
            if changed:
                listened = execution_status_changed.has_listeners(Execution)
                _after_commit(Counter({(source, status, channel): 1}), [record] if listened else [])
                return StatusChangeResult(execution_id, True, source, status)

    # Nothing changed: one read tells why.
    row = executions_in(visibility).filter(pk=execution_id).values_list("status", "updated_at").first()
    if row is None:
        raise ExecutionNotFound()
    current, updated_at = row
    if expected_updated_at is not None and updated_at not in expected_updated_at:
        raise PreconditionFailed()
    if current == status:
        return StatusChangeResult(execution_id, False, current, current)
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
        with transaction.atomic():
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
    opts, quote = ExecutionStatusChange._meta, connection.ops.quote_name
    signalled = execution_status_changed.has_listeners(Execution)
    returning = f" RETURNING {quote(opts.pk.column)}" if signalled else ""
    if connection.vendor == "postgresql":
        # Lock in id order (concurrent runs wait rather than deadlock; a row that changed
        # meanwhile no longer matches once its lock is granted), change, and copy, in one.
        locked = batch.select_for_update().order_by("pk").values("pk")
        update = Execution.objects.filter(pk__in=locked).query.chain(sql.UpdateQuery)
        update.add_update_values(changes)
        update_sql, update_params = update.get_compiler(connection.alias).as_sql()
        execution_opts = Execution._meta
        audit_error_info = "moved.error_info" if error_info is not None else "NULL"
        columns = ", ".join(
            quote(opts.get_field(name).column) for name in ["execution", *audit_values, "error_info"]
        )
        statement = (
            f"WITH moved AS ({update_sql} RETURNING "
            f"{quote(execution_opts.db_table)}.{quote(execution_opts.pk.column)}"
            f" AS id, {quote(execution_opts.db_table)}.{quote(execution_opts.get_field('error_info').column)}"
            f" AS error_info)"
            f" INSERT INTO {quote(opts.db_table)} ({columns})"
            # In id order, as on SQLite: the audit ids (and the change feed) follow the walk.
            f" SELECT moved.id, {', '.join(['%s'] * len(audit_values))}, {audit_error_info}"
            f" FROM moved ORDER BY moved.id{returning}"
        )
        audit_params = [
            opts.get_field(name).get_db_prep_save(value.value, connection)
            for name, value in audit_values.items()
        ]
        with connection.cursor() as cursor:
            cursor.execute(statement, [*update_params, *audit_params])
            changed = cursor.rowcount
            record_ids = [row[0] for row in cursor.fetchall()] if signalled else []
        _after_commit(Counter({(source, status, channel): changed}), _records(record_ids, actor))
        return changed
    # SQLite: the INSERT ... SELECT reads the rows still unchanged (their error_info
    # expression included), then the UPDATE changes the same range.
    if not isinstance(error_info, BaseExpression):
        error_info = Value(error_info, output_field=models.JSONField())
    audit_fields = {"execution": F("pk"), **audit_values, "error_info": error_info}
    source_rows = batch.values(**{f"audit_{name}": value for name, value in audit_fields.items()})
    select_sql, params = source_rows.query.sql_with_params()
    columns = ", ".join(quote(opts.get_field(name).column) for name in audit_fields)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(opts.db_table)} ({columns}) {select_sql}{returning}", params)
        record_ids = [row[0] for row in cursor.fetchall()] if signalled else []
        inserted = len(record_ids) if signalled else cursor.rowcount
    changed = batch.update(**changes)
    if changed != inserted:
        # Under the write lock nothing else changes the rows between the two statements.
        raise RuntimeError(f"{inserted} audit records for {changed} changes")
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
    with _write_transaction():
        changed = _compare_and_set(visibility, execution_id, ExecutionStatus.RUNNING, changes, None)
    if changed:
        metrics.HEARTBEATS.labels(metrics.HEARTBEAT_ACCEPTED).inc()
        return HeartbeatResult(execution_id, now)
    current = executions_in(visibility).filter(pk=execution_id).values_list("status", flat=True).first()
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
            ids = list(
                idempotency_keys_expired().order_by("created_at").values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return deleted
            deleted += IdempotencyKey.objects.filter(pk__in=ids).delete()[0]
