"""Reads of executions, scoped to what the caller may see."""

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Exists, F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from .models import Execution, ExecutionStatus

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


def execution_ids_streamed(executions: QuerySet, batch_size: int) -> Iterator[uuid.UUID]:
    """The ids of `executions`, in id order, read one page of `batch_size` at a time (keyset
    pagination: each page starts after the last id of the one before), so that memory stays
    flat and rows changed between pages cannot shift a page."""
    last_id = None
    while True:
        page = executions.order_by("pk")
        if last_id is not None:
            page = page.filter(pk__gt=last_id)
        ids = list(page.values_list("pk", flat=True)[:batch_size])
        yield from ids
        if len(ids) < batch_size:
            return
        last_id = ids[-1]


def executions_stale_streamed(stale: QuerySet, batch_size: int) -> Iterator[tuple[uuid.UUID, datetime]]:
    """(id, last_seen_at) of the executions of `stale` (from executions_stale), oldest sign of
    life first, one page of `batch_size` at a time. The pages follow the partial index on
    last_seen_at (keyset on last_seen_at, then id), so each page reads only its own rows."""
    page_query = stale.annotate(seen_at=F("last_seen_at")).order_by("seen_at", "pk")
    last = None
    while True:
        page = page_query
        if last is not None:
            last_seen_at, last_id = last
            page = page.filter(last_seen_at__gte=last_seen_at).exclude(
                last_seen_at=last_seen_at, pk__lte=last_id
            )
        rows = list(page.values_list("pk", "seen_at")[:batch_size])
        yield from rows
        if len(rows) < batch_size:
            return
        last = rows[-1][1], rows[-1][0]
