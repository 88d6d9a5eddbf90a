"""Retention: deleting what the service no longer keeps. Finished executions older than a
cutoff, with their audit records (optionally archived first: retention/archive.py), and
Idempotency-Keys past the time they are answered for."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import router
from django.db.models import F, QuerySet
from django.utils import timezone

from .. import metrics
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


def idempotency_keys_expired(now: datetime | None = None) -> QuerySet:
    """The Idempotency-Keys older than IDEMPOTENCY_KEYS_KEPT_FOR: the purge may delete them
    (a key is answered for as long as its row exists)."""
    return IdempotencyKey.objects.filter(created_at__lt=(now or timezone.now()) - IDEMPOTENCY_KEYS_KEPT_FOR)


def executions_finished_before(cutoff: datetime) -> QuerySet:
    """Executions that left `running` before `cutoff`: what the retention purge may delete.
    A running execution has no finished_at, and is excluded by its status as well."""
    return Execution.objects.filter(finished_at__lt=cutoff).exclude(status=ExecutionStatus.RUNNING)


ARCHIVED_EXECUTION_FIELDS = (
    "id",
    "name",
    "status",
    "error_info",
    "metadata",
    "created_by_id",
    "created_at",
    "updated_at",
    "finished_at",
    "last_heartbeat_at",
)
ARCHIVED_STATUS_CHANGE_FIELDS = (
    "id",
    "previous_status",
    "new_status",
    "error_info",
    "actor_id",
    "actor_username",
    "channel",
    "correlation_id",
    "created_at",
)


def executions_with_history(execution_ids: list) -> list[dict]:
    """Each execution of `execution_ids` as a dict of its fields (with its owner's username as
    `created_by_username`), with its audit records oldest first under `status_changes`."""
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
    batch_size = batch_size or settings.EXECUTIONS_BULK_BATCH_SIZE
    result = PurgeResult()
    since = None  # the last batch's newest finished_at: the next starts its index walk there
    while limit is None or result.executions < limit:
        size = batch_size if limit is None else min(batch_size, limit - result.executions)
        with write_transaction():
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
            # A monitor's last run and its state records name a run without protecting it.
            Monitor.objects.filter(last_execution_id__in=ids).update(last_execution=None)
            MonitorStateChange.objects.filter(execution_id__in=ids).update(execution=None)
            executions = Execution.objects.filter(pk__in=ids)._raw_delete(router.db_for_write(Execution))
        result.executions += executions
        result.status_changes += status_changes
        result.batches += 1
        # Counted once the batch committed, whichever process runs the purge (metrics_files.py).
        metrics.count_purged(executions, status_changes)
        since = rows[-1][1]
        if on_batch is not None:
            on_batch(result)
    return result


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
