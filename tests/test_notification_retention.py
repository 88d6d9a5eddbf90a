"""The purge keeps the outbox from growing: finished messages older than
NOTIFICATIONS_KEPT_FOR go, with their delivery log; pending ones stay whatever their age."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from executions.models import DeliveryAttempt, MessageState, NotificationEndpoint, NotificationMessage
from executions.retention.notifications import notification_messages_purge_expired
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint():
    return NotificationEndpoint.objects.create(
        owner=UserFactory(), kind="email", emails=["a@example.com"], events=["execution.failed"]
    )


def message(endpoint, state, finished_days_ago=None, subject="s"):
    now = timezone.now()
    made = NotificationMessage.objects.create(
        endpoint=endpoint,
        event_type="execution.failed",
        subject_id=subject,
        occurred_at=now,
        payload={},
        state=state,
        finished_at=None if finished_days_ago is None else now - timedelta(days=finished_days_ago),
    )
    DeliveryAttempt.objects.create(message=made, status_code=500, latency_ms=3, error="HTTP 500")
    return made


def purge(*args) -> dict:
    out = StringIO()
    call_command("purge_executions", "--finished-before", "90d", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


def test_the_purge_deletes_finished_messages_past_the_kept_for_time_with_their_log(endpoint, settings):
    settings.NOTIFICATIONS_KEPT_FOR = timedelta(days=30)
    old_delivered = message(endpoint, MessageState.DELIVERED, finished_days_ago=31)
    old_failed = message(endpoint, MessageState.FAILED, finished_days_ago=45)
    recent = message(endpoint, MessageState.DELIVERED, finished_days_ago=29)
    pending = message(endpoint, MessageState.PENDING)
    NotificationMessage.objects.filter(pk=pending.pk).update(created_at=timezone.now() - timedelta(days=400))

    assert purge("--dry-run")["would_delete_notification_messages"] == 2
    assert NotificationMessage.objects.count() == 4
    summary = purge()
    assert summary["deleted_notification_messages"] == 2
    assert set(NotificationMessage.objects.values_list("pk", flat=True)) == {recent.pk, pending.pk}
    assert set(DeliveryAttempt.objects.values_list("message_id", flat=True)) == {recent.pk, pending.pk}
    assert not DeliveryAttempt.objects.filter(message_id__in=[old_delivered.pk, old_failed.pk]).exists()


def test_the_purge_goes_in_batches(endpoint, settings):
    settings.NOTIFICATIONS_KEPT_FOR = timedelta(days=1)
    for n in range(25):
        message(endpoint, MessageState.DELIVERED, finished_days_ago=2 + n, subject=f"s-{n}")
    assert notification_messages_purge_expired(batch_size=10) == 25
    assert not NotificationMessage.objects.exists() and not DeliveryAttempt.objects.exists()
