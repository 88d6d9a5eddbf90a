"""Reads of executions, scoped to what the caller may see."""

import uuid
from datetime import datetime, timedelta
from functools import cache
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection, connections
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan
from django.db.models.functions import Coalesce
from django.utils import timezone

from .db.functions import OldestRunningTransactionId
from .errors import ExecutionNotFound
from .models import (
    Execution,
    ExecutionStatus,
    ExecutionStatusChange,
    IdempotencyKey,
)

MANAGE_ALL_EXECUTIONS = "executions.manage_all_executions"


@cache
def _holds_manage_all_sql() -> str:
    """SQL that is true when the user (both %s) holds manage_all_executions, directly or
    through a group, as Django's ModelBackend grants it. Written once as text: building the
    same condition with the ORM for every request cost more than the rest of the request."""
    User = get_user_model()
    user_permissions = User.user_permissions.through._meta
    user_groups = User.groups.through._meta
    group_permissions = User.groups.field.related_model.permissions.through._meta
    app_label, codename = MANAGE_ALL_EXECUTIONS.split(".")
    permission_id = (
        f"(SELECT p.{Permission._meta.pk.column} FROM {Permission._meta.db_table} p"
        f" JOIN {ContentType._meta.db_table} ct ON ct.{ContentType._meta.pk.column} = p.content_type_id"
        f" WHERE ct.app_label = '{app_label}' AND p.codename = '{codename}')"
    )
    return (
        f"EXISTS (SELECT 1 FROM {user_permissions.db_table} up"
        f" WHERE up.{user_permissions.get_field('user').column} = %s"
        f" AND up.{user_permissions.get_field('permission').column} = {permission_id})"
        f" OR EXISTS (SELECT 1 FROM {user_groups.db_table} ug"
        f" JOIN {group_permissions.db_table} gp"
        f" ON gp.{group_permissions.get_field('group').column} = ug.{user_groups.get_field('group').column}"
        f" WHERE ug.{user_groups.get_field('user').column} = %s"
        f" AND gp.{group_permissions.get_field('permission').column} = {permission_id})"
    )


class Visibility(NamedTuple):
    """How much of the executions a user may see and change: ALL, NONE, or OWN_OR_MANAGED
    (the ones `user_pk` created, or all of them if that user holds manage_all_executions)."""

    kind: str
    user_pk: int | None = None


ALL, NONE, OWN_OR_MANAGED = "all", "none", "own_or_managed"


def visibility_of(user) -> Visibility:
    """The one rule for who sees what: superusers everything, inactive and anonymous users
    nothing, everyone else what they created, or everything with manage_all_executions."""
    if not user.is_authenticated or not user.is_active:
        return Visibility(NONE)
    if user.is_superuser:
        return Visibility(ALL)
    return Visibility(OWN_OR_MANAGED, user.pk)


def executions_in(visibility: Visibility) -> QuerySet:
    """The executions `visibility` covers, as a queryset.

    The permission check is part of the query rather than a `user.has_perm()` call, so that
    the compare-and-set UPDATE that uses this queryset also authorizes, in one statement.
    """
    executions = Execution.objects.all()
    if visibility.kind == ALL:
        return executions
    if visibility.kind == NONE:
        return executions.none()
    holds_manage_all = RawSQL(
        _holds_manage_all_sql(), [visibility.user_pk, visibility.user_pk], output_field=BooleanField()
    )
    return executions.filter(Q(created_by=visibility.user_pk) | Q(holds_manage_all))


def executions_visible_to(user) -> QuerySet:
    """The executions `user` may see and change: the ones they created, or all of them for
    superusers and holders of the manage_all_executions permission."""
    return executions_in(visibility_of(user))


def executions_stale(executions: QuerySet, stale_after: timedelta, now: datetime | None = None) -> QuerySet:
    """Running executions with no sign of life (last heartbeat, or creation where there has
    been none) for longer than `stale_after`. Matches the partial index on the same expression."""
    cutoff = (now or timezone.now()) - stale_after
    return executions.alias(last_seen_at=Coalesce("last_heartbeat_at", "created_at")).filter(
        status=ExecutionStatus.RUNNING, last_seen_at__lt=cutoff
    )


def executions_past_deadline(executions: QuerySet, now: datetime) -> QuerySet:
    """Running executions whose deadline is `now` or before. Matches the partial index on
    running executions' deadlines (execution_running_deadline_idx)."""
    return executions.filter(status=ExecutionStatus.RUNNING, deadline_at__isnull=False, deadline_at__lte=now)


def running_deadline_soonest() -> datetime | None:
    """The soonest deadline of a running execution (None: none has one). The first entry of
    the partial index: the worker's idle sweep is this one question."""
    running = Execution.objects.filter(status=ExecutionStatus.RUNNING, deadline_at__isnull=False)
    return running.order_by("deadline_at", "id").values_list("deadline_at", flat=True).first()


def running_deadlines_due(now: datetime, limit: int) -> list[datetime]:
    """The deadlines passed at `now` of running executions, soonest first, at most `limit`:
    the order in which the worker fails them."""
    overdue = executions_past_deadline(Execution.objects.all(), now)
    return list(overdue.order_by("deadline_at", "id").values_list("deadline_at", flat=True)[:limit])


def _running_last_seen() -> QuerySet:
    return Execution.objects.filter(status=ExecutionStatus.RUNNING).annotate(
        last_seen_at=Coalesce("last_heartbeat_at", "created_at")
    )


