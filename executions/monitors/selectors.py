"""Reads of monitors, scoped to what the caller may see: their owners see them, and so do
superusers and holders of manage_all_executions (the executions' rule, selectors.visibility_of)."""

import uuid

from django.db.models import F, QuerySet, Window
from django.db.models.functions import RowNumber

from ..errors import MonitorNotFound, UnknownMonitor
from ..models import Execution, Monitor, MonitorStateChange
from ..selectors import sees_all_executions


def monitors_visible_to(user) -> QuerySet:
    """The monitors `user` may see and change."""
    monitors = Monitor.objects.all()
    sees_all = sees_all_executions(user)
    if sees_all is None:
        return monitors.none()
    return monitors if sees_all else monitors.filter(owner=user.pk)


def _parse_monitor_id(monitor_id) -> uuid.UUID:
    if isinstance(monitor_id, uuid.UUID):
        return monitor_id
    try:
        return uuid.UUID(str(monitor_id))
    except ValueError:
        raise MonitorNotFound() from None


def monitor_get(monitors: QuerySet, monitor_id) -> Monitor:
    """One monitor of `monitors`, with its owner and last run. An id that is not a UUID, a
    missing monitor and an invisible one all raise MonitorNotFound."""
    monitor = (
        monitors.select_related("owner", "last_execution").filter(pk=_parse_monitor_id(monitor_id)).first()
    )
    if monitor is None:
        raise MonitorNotFound()
    return monitor


def monitor_for_run(user, reference: str) -> Monitor:
    """The monitor a run created by `user` belongs to, named by `reference`: the user's own
    monitor of that name; else, for a user who sees every monitor, the one monitor of that
    name, or the monitor with that id. Raises UnknownMonitor."""
    visible = monitors_visible_to(user)
    own = visible.filter(owner=user.pk, name=reference).first()
    if own is not None:
        return own
    try:
        by_id = visible.filter(pk=uuid.UUID(reference)).first()
    except ValueError:
        by_id = None
    if by_id is not None:
        return by_id
    named = list(visible.filter(name=reference)[:2])
    if len(named) == 1:
        return named[0]
    raise UnknownMonitor(reference, ambiguous=len(named) > 1)


def monitor_last_runs(monitor_ids: list, per_monitor: int) -> dict:
    """The last `per_monitor` runs of each monitor of `monitor_ids`, newest first, as
    {monitor_id: [Execution, ...]}, in one query (a window over the monitor's runs index),
    without their JSON fields."""
    runs = {monitor_id: [] for monitor_id in monitor_ids}
    if not monitor_ids:
        return runs
    ranked = (
        Execution.objects.filter(monitor_id__in=monitor_ids)
        .only("id", "name", "status", "created_at", "finished_at", "monitor_id")
        .annotate(rank=Window(RowNumber(), partition_by=F("monitor_id"), order_by=[F("created_at").desc()]))
        .filter(rank__lte=per_monitor)
        .order_by("monitor_id", "-created_at")
    )
    for run in ranked:
        runs[run.monitor_id].append(run)
    return runs


def monitor_state_changes(monitor: Monitor) -> QuerySet:
    """The state history of one monitor, oldest first."""
    return MonitorStateChange.objects.filter(monitor=monitor).order_by("id")


def monitor_state_changes_visible_to(user) -> QuerySet:
    """The state changes of the monitors `user` may see: with selectors.status_changes_after
    (which takes any queryset of records with transaction_id and id), a feed to follow."""
    changes = MonitorStateChange.objects.all()
    sees_all = sees_all_executions(user)
    if sees_all is None:
        return changes.none()
    return changes if sees_all else changes.filter(monitor__owner=user.pk)
