"""Writes to monitors: create, change, pause, resume, delete; a run's start; and the watch's
two tasks (the worker runs them): apply the runs' ends, and mark the late monitors missed.

Every change of a monitor's state goes through `_change_state`, which writes its record
(MonitorStateChange) in the same transaction. Every write runs in write_transaction().
Monitor rows are locked (select_for_update) before a read-modify-write, so a change made
through the API, the admin or a run never overwrites one the watch made meanwhile; the
watch's own change is a conditional UPDATE (still watched, still late)."""

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import metrics
from ..errors import MonitorNameTaken
from ..models import (
    WATCHED_STATES,
    Execution,
    ExecutionStatus,
    ExecutionStatusChange,
    Monitor,
    MonitorChangeChannel,
    MonitorRunFeedPosition,
    MonitorState,
    MonitorStateChange,
    MonitorStateReason,
)
from ..selectors import status_changes_after
from ..statements import write_transaction
from .schedules import Schedule, check_timezone, parse_schedule

# A run's end, by the status it ended in: a success, a failure, or neither (cancelled: a
# person stopped it on purpose, which says nothing about the job; docs/api.md).
RUN_SUCCEEDED = frozenset({ExecutionStatus.COMPLETED})
RUN_FAILED = frozenset({ExecutionStatus.FAILED, ExecutionStatus.INTERRUPTED})

# The watch's batches: monitors marked missed, and run ends applied, per transaction.
WATCH_BATCH_SIZE = 1000
# How often the worker looks for run ends when it found none (they are not scheduled).
FOLLOW_RUNS_EVERY = 0.5

# The one row of MonitorRunFeedPosition (migration 0010 makes it, with this id).
FEED_POSITION_ID = 1

# The fields of a monitor a person may change (the API's writable fields but `paused`).
EDITABLE_FIELDS = ("name", "schedule", "timezone", "grace_seconds", "max_runtime_seconds")


def _known_actor(actor):
    return actor if actor is not None and actor.is_authenticated else None


@dataclass(frozen=True)
class Actor:
    """Who or what makes a change: a user (or None: the system), a channel, a request id."""

    user: object = None
    channel: str = MonitorChangeChannel.WORKER
    correlation_id: str = ""


WORKER = Actor()


def _change_state(
    monitor: Monitor, new_state: str, reason: str | None, actor: Actor, at: datetime, execution_id=None
) -> MonitorStateChange | None:
    """Set the (locked) monitor's state and reason in memory, and return the record of the
    change to write, or None when nothing changes. The caller saves both."""
    if monitor.state == new_state and monitor.state_reason == reason:
        return None
    user = _known_actor(actor.user)
    record = MonitorStateChange(
        monitor_id=monitor.id,
        previous_state=monitor.state,
        new_state=new_state,
        reason=reason,
        execution_id=execution_id,
        actor=user,
        actor_username=user.get_username() if user is not None else "",
        channel=actor.channel,
        correlation_id=actor.correlation_id or "",
        created_at=at,
    )
    monitor.state, monitor.state_reason = new_state, reason
    return record


def _count_after_commit(records: list[MonitorStateChange]) -> None:
    if records:
        tally = Counter((record.new_state, record.reason or "", record.channel) for record in records)
        transaction.on_commit(lambda: metrics.count_monitor_state_changes(tally))


def _watch_from(monitor: Monitor, schedule: Schedule, moment: datetime) -> None:
    """Set when the monitor's next run is due, counting from `moment`, and when it is late."""
    grace = timedelta(seconds=monitor.grace_seconds)
    monitor.schedule_from = moment
    if monitor.last_started_at is not None and moment == monitor.last_started_at:
        monitor.next_due_at = schedule.next_due_after_start(moment, monitor.timezone, grace)
    else:
        monitor.next_due_at = schedule.next_due(moment, monitor.timezone)
    monitor.next_due_at = monitor.next_due_at.astimezone(UTC)  # stored and shown in UTC
    monitor.late_after = monitor.next_due_at + grace


def _unwatch(monitor: Monitor) -> None:
    monitor.next_due_at = monitor.late_after = None


def _locked(monitor_id) -> Monitor:
    return Monitor.objects.select_for_update().get(pk=monitor_id)


def monitor_create(
    *,
    owner,
    name: str,
    schedule: str,
    timezone_name: str = "UTC",
    grace_seconds: int,
    max_runtime_seconds: int | None = None,
    paused: bool = False,
    actor: Actor | None = None,
) -> Monitor:
    """A new monitor of `owner`: `new`, due by its schedule counting from now (or `paused`,
    not watched). Raises ScheduleError, MonitorNameTaken."""
    parsed = parse_schedule(schedule)
    now = timezone.now()
    monitor = Monitor(
        owner=owner,
        name=name,
        schedule=parsed.text,
        timezone=check_timezone(timezone_name),
        grace_seconds=grace_seconds,
        max_runtime_seconds=max_runtime_seconds,
        state=MonitorState.PAUSED if paused else MonitorState.NEW,
        schedule_from=now,
        created_at=now,
        updated_at=now,
    )
    if not paused:
        _watch_from(monitor, parsed, now)
    try:
        with write_transaction():
            monitor.save(force_insert=True)
    except IntegrityError:
        if Monitor.objects.filter(owner=owner, name=name).exists():
            raise MonitorNameTaken(name) from None
        raise
    return monitor