def running_last_seen_longest_ago() -> datetime | None:
    """The oldest sign of life (heartbeat, else creation) of a running execution (None: none
    runs). The first entry of the partial index the stale rule uses."""
    return _running_last_seen().order_by("last_seen_at").values_list("last_seen_at", flat=True).first()


def running_last_seen_before(cutoff: datetime, limit: int) -> list[datetime]:
    """Signs of life older than `cutoff` of running executions, oldest first, at most `limit`."""
    seen = _running_last_seen().filter(last_seen_at__lt=cutoff).order_by("last_seen_at", "id")
    return list(seen.values_list("last_seen_at", flat=True)[:limit])


def _holds_manage_all(user_pk: int) -> bool:
    """Whether the user holds manage_all_executions, by the very SQL that executions_in puts
    in its queries: one source for who sees everything, whatever the path."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT CASE WHEN {_holds_manage_all_sql()} THEN 1 ELSE 0 END", [user_pk, user_pk])
        return bool(cursor.fetchone()[0])


def sees_all_executions(user) -> bool | None:
    """True for superusers and holders of manage_all_executions, False for other active
    users, None for those who see nothing (anonymous, inactive): visibility_of's rule, with
    the permission resolved here rather than in the query."""
    visibility = visibility_of(user)
    if visibility.kind == NONE:
        return None
    return visibility.kind == ALL or _holds_manage_all(visibility.user_pk)


def executions_listable_by(user) -> QuerySet:
    """The same executions as executions_visible_to(user), with the permission resolved
    before the query (one lookup, with the same SQL) so that an owner's list is a plain
    `created_by = user` that the per-owner index serves, page after page."""
    executions = Execution.objects.all()
    sees_all = sees_all_executions(user)
    if sees_all is None:
        return executions.none()
    return executions if sees_all else executions.filter(created_by=user.pk)


def status_changes_visible_to(user) -> QuerySet:
    """The audit records of the executions `user` may see (executions_listable_by)."""
    changes = ExecutionStatusChange.objects.all()
    sees_all = sees_all_executions(user)
    if sees_all is None:
        return changes.none()
    return changes if sees_all else changes.filter(execution__created_by=user.pk)


# A position in the change feed: (transaction_id, id) of the last record a consumer has.
FEED_START = (0, 0)


def status_changes_after(changes: QuerySet, position: tuple[int, int]) -> QuerySet:
    """The records of `changes` after `position`, in feed order, limited to those no record
    can ever be committed before: a consumer that resumes from the last one it got never
    misses a record and never gets one twice.

    Feed order is (transaction_id, id). On SQLite writes are serialized, transaction_id is
    0 and id order is commit order. On PostgreSQL ids are taken when rows are inserted, not
    when they commit, so id order alone skips a record whose transaction commits after a
    later id was served. Serving only rows whose writing transaction is older than every
    transaction still running (xmin) fixes that only together with ordering by that
    transaction id: an old transaction can insert a row with a larger id than an open young
    one, so with id order the young one's row could still appear behind the position. With
    both, every record that is not yet visible belongs to a transaction at or after xmin,
    hence after every position served so far. The cost: the feed lags behind the oldest
    running writing transaction in the cluster.
    """
    transaction_id, change_id = position
    # Written so that the index scan starts at the position, not at the first record of its
    # transaction and filtering its way there (as `transaction_id > t OR (transaction_id =
    # t AND id > i)` did: a bulk change writes thousands of records in one transaction, and
    # on SQLite every record is of "transaction" 0, so a poll at the feed's end read it all).
    if connections[changes.db].vendor == "postgresql":
        # A row comparison, which PostgreSQL bounds on both columns of the index.
        changes = changes.filter(TupleGreaterThan(Tuple("transaction_id", "id"), (transaction_id, change_id)))
        changes = changes.filter(transaction_id__lt=OldestRunningTransactionId())
    else:
        # SQLite bounds a row comparison by its first column only. Every record's
        # transaction_id is 0 there (CurrentTransactionId), so the records after a position
        # are those of transaction 0 after its id: an equality and a range it bounds on both.
        changes = changes.filter(transaction_id=transaction_id, id__gt=change_id)
    return changes.order_by("transaction_id", "id")


def parse_execution_id(execution_id) -> uuid.UUID:
    """`execution_id` as a UUID. Text that is not one cannot name any execution: it raises
    ExecutionNotFound, the same answer as for a missing execution."""
    if isinstance(execution_id, uuid.UUID):
        return execution_id
    try:
        return uuid.UUID(str(execution_id))
    except ValueError:
        raise ExecutionNotFound() from None


def execution_get(executions: QuerySet, execution_id) -> Execution:
    """One execution of `executions` (see executions_visible_to), with its owner. An id that
    is not a UUID, a missing execution and an invisible one all raise ExecutionNotFound."""
    execution_id = parse_execution_id(execution_id)
    execution = executions.select_related("created_by").filter(pk=execution_id).first()
    if execution is None:
        raise ExecutionNotFound()
    return execution


def execution_status_changes(execution: Execution) -> QuerySet:
    """The audit records of one execution, oldest first."""
    return ExecutionStatusChange.objects.filter(execution=execution).order_by("created_at", "id")


def idempotency_key_get(user, key: str) -> IdempotencyKey | None:
    """The Idempotency-Key `key` of `user`, if one was used."""
    return IdempotencyKey.objects.filter(user=user, key=key).first()
