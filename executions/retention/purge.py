"""Retention: deleting what the service no longer keeps. Finished executions older than a
cutoff, with their audit records (optionally archived first: retention/archive.py), and
Idempotency-Keys past the time they are answered for."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from django.conf import settings
from django.db import connection
from django.db.models import F, QuerySet
from django.utils import timezone

from .. import metrics
from ..db.functions import ids_parameter, in_ids_sql
from ..models import (
    IDEMPOTENCY_KEYS_KEPT_FOR,
    Execution,
    ExecutionStatus,
    ExecutionStatusChange,
    IdempotencyKey,
    Monitor,
    MonitorStateChange,
)
from ..statements import write_transaction
from .lines import ARCHIVED_EXECUTION_FIELDS, ARCHIVED_STATUS_CHANGE_FIELDS, executions_archive_lines


def idempotency_keys_expired(now: datetime | None = None) -> QuerySet:
    """The Idempotency-Keys older than IDEMPOTENCY_KEYS_KEPT_FOR: the purge may delete them
    (a key is answered for as long as its row exists)."""
    return IdempotencyKey.objects.filter(created_at__lt=(now or timezone.now()) - IDEMPOTENCY_KEYS_KEPT_FOR)


def executions_finished_before(cutoff: datetime) -> QuerySet:
    """Executions that left `running` before `cutoff`: what the retention purge may delete.
    A running execution has no finished_at, and is excluded by its status as well."""
    return Execution.objects.filter(finished_at__lt=cutoff).exclude(status=ExecutionStatus.RUNNING)


def executions_with_history(execution_ids: list) -> list[dict]:
    """Each execution of `execution_ids` as a dict of its fields (with its owner's username as
    `created_by_username`), with its audit records oldest first under `status_changes`: the
    ORM's reading of what an archive line holds (lines.executions_archive_lines has the
    database write the same JSON; tests/test_purge_command.py compares the two)."""
    executions = {
        row["id"]: {**row, "status_changes": []}
        for row in Execution.objects.filter(pk__in=execution_ids)
        .order_by("finished_at", "pk")
        .values(*ARCHIVED_EXECUTION_FIELDS, created_by_username=F("created_by__username"))
    }
    changes = (
        ExecutionStatusChange.objects.filter(execution_id__in=execution_ids)
        .order_by("created_at", "id")
        .values("execution_id", *ARCHIVED_STATUS_CHANGE_FIELDS)
    )
    for change in changes:
        executions[change.pop("execution_id")]["status_changes"].append(change)
    return list(executions.values())


@dataclass
class PurgeResult:
    executions: int = 0
    status_changes: int = 0
    batches: int = 0


def executions_purge_finished(
    *,
    finished_before: datetime,
    batch_size: int | None = None,
    limit: int | None = None,
    archive: Callable[[Iterable[str]], None] | None = None,
    on_batch: Callable[[PurgeResult], None] | None = None,
) -> PurgeResult:
    """Delete executions that finished before `finished_before`, with their audit records,
    oldest first, `batch_size` per transaction, at most `limit` in all. Never a running one.

    With `archive`, each batch's lines (executions_archive_lines) are handed to it first, and
    only the executions whose lines it took are deleted, once it returns: it must have stored
    them durably by then (GzipJsonLinesArchive.append). A batch that fails, or is killed,
    deletes nothing; a run after it starts over with it.

    On PostgreSQL a batch's transaction locks its rows first, skipping rows that another purge
    holds, so that runs on several hosts share the work instead of queueing. SQLite has one
    write lock for the whole database: there each batch is read and archived before the lock
    is taken, and under it only the rows still there unchanged (the same updated_at) are
    deleted, so that other writers wait for the DELETEs only, not for the archive.
    """
    batch_size = batch_size or settings.EXECUTIONS_BULK_BATCH_SIZE
    archive_before_locking = archive is not None and connection.vendor == "sqlite"
    result = PurgeResult()
    since = None  # the last batch's newest finished_at, as stored: the next walks on from there
    while limit is None or result.executions < limit:
        size = batch_size if limit is None else min(batch_size, limit - result.executions)
        if archive_before_locking:
            batch = _next_batch(finished_before, since, size)
            if not batch:
                break
            archived = _archive(archive, [pk for pk, _ in batch])
            with write_transaction():
                executions, status_changes = _delete(_still_as_archived(archived))
        else:
            with write_transaction():
                batch = _next_batch(finished_before, since, size)
                if not batch:
                    break
                ids = [pk for pk, _ in batch]
                if archive is not None:
                    ids = list(_archive(archive, ids))
                executions, status_changes = _delete(ids)
        result.executions += executions
        result.status_changes += status_changes
        result.batches += 1
        # Counted once the batch committed, whichever process runs the purge (metrics_files.py).
        metrics.count_purged(executions, status_changes)
        since = batch[-1][1]
        if on_batch is not None:
            on_batch(result)
    return result


def _next_batch(finished_before: datetime, since, size: int) -> list[tuple]:
    """The next `size` executions to purge (executions_finished_before), oldest first, from
    `since` on, as (id, finished_at) as the database gives them (a batch's ids go back to it
    as they came: nothing is converted); in a write transaction on PostgreSQL, locked
    (skipping rows another purge holds). A walk of the finished_at index."""
    candidates = executions_finished_before(finished_before).order_by().values_list("pk", "finished_at")
    sql, params = candidates.query.sql_with_params()
    finished_at = connection.ops.quote_name(Execution._meta.get_field("finished_at").column)
    if since is not None:
        sql += f" AND {finished_at} >= %s"
        params = (*params, since)
    sql += f" ORDER BY {finished_at} LIMIT %s"
    if connection.vendor == "postgresql":
        sql += " FOR UPDATE SKIP LOCKED"
    with connection.cursor() as cursor:
        cursor.execute(sql, (*params, size))
        return cursor.fetchall()


def _archive(archive: Callable[[Iterable[str]], None], ids: list) -> dict:
    """Hand the lines of `ids` to `archive`; {id: updated_at} of those it took, as the
    database gives them."""
    archived = {}

    def lines():
        for pk, version, line in executions_archive_lines(ids):
            archived[pk] = version
            yield line

    archive(lines())
    return archived


def _still_as_archived(archived: dict) -> list:
    """Of the archived executions ({id: updated_at} as the database gave them), those still
    there with that updated_at. Under the write lock nothing changes them before they are
    deleted. (A finished execution never changes; this keeps the archive true if one ever
    did.) Plain SQL on the values as stored: no conversion while others wait for the lock."""
    if not archived:
        return []
    quote = connection.ops.quote_name
    opts = Execution._meta
    execution_id = quote(opts.pk.column)
    sql = (
        f"SELECT {execution_id}, {quote(opts.get_field('updated_at').column)} FROM {quote(opts.db_table)}"
        f" WHERE {in_ids_sql(connection.vendor, execution_id)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [ids_parameter(connection.vendor, archived)])
        return [pk for pk, updated_at in cursor.fetchall() if archived.get(pk) == updated_at]


def _delete(ids: list) -> tuple[int, int]:
    """Delete the executions `ids` (as the database gives them) with their audit records and
    Idempotency-Keys; how many executions and audit records went. The ids are one parameter
    of plain SQL: through the ORM (QuerySet.delete() loads every row to look for protected
    records and to send signals nobody listens to; a filter converts each id, then binds it
    as a parameter of its own) this was most of the purge's time (docs/performance.md)."""
    if not ids:
        return 0, 0
    vendor = connection.vendor
    batch = ids_parameter(vendor, ids)
    statements = _delete_sql(vendor)
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(statements[0], [batch])
            executions, status_changes = cursor.fetchone()
            return executions, status_changes
        counts = []
        for statement in statements:
            cursor.execute(statement, [batch])
            counts.append(cursor.rowcount)
        return counts[-1], counts[0]


