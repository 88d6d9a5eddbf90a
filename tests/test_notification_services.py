"""Endpoint services (what is refused, rotation, enable and disable, the test event) and
replay, down to what the receiver gets."""

from datetime import timedelta

import pytest
from django.utils import timezone

from executions.models import DeliveryAttempt, MessageState, NotificationEndpoint, NotificationMessage
from executions.notifications.delivery import NotificationDelivery, secrets_in_use
from executions.notifications.services import (
    InvalidEndpoint,
    notification_endpoint_create,
    notification_endpoint_rotate_secret,
    notification_endpoint_send_test,
    notification_endpoint_set_enabled,
    notification_endpoint_update,
    notification_message_replay,
    notification_messages_replay_failed,
)
from tests.factories import UserFactory
from tests.notifications import receiver_process, run_tasks_until

URL = "https://hooks.example.com/in"


@pytest.fixture
def owner(db):
    return UserFactory(username="alice")


def create(owner, **fields):
    return notification_endpoint_create(
        owner=owner, **{"kind": "webhook", "url": URL, "events": ["execution.failed"], **fields}
    )


def test_a_new_endpoint_is_enabled_with_a_secret_of_its_own(owner):
    first, second = (
        create(owner),
        create(owner, events=["execution.failed", "execution.failed", "monitor.down"]),
    )
    assert first.enabled and first.secret.startswith("whsec_") and first.secret != second.secret
    assert second.events == ["execution.failed", "monitor.down"]  # each once
    assert first.id.version == 7


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"kind": "sms"}, "kind", "must be one of webhook, slack, email"),
        ({"url": ""}, "url", "a webhook endpoint needs a URL"),
        ({"kind": "slack", "url": ""}, "url", "a slack endpoint needs a URL"),
        ({"url": "ftp://example.com/"}, "url", "http:// or https://"),
        ({"emails": ["a@example.com"]}, "emails", "a webhook endpoint has a URL, not email addresses"),
        ({"kind": "email", "url": URL, "emails": ["a@example.com"]}, "url", "an email endpoint has no URL"),
        ({"kind": "email", "url": "", "emails": []}, "emails", "at least one address"),
        (
            {"kind": "email", "url": "", "emails": ["not-an-address"]},
            "emails",
            "'not-an-address' is not an email",
        ),
        (
            {"kind": "email", "url": "", "emails": [f"u{n}@example.com" for n in range(21)]},
            "emails",
            "at most 20",
        ),
        ({"events": []}, "events", "at least one event"),
        ({"events": ["execution.started"]}, "events", "unknown event 'execution.started'"),
        ({"events": ["notification.test"]}, "events", "unknown event 'notification.test'"),
    ],
)
def test_what_an_endpoint_may_not_be(owner, fields, field, message):
    with pytest.raises(InvalidEndpoint, match=message) as refused:
        create(owner, **fields)
    assert refused.value.field == field
    assert not NotificationEndpoint.objects.exists()


def test_an_update_is_checked_as_a_whole(owner):
    endpoint = create(owner)
    with pytest.raises(InvalidEndpoint, match="an email endpoint has no URL"):
        notification_endpoint_update(endpoint, kind="email")
    updated = notification_endpoint_update(endpoint, kind="email", url="", emails=["ops@example.com"])
    assert (updated.kind, updated.url, updated.emails) == ("email", "", ["ops@example.com"])
    with pytest.raises(TypeError, match="not editable here: secret"):
        notification_endpoint_update(endpoint, secret="whsec_x")


def signing_secrets(endpoint, now):
    return secrets_in_use(endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_expires_at, now)


def test_rotation_keeps_the_previous_secret_for_24_hours(owner):
    endpoint = create(owner)
    old = endpoint.secret
    now = timezone.now()
    new = notification_endpoint_rotate_secret(endpoint, now=now)
    assert (endpoint.secret, endpoint.previous_secret) == (new, old)
    assert endpoint.previous_secret_expires_at == now + timedelta(hours=24)
    assert signing_secrets(endpoint, now + timedelta(hours=23)) == (new, old)
    assert signing_secrets(endpoint, now + timedelta(hours=24, seconds=1)) == (new,)
    newest = notification_endpoint_rotate_secret(endpoint, now=now + timedelta(hours=1))
    assert signing_secrets(endpoint, now + timedelta(hours=2)) == (newest, new)  # the first one is gone