def monitor_update(*, monitor_id, changes: dict, actor: Actor) -> Monitor:
    """Change the fields of `changes` (EDITABLE_FIELDS, and `paused`) of one monitor.

    A new schedule, time zone or grace recomputes when the next run is due, from the last
    start (or from when it was created or resumed); if that moment has passed already, from
    now: a change never makes a monitor late at once. `paused: true` pauses it (not watched;
    runs change nothing); `paused: false` resumes a paused one as `new`, counting from now.
    Raises ScheduleError, MonitorNameTaken, Monitor.DoesNotExist."""
    unknown = set(changes) - {*EDITABLE_FIELDS, "paused"}
    if unknown:
        raise ValueError(f"Not editable: {sorted(unknown)}")
    schedule = parse_schedule(changes["schedule"]) if "schedule" in changes else None
    if "timezone" in changes:
        check_timezone(changes["timezone"])
    now = timezone.now()
    try:
        with write_transaction():
            monitor = _locked(monitor_id)
            records = []
            for field in EDITABLE_FIELDS:
                if field in changes:
                    setattr(monitor, field, schedule.text if field == "schedule" else changes[field])
            schedule = schedule or parse_schedule(monitor.schedule)
            pause = changes.get("paused")
            if pause is True and monitor.state != MonitorState.PAUSED:
                records.append(_change_state(monitor, MonitorState.PAUSED, None, actor, now))
                _unwatch(monitor)
            elif pause is False and monitor.state == MonitorState.PAUSED:
                records.append(_change_state(monitor, MonitorState.NEW, None, actor, now))
                _watch_from(monitor, schedule, now)
            elif monitor.state != MonitorState.PAUSED and {"schedule", "timezone", "grace_seconds"} & set(
                changes
            ):
                _watch_from(monitor, schedule, monitor.schedule_from)
                if monitor.late_after <= now:
                    _watch_from(monitor, schedule, now)
            monitor.updated_at = now
            monitor.save()
            records = [record for record in records if record is not None]
            MonitorStateChange.objects.bulk_create(records)
            _count_after_commit(records)
    except IntegrityError:
        if "name" in changes:
            raise MonitorNameTaken(changes["name"]) from None
        raise
    return monitor


def monitor_delete(*, monitor_id) -> None:
    """Delete one monitor and its state history; its runs stay, as runs of no monitor."""
    with write_transaction():
        Execution.objects.filter(monitor_id=monitor_id).update(monitor=None)
        Monitor.objects.filter(pk=monitor_id).delete()


def monitor_record_start(*, monitor_id, execution: Execution, actor: Actor) -> None:
    """A run of the monitor was created (inside the transaction that creates it): it is the
    monitor's last run, the schedule counts from its start, and a `new` monitor is `up`.
    A `down` monitor stays down until a run succeeds; a paused one is not watched."""
    monitor = _locked(monitor_id)
    started_at = execution.created_at
    monitor.last_execution_id = execution.id
    monitor.last_started_at = started_at
    monitor.updated_at = started_at
    records = []
    if monitor.state != MonitorState.PAUSED:
        _watch_from(monitor, parse_schedule(monitor.schedule), started_at)
        if monitor.state == MonitorState.NEW:
            records.append(_change_state(monitor, MonitorState.UP, None, actor, started_at, execution.id))
    monitor.save()
    MonitorStateChange.objects.bulk_create(records)
    _count_after_commit(records)


def state_after_run_end(state: str, reason: str | None, status: str) -> tuple[str, str | None] | None:
    """The (state, reason) a monitor moves to when one of its runs ends in `status`, or None
    when it does not move. A success: up. A failure: down, `failed`. Cancelled: no move.
    A paused monitor never moves."""
    if state == MonitorState.PAUSED:
        return None
    if status in RUN_SUCCEEDED and state != MonitorState.UP:
        return MonitorState.UP, None
    if status in RUN_FAILED and (state, reason) != (MonitorState.DOWN, MonitorStateReason.FAILED):
        return MonitorState.DOWN, MonitorStateReason.FAILED
    return None


def _feed_position() -> MonitorRunFeedPosition | None:
    """The position row, locked; None when another worker holds it (PostgreSQL: SKIP LOCKED,
    so that workers do not queue on it, each holding a transaction id that would hold the
    feed back). Created at the start of the feed if there is none (a test flushed the tables)."""
    position = (
        MonitorRunFeedPosition.objects.select_for_update(skip_locked=True).filter(pk=FEED_POSITION_ID).first()
    )
    if position is None and not MonitorRunFeedPosition.objects.filter(pk=FEED_POSITION_ID).exists():
        try:
            # One fixed id: of several workers creating it at once, one wins, the others skip.
            with transaction.atomic():
                position = MonitorRunFeedPosition.objects.create(pk=FEED_POSITION_ID)
        except IntegrityError:
            return None
    return position


