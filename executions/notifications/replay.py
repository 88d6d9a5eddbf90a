"""Replay: send a message again, or every failed message of an endpoint since a time.

A replayed message is pending again, due at once, with a new retry schedule (its attempt
count starts over; the delivery log keeps every earlier attempt). It keeps its webhook-id, so
a receiver that already has it recognizes it. A pending message is left alone: it is already
due or retried, and moving the due time of one a worker holds could send it twice at once."""

from datetime import datetime

from django.utils import timezone

from ..db.statements import write_transaction
from ..models import MessageState, NotificationEndpoint, NotificationMessage


def _pending_again(now: datetime) -> dict:
    return {
        "state": MessageState.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "finished_at": None,
        "claim_token": None,
    }


def message_replay(message: NotificationMessage) -> bool:
    """Queue `message` to be sent again, if it is delivered or failed; whether it was."""
    with write_transaction(single_statement=True):
        replayed = (
            NotificationMessage.objects.filter(pk=message.pk)
            .exclude(state=MessageState.PENDING)
            .update(**_pending_again(timezone.now()))
        )
    return bool(replayed)


def messages_replay_failed_since(endpoint: NotificationEndpoint, since: datetime) -> int:
    """Queue every failed message of `endpoint` created at or after `since` to be sent
    again, in one statement; how many."""
    with write_transaction(single_statement=True):
        return NotificationMessage.objects.filter(
            endpoint=endpoint, state=MessageState.FAILED, created_at__gte=since
        ).update(**_pending_again(timezone.now()))