@lru_cache(maxsize=2)
def _delete_sql(vendor: str) -> list[str]:
    """The statements that delete a batch (its ids one parameter, in_ids_sql), in this
    order: the audit records (their foreign key protects the executions); an
    Idempotency-Key still kept for one of them (a retry after this creates a new execution,
    as it would after the key expired); a monitor's last run and its state records' run
    (they name a run without protecting it); the executions. On PostgreSQL they are one
    statement (its foreign keys are checked at commit) that reads the ids once and counts
    the executions and audit records deleted."""
    quote = connection.ops.quote_name
    postgresql = vendor == "postgresql"

    def table(model) -> str:
        return quote(model._meta.db_table)

    def of_batch(model, field: str) -> str:
        column = quote(model._meta.get_field(field).column)
        # (An array of the ids, computed once: each DELETE walks its index for them.)
        return f"{column} = ANY(ARRAY(SELECT id FROM batch))" if postgresql else in_ids_sql(vendor, column)

    def set_null(model, field: str) -> str:
        column = quote(model._meta.get_field(field).column)
        return f"UPDATE {table(model)} SET {column} = NULL WHERE {of_batch(model, field)}"

    statements = [
        f"DELETE FROM {table(ExecutionStatusChange)} WHERE {of_batch(ExecutionStatusChange, 'execution')}",
        f"DELETE FROM {table(IdempotencyKey)} WHERE {of_batch(IdempotencyKey, 'execution')}",
        set_null(Monitor, "last_execution"),
        set_null(MonitorStateChange, "execution"),
        f"DELETE FROM {table(Execution)} WHERE {of_batch(Execution, 'id')}",
    ]
    if not postgresql:
        return statements
    status_changes, keys, monitors, monitor_changes, executions = statements
    return [
        "WITH batch AS (SELECT unnest(%s::uuid[]) AS id),"
        f" status_changes AS ({status_changes} RETURNING 1), keys AS ({keys}),"
        f" monitors AS ({monitors}), monitor_changes AS ({monitor_changes}),"
        f" executions AS ({executions} RETURNING 1)"
        " SELECT (SELECT count(*) FROM executions), (SELECT count(*) FROM status_changes)"
    ]


def idempotency_keys_purge_expired(*, batch_size: int | None = None) -> int:
    """Delete the Idempotency-Keys older than IDEMPOTENCY_KEYS_KEPT_FOR, `batch_size` per
    transaction; how many were deleted. Their executions stay."""
    batch_size = batch_size or settings.EXECUTIONS_BULK_BATCH_SIZE
    deleted = 0
    while True:
        with write_transaction():
            ids = list(
                idempotency_keys_expired().order_by("created_at").values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return deleted
            deleted += IdempotencyKey.objects.filter(pk__in=ids).delete()[0]