def monitors_follow_runs(now: datetime | None = None, *, batch_size: int = WATCH_BATCH_SIZE) -> float:
    """A task of the worker: apply the ends of runs to their monitors, in the order the
    changes were made, from the executions' audit records (the change feed).

    Each record is written in the transaction of its status change, whatever the channel
    (API, admin, commands, the worker's deadlines), so reading them misses none, and a change
    that rolled back is never seen. The position is locked and moved in the transaction that
    applies the batch: with several workers each end is applied exactly once, and a worker
    killed halfway leaves the batch to the next. Returns the seconds until it should look
    again: 0 when a full batch was taken (more may wait), else FOLLOW_RUNS_EVERY."""
    now = now or timezone.now()
    with write_transaction():
        position = _feed_position()
        if position is None:
            return FOLLOW_RUNS_EVERY  # another worker is applying the next batch
        changes = list(
            status_changes_after(
                ExecutionStatusChange.objects.all(), (position.transaction_id, position.change_id)
            ).values_list(
                "transaction_id",
                "id",
                "execution_id",
                "execution__monitor_id",
                "new_status",
                "actor_id",
                "channel",
                "correlation_id",
                "created_at",
            )[:batch_size]
        )
        if not changes:
            return FOLLOW_RUNS_EVERY
        ends = [change for change in changes if change[3] is not None]
        monitors = {
            monitor.id: monitor
            for monitor in Monitor.objects.select_for_update()
            .filter(pk__in={change[3] for change in ends})
            .order_by("pk")
        }
        actors = _users({change[5] for change in ends if change[5] is not None})
        records, moved = [], set()
        for _, _, execution_id, monitor_id, status, actor_id, channel, correlation_id, at in ends:
            monitor = monitors.get(monitor_id)
            target = monitor and state_after_run_end(monitor.state, monitor.state_reason, status)
            if target:
                actor = Actor(actors.get(actor_id), channel, correlation_id)
                records.append(_change_state(monitor, *target, actor, at, execution_id))
                monitor.updated_at = now
                moved.add(monitor_id)
        for monitor_id in moved:
            monitor = monitors[monitor_id]
            Monitor.objects.filter(pk=monitor_id).update(
                state=monitor.state, state_reason=monitor.state_reason, updated_at=now
            )
        MonitorStateChange.objects.bulk_create(records)
        _count_after_commit(records)
        position.transaction_id, position.change_id = changes[-1][0], changes[-1][1]
        position.updated_at = now
        position.save()
    return 0.0 if len(changes) == batch_size else FOLLOW_RUNS_EVERY


def _users(user_ids: set) -> dict:
    from django.contrib.auth import get_user_model

    return {user.pk: user for user in get_user_model().objects.filter(pk__in=user_ids)} if user_ids else {}


def monitors_mark_missed(now: datetime | None = None, *, batch_size: int = WATCH_BATCH_SIZE) -> float | None:
    """A task of the worker: every watched monitor (`new` or `up`) whose `late_after` has
    passed goes `down`, reason `missed`, with its record, `batch_size` per transaction.

    The late monitors are locked, skipping those another worker holds (PostgreSQL; on SQLite
    one writer at a time), and changed by a conditional UPDATE (only if still in the state
    they were read in, and still late): with several workers each transition happens
    exactly once.
    Returns the seconds until the next watched monitor is late (0: more are late now), or
    None when no monitor is watched."""
    now = now or timezone.now()
    while True:
        with write_transaction():
            late = list(
                Monitor.objects.select_for_update(skip_locked=True)
                .filter(state__in=WATCHED_STATES, late_after__lte=now)
                .order_by("late_after")
                .values_list("id", "state", "late_after")[:batch_size]
            )
            # Still watched and still late: the condition holds for every row locked above
            # (a start, a pause or a run's end would have moved it, and waits for the lock).
            for state in WATCHED_STATES:
                ids = [monitor_id for monitor_id, monitor_state, _ in late if monitor_state == state]
                changed = Monitor.objects.filter(pk__in=ids, state=state, late_after__lte=now).update(
                    state=MonitorState.DOWN, state_reason=MonitorStateReason.MISSED, updated_at=now
                )
                if changed != len(ids):
                    raise RuntimeError(f"{changed} of {len(ids)} locked late monitors changed")
            records = [
                MonitorStateChange(
                    monitor_id=monitor_id,
                    previous_state=state,
                    new_state=MonitorState.DOWN,
                    reason=MonitorStateReason.MISSED,
                    channel=MonitorChangeChannel.WORKER,
                    created_at=now,
                )
                for monitor_id, state, _ in late
            ]
            MonitorStateChange.objects.bulk_create(records)
            _count_after_commit(records)
        if len(late) < batch_size:
            break
    upcoming = (
        Monitor.objects.filter(state__in=WATCHED_STATES, late_after__isnull=False)
        .order_by("late_after")
        .values_list("late_after", flat=True)
        .first()
    )
    if upcoming is None:
        return None
    return max((upcoming - now).total_seconds(), 0.0)
