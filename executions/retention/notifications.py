"""Retention of the notifications' outbox: delivered and given-up messages, with their
delivery log, are kept NOTIFICATIONS_KEPT_FOR after they finished; pending ones always."""

from datetime import datetime

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from ..models import DeliveryAttempt, NotificationMessage
from ..statements import write_transaction


def notification_messages_expired(now: datetime | None = None) -> QuerySet:
    """Messages that finished (delivered or failed) longer than NOTIFICATIONS_KEPT_FOR ago.
    A pending message has no finished_at, so it is never among them."""
    cutoff = (now or timezone.now()) - settings.NOTIFICATIONS_KEPT_FOR
    return NotificationMessage.objects.filter(finished_at__lt=cutoff)


def notification_messages_purge_expired(*, batch_size: int | None = None, now: datetime | None = None) -> int:
    """Delete the expired messages and their delivery attempts, oldest first, `batch_size`
    messages per transaction; how many messages were deleted."""
    batch_size = batch_size or settings.EXECUTIONS_BULK_BATCH_SIZE
    now = now or timezone.now()
    deleted = 0
    while True:
        with write_transaction():
            ids = list(
                notification_messages_expired(now)
                .order_by("finished_at")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return deleted
            # The attempts first, in one statement, rather than through the cascade (which
            # loads every attempt into Python to look for what depends on it).
            DeliveryAttempt.objects.filter(message_id__in=ids)._raw_delete(DeliveryAttempt.objects.db)
            deleted += NotificationMessage.objects.filter(pk__in=ids)._raw_delete(
                NotificationMessage.objects.db
            )
