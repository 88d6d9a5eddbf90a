"""The outbox, filled from the durable record: each audit record, in feed order, becomes one
message per endpoint that wants it.

Two feeds: the executions' status changes (ExecutionStatusChange) and the monitors' state
changes (MonitorStateChange). Every channel that changes a status or a state (the API, the
admin, the commands, the worker) writes the audit record in the transaction of the change,
so reading the feeds covers them all, and a change that rolled back has no record to read.
The fan-out reads a feed after its position (selectors.status_changes_after: (transaction_id,
id) order, with PostgreSQL's xmin guard, so a record committed late is never skipped), and
in one transaction moves the position with a compare-and-set and inserts the messages: a
record is fanned out once, by one worker, even with several running.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from ..models import (
    ExecutionStatusChange,
    MonitorState,
    MonitorStateChange,
    NotificationEndpoint,
    NotificationFeed,
    NotificationFeedPosition,
    NotificationMessage,
)
from ..selectors import sees_all_executions, status_changes_after
from ..statements import write_transaction
from .delivery import look_for_new_messages
from .events import EVENT_OF_EXECUTION_STATUS, execution_event_data, monitor_event_data

# How often the fan-out looks at the feeds when it found nothing new, in seconds: a change is
# on its way to a receiver within this (plus the delivery's own time).
POLL_INTERVAL_SECONDS = 0.25

_EXECUTION_CHANGE_FIELDS = (
    "id",
    "transaction_id",
    "execution_id",
    "previous_status",
    "new_status",
    "error_info",
    "actor_username",
    "channel",
    "correlation_id",
    "created_at",
    "execution__name",
    "execution__metadata",
    "execution__created_by_id",
    "execution__created_by__username",
)
_MONITOR_CHANGE_FIELDS = (
    "id",
    "transaction_id",
    "monitor_id",
    "previous_state",
    "new_state",
    "reason",
    "execution_id",
    "actor_username",
    "channel",
    "correlation_id",
    "created_at",
    "monitor__name",
    "monitor__owner_id",
    "monitor__owner__username",
)


@dataclass(frozen=True)
class _Subscriber:
    """An enabled endpoint, with what its owner may see resolved once per batch."""

    endpoint_id: object
    events: frozenset
    name_prefix: str
    monitor_id: object
    created_at: object
    sees_all: bool
    owner_id: int

    def wants(self, event_type: str | None, change: dict, owner_id: int | None) -> bool:
        """Whether a change made after the endpoint, about something owned by `owner_id`,
        is for it: its event, and what its owner may see."""
        return (
            event_type in self.events
            and change["created_at"] >= self.created_at
            and (self.sees_all or owner_id == self.owner_id)
        )

    def wants_execution_change(self, event_type: str | None, change: dict) -> bool:
        return self.wants(event_type, change, change["execution__created_by_id"]) and change[
            "execution__name"
        ].startswith(self.name_prefix)

    def wants_monitor_change(self, event_type: str | None, change: dict) -> bool:
        return self.wants(event_type, change, change["monitor__owner_id"]) and (
            self.monitor_id is None or self.monitor_id == change["monitor_id"]
        )


def _subscribers(event_prefix: str) -> list[_Subscriber]:
    """The enabled endpoints subscribed to some event starting with `event_prefix`, whose
    owners may see something (selectors.sees_all_executions: not an inactive owner)."""
    subscribers = []
    for endpoint in NotificationEndpoint.objects.filter(enabled=True).select_related("owner"):
        events = frozenset(endpoint.events)
        if not any(event.startswith(event_prefix) for event in events):
            continue
        sees_all = sees_all_executions(endpoint.owner)
        if sees_all is None:
            continue  # an inactive owner sees nothing
        subscribers.append(
            _Subscriber(
                endpoint.pk,
                events,
                endpoint.name_prefix,
                endpoint.monitor_id,
                endpoint.created_at,
                sees_all,
                endpoint.owner_id,
            )
        )
    return subscribers


def _position(feed: str) -> tuple[int, int]:
    row = (
        NotificationFeedPosition.objects.filter(feed=feed).values_list("transaction_id", "change_id").first()
    )
    return row or (0, 0)


def _advance(feed: str, old: tuple[int, int], new: tuple[int, int]) -> bool:
    """Move `feed` from `old` to `new` if it is still at `old` (the compare-and-set that makes
    one worker, of several reading the same records, the one that fans them out)."""
    if old == (0, 0) and not NotificationFeedPosition.objects.filter(feed=feed).exists():
        NotificationFeedPosition.objects.get_or_create(feed=feed)
    moved = NotificationFeedPosition.objects.filter(
        feed=feed, transaction_id=old[0], change_id=old[1]
    ).update(transaction_id=new[0], change_id=new[1], updated_at=timezone.now())
    return moved == 1


def _fan_out(
    feed: str,
    records: QuerySet,
    fields: tuple[str, ...],
    batch_size: int,
    to_messages: Callable[[list[dict]], list[NotificationMessage]],
) -> int:
    """Turn the next `batch_size` records of `feed` into messages; how many records it read
    (0: none were new, or another worker took them first)."""
    position = _position(feed)
    changes = list(status_changes_after(records, position).values(*fields)[:batch_size])
    if not changes:
        return 0
    messages = to_messages(changes)
    last = changes[-1]
    with write_transaction():
        if not _advance(feed, position, (last["transaction_id"], last["id"])):
            return 0  # another worker fanned these out meanwhile
        NotificationMessage.objects.bulk_create(messages)
    if messages:
        look_for_new_messages()
    return len(changes)


def fan_out_execution_changes(batch_size: int | None = None) -> int:
    """Fan out the next `batch_size` status changes of executions; how many were read."""
    return _fan_out(
        NotificationFeed.EXECUTION_STATUS_CHANGES,
        ExecutionStatusChange.objects.all(),
        _EXECUTION_CHANGE_FIELDS,
        batch_size or settings.WORKER_BATCH_SIZE,
        _execution_messages,
    )


def fan_out_monitor_changes(batch_size: int | None = None) -> int:
    """Fan out the next `batch_size` state changes of monitors; how many were read."""
    return _fan_out(
        NotificationFeed.MONITOR_STATE_CHANGES,
        MonitorStateChange.objects.all(),
        _MONITOR_CHANGE_FIELDS,
        batch_size or settings.WORKER_BATCH_SIZE,
        _monitor_messages,
    )


def _execution_messages(changes: list[dict]) -> list[NotificationMessage]:
    subscribers = _subscribers("execution.")
    messages = []
    for change in changes:
        event_type = EVENT_OF_EXECUTION_STATUS.get(change["new_status"])
        wanted_by = [s for s in subscribers if s.wants_execution_change(event_type, change)]
        if wanted_by:
            data = execution_event_data(
                execution_id=change["execution_id"],
                name=change["execution__name"],
                owner=change["execution__created_by__username"],
                metadata=change["execution__metadata"],
                change_id=change["id"],
                previous_status=change["previous_status"],
                current_status=change["new_status"],
                error_info=change["error_info"],
                actor=change["actor_username"] or None,
                channel=change["channel"],
                correlation_id=change["correlation_id"],
                changed_at=change["created_at"],
            )
            messages += _messages(wanted_by, event_type, str(change["execution_id"]), change, data)
    return messages


def monitor_event_type(previous_state: str, new_state: str) -> str | None:
    """The event of a monitor's state change: `monitor.down` when it goes down (not when only
    the reason of a down monitor changes), `monitor.up` when a down one recovers; other
    changes (new, paused, resumed, a first success) tell nobody."""
    if new_state == MonitorState.DOWN and previous_state != MonitorState.DOWN:
        return "monitor.down"
    if new_state == MonitorState.UP and previous_state == MonitorState.DOWN:
        return "monitor.up"
    return None


def _monitor_messages(changes: list[dict]) -> list[NotificationMessage]:
    subscribers = _subscribers("monitor.")
    messages = []
    for change in changes:
        event_type = monitor_event_type(change["previous_state"], change["new_state"])
        wanted_by = [s for s in subscribers if s.wants_monitor_change(event_type, change)]
        if wanted_by:
            data = monitor_event_data(
                monitor_id=change["monitor_id"],
                name=change["monitor__name"],
                owner=change["monitor__owner__username"],
                change_id=change["id"],
                previous_state=change["previous_state"],
                current_state=change["new_state"],
                reason=change["reason"],
                run_id=change["execution_id"],
                actor=change["actor_username"] or None,
                channel=change["channel"],
                correlation_id=change["correlation_id"],
                changed_at=change["created_at"],
            )
            messages += _messages(wanted_by, event_type, str(change["monitor_id"]), change, data)
    return messages


def _messages(subscribers, event_type: str, subject_id: str, change: dict, data: dict) -> list:
    return [
        NotificationMessage(
            endpoint_id=subscriber.endpoint_id,
            event_type=event_type,
            subject_id=subject_id,
            occurred_at=change["created_at"],
            payload=data,
        )
        for subscriber in subscribers
    ]


def notifications_fan_out(now) -> float:
    """The worker task: fan out one batch of each feed; 0 when there may be more."""
    batch_size = settings.WORKER_BATCH_SIZE
    read = max(fan_out_execution_changes(batch_size), fan_out_monitor_changes(batch_size))
    return 0 if read >= batch_size else POLL_INTERVAL_SECONDS
