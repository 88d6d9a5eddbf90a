"""Reads of executions, scoped to what the caller may see."""

import uuid
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Exists, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from .errors import ExecutionNotFound
from .models import Execution, ExecutionStatus, ExecutionStatusChange

MANAGE_ALL_EXECUTIONS = "executions.manage_all_executions"


def executions_visible_to(user) -> QuerySet:
    """The executions `user` may see and change: the ones they created, or all of them for
    superusers and holders of the manage_all_executions permission (directly or through a
    group, as Django's ModelBackend grants it).

    The permission check is part of the query rather than a `user.has_perm()` call, so that
    the compare-and-set UPDATE that uses this queryset also authorizes, in one statement.
    """
    executions = Execution.objects.all()
    if not user.is_authenticated or not user.is_active:
        return executions.none()
    if user.is_superuser:
        return executions
    app_label, codename = MANAGE_ALL_EXECUTIONS.split(".")
    permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    User = get_user_model()
    held_directly = User.user_permissions.through.objects.filter(
        user_id=user.pk, permission__in=permission
    )
    held_through_group = User.groups.through.objects.filter(
        user_id=user.pk, group__permissions__in=permission
    )
    return executions.filter(Q(created_by=user.pk) | Exists(held_directly) | Exists(held_through_group))


def executions_stale(executions: QuerySet, stale_after: timedelta, now: datetime | None = None) -> QuerySet:
    """Running executions with no sign of life (last heartbeat, or creation where there has
    been none) for longer than `stale_after`. Matches the partial index on the same expression."""
    cutoff = (now or timezone.now()) - stale_after
    return executions.alias(last_seen_at=Coalesce("last_heartbeat_at", "created_at")).filter(
        status=ExecutionStatus.RUNNING, last_seen_at__lt=cutoff
    )


def executions_listable_by(user) -> QuerySet:
    """The same executions as executions_visible_to(user), with the permission resolved
    before the query (one cached lookup) so that an owner's list is a plain
    `created_by = user` that the per-owner index serves, page after page."""
    executions = Execution.objects.all()
    if not user.is_authenticated or not user.is_active:
        return executions.none()
    if user.is_superuser or user.has_perm(MANAGE_ALL_EXECUTIONS):
        return executions
    return executions.filter(created_by=user.pk)


def execution_get(executions: QuerySet, execution_id) -> Execution:
    """One execution of `executions` (see executions_visible_to), with its owner. An id that
    is not a UUID, a missing execution and an invisible one all raise ExecutionNotFound."""
    try:
        execution_id = uuid.UUID(str(execution_id))
    except ValueError:
        raise ExecutionNotFound() from None
    execution = executions.select_related("created_by").filter(pk=execution_id).first()
    if execution is None:
        raise ExecutionNotFound()
    return execution


def execution_status_changes(execution: Execution) -> QuerySet:
    """The audit records of one execution, oldest first."""
    return ExecutionStatusChange.objects.filter(execution=execution).order_by("created_at", "id")
