"""The outbox, filled from the durable record: each audit record, in feed order, becomes one
message per endpoint that wants it.

Every channel that changes a status (the API, the admin, the commands, the worker) writes
an audit record in the transaction of the change, so reading the audit feed covers them all,
and a change that rolled back has no record to read. The fan-out reads the feed after its
position (selectors.status_changes_after: (transaction_id, id) order, with PostgreSQL's xmin
guard, so a record committed late is never skipped), and in one transaction moves the
position with a compare-and-set and inserts the messages: a record is fanned out once, by
one worker, even with several running.
"""

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from ..models import (
    ExecutionStatusChange,
    NotificationEndpoint,
    NotificationFeed,
    NotificationFeedPosition,
    NotificationMessage,
)
from ..selectors import sees_all_executions, status_changes_after
from ..statements import write_transaction
from .events import EVENT_OF_EXECUTION_STATUS, execution_event_data

# How often the fan-out looks at the feed when it found nothing new, in seconds: a change is
# on its way to a receiver within this (plus the delivery's own time).
POLL_INTERVAL_SECONDS = 0.25

_CHANGE_FIELDS = (
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


@dataclass(frozen=True)
class _Subscriber:
    """An enabled endpoint, with what it may see resolved once per batch."""

    endpoint_id: object
    events: frozenset
    name_prefix: str
    created_at: object
    sees_all: bool
    owner_id: int

    def wants_execution_change(self, event_type: str, change: dict) -> bool:
        return (
            event_type in self.events
            and change["created_at"] >= self.created_at
            and change["execution__name"].startswith(self.name_prefix)
            and (self.sees_all or change["execution__created_by_id"] == self.owner_id)
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
                endpoint.pk, events, endpoint.name_prefix, endpoint.created_at, sees_all, endpoint.owner_id
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


def fan_out_execution_changes(batch_size: int | None = None) -> int:
    """Turn the next `batch_size` status changes of the feed into messages; how many
    changes it read (0: none were new, or another worker took them first)."""
    batch_size = batch_size or settings.WORKER_BATCH_SIZE
    feed = NotificationFeed.EXECUTION_STATUS_CHANGES
    position = _position(feed)
    changes = list(
        status_changes_after(ExecutionStatusChange.objects.all(), position).values(*_CHANGE_FIELDS)[
            :batch_size
        ]
    )
    if not changes:
        return 0
    subscribers = _subscribers("execution.")
    messages = []
    for change in changes:
        event_type = EVENT_OF_EXECUTION_STATUS.get(change["new_status"])
        wanted_by = (
            [s for s in subscribers if s.wants_execution_change(event_type, change)] if event_type else []
        )
        if not wanted_by:
            continue
        data = _execution_change_data(change)
        messages += [
            NotificationMessage(
                endpoint_id=subscriber.endpoint_id,
                event_type=event_type,
                subject_id=str(change["execution_id"]),
                occurred_at=change["created_at"],
                payload=data,
            )
            for subscriber in wanted_by
        ]
    last = changes[-1]
    with write_transaction():
        if not _advance(feed, position, (last["transaction_id"], last["id"])):
            return 0  # another worker fanned these out meanwhile
        NotificationMessage.objects.bulk_create(messages)
    return len(changes)


def _execution_change_data(change: dict) -> dict:
    return execution_event_data(
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


def notifications_fan_out(now) -> float:
    """The worker task: fan out one batch of each feed; 0 when there may be more."""
    batch_size = settings.WORKER_BATCH_SIZE
    read = fan_out_execution_changes(batch_size)
    return 0 if read >= batch_size else POLL_INTERVAL_SECONDS