def test_disabling_and_enabling(owner):
    endpoint = create(owner)
    NotificationEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now())
    disabled = notification_endpoint_set_enabled(endpoint, False)
    assert (disabled.enabled, disabled.disabled_reason) == (False, "owner") and disabled.disabled_at
    enabled = notification_endpoint_set_enabled(endpoint, True)
    assert (enabled.enabled, enabled.disabled_reason, enabled.disabled_at, enabled.failing_since) == (
        True,
        "",
        None,
        None,
    )


def message_for(endpoint, state, *, created_at=None, subject="s"):
    message = NotificationMessage.objects.create(
        endpoint=endpoint,
        event_type="execution.failed",
        subject_id=subject,
        occurred_at=timezone.now(),
        payload={"id": subject},
        state=state,
        attempts=8 if state == MessageState.FAILED else 1,
        finished_at=None if state == MessageState.PENDING else timezone.now(),
    )
    if created_at:
        NotificationMessage.objects.filter(pk=message.pk).update(created_at=created_at)
    return message


def state_of(message):
    message.refresh_from_db()
    return message.state, message.attempts


def test_replaying_failed_messages_since_a_time_resends_only_those(owner):
    endpoint, other_endpoint = create(owner), create(owner)
    now = timezone.now()
    recent = message_for(endpoint, MessageState.FAILED, created_at=now - timedelta(hours=1))
    too_old = message_for(endpoint, MessageState.FAILED, created_at=now - timedelta(days=3))
    delivered = message_for(endpoint, MessageState.DELIVERED, created_at=now - timedelta(hours=1))
    elsewhere = message_for(other_endpoint, MessageState.FAILED, created_at=now - timedelta(hours=1))

    result = notification_messages_replay_failed(endpoint, since=now - timedelta(days=1))
    assert result.replayed == 1
    assert state_of(recent) == (MessageState.PENDING, 0)
    assert recent.next_attempt_at <= timezone.now() and recent.finished_at is None
    assert state_of(too_old) == (MessageState.FAILED, 8)
    assert state_of(delivered) == (MessageState.DELIVERED, 1)
    assert state_of(elsewhere) == (MessageState.FAILED, 8)


def test_replaying_one_message_and_a_pending_one_is_left_alone(owner):
    endpoint = create(owner)
    delivered = message_for(endpoint, MessageState.DELIVERED)
    pending = message_for(endpoint, MessageState.PENDING, subject="p")
    assert notification_message_replay(delivered).replayed == 1
    assert state_of(delivered) == (MessageState.PENDING, 0)
    assert notification_message_replay(pending).replayed == 0


def test_a_replayed_message_reaches_the_receiver_again_with_the_same_id(owner, tmp_path):
    with receiver_process(tmp_path) as receiver:
        endpoint = create(owner, url=receiver.url("/hook"))
        receiver.route("/hook", endpoint.secret, statuses=[500, 200])
        failed = message_for(endpoint, MessageState.FAILED)
        notification_messages_replay_failed(endpoint, since=timezone.now() - timedelta(hours=1))
        delivery = NotificationDelivery()
        run_tasks_until(lambda: DeliveryAttempt.objects.filter(message=failed).exists(), delivery=delivery)
        assert state_of(failed) == (MessageState.PENDING, 1)  # failed again: back on the schedule

        notification_message_replay(failed)  # pending: nothing to do
        NotificationMessage.objects.filter(pk=failed.pk).update(state=MessageState.FAILED)
        notification_message_replay(failed)
        run_tasks_until(lambda: state_of(failed)[0] == MessageState.DELIVERED, delivery=delivery)
        assert [(r["webhook_id"], r["status"], r["verified"]) for r in receiver.requests()] == [
            (failed.webhook_id, 500, True),
            (failed.webhook_id, 200, True),
        ]


def test_the_test_event_reaches_the_receiver(owner, tmp_path):
    with receiver_process(tmp_path) as receiver:
        endpoint = create(owner, url=receiver.url("/hook"))
        receiver.route("/hook", endpoint.secret)
        message = notification_endpoint_send_test(endpoint)
        run_tasks_until(
            lambda: state_of(message)[0] == MessageState.DELIVERED, delivery=NotificationDelivery()
        )
        [request] = receiver.requests()
        assert (request["type"], request["verified"]) == ("notification.test", True)
