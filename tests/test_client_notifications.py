"""The client's notification operations against the service itself (its WSGI application,
in this process, through httpx's WSGI transport: the real views, database and answers, no
server): typed results, errors, and which calls are retried."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from executions_client import (
    ExecutionsClient,
    NotFoundError,
    NotificationDelivery,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from executions_client import (
    NotificationEndpoint as EndpointResult,
)

from executions.models import MessageState, NotificationEndpoint, NotificationMessage

from .factories import NotificationEndpointFactory, NotificationMessageFactory, api_key_for


@pytest.fixture
def service():
    """The service's WSGI application, on the test's database connection: as Django's test
    client does, requests do not close the connection (it holds the test's transaction)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def client(owner, service):
    transport = httpx.WSGITransport(app=service)
    with ExecutionsClient(
        "http://testserver", api_key_for(owner), transport=transport, retry_for=0
    ) as client:
        yield client


def test_create_get_list_update_delete(client, owner):
    created = client.create_notification_endpoint(
        "webhook", ["execution.failed"], url="https://hooks.example.com/a", name_prefix="nightly-"
    )
    assert isinstance(created, EndpointResult)
    assert created.secret == NotificationEndpoint.objects.get().secret
    assert (created.kind, created.url, created.emails, created.name_prefix) == (
        "webhook",
        "https://hooks.example.com/a",
        None,
        "nightly-",
    )
    assert created.created_at.tzinfo is not None

    fetched = client.get_notification_endpoint(created.id)
    assert fetched.secret is None and fetched.id == created.id
    assert [endpoint.id for endpoint in client.list_notification_endpoints(kind="webhook").results] == [
        created.id
    ]
    assert client.list_notification_endpoints(enabled=False).results == []

    changed = client.update_notification_endpoint(
        created.id, name_prefix=None, enabled=False, description="pager"
    )
    assert (changed.name_prefix, changed.enabled, changed.disabled_reason, changed.description) == (
        None,
        False,
        "owner",
        "pager",
    )
    assert changed.url == "https://hooks.example.com/a"  # left out: unchanged

    client.delete_notification_endpoint(created.id)
    with pytest.raises(NotFoundError) as missing:
        client.get_notification_endpoint(created.id)
    assert missing.value.error_code == "NOTIFICATION_ENDPOINT_NOT_FOUND"


def test_an_email_endpoint_and_a_refused_one(client):
    email = client.create_notification_endpoint("email", ["monitor.down"], emails=["ops@example.com"])
    assert (email.url, email.emails) == (None, ["ops@example.com"])
    with pytest.raises(UnprocessableEntityError) as refused:
        client.create_notification_endpoint("email", ["monitor.down"], url="https://x.example")
    assert [(item["loc"], item["type"]) for item in refused.value.errors] == [
        (["body", "url"], "field_not_allowed"),
        (["body", "emails"], "missing"),
    ]


def test_rotate_and_test(client, owner):
    endpoint = NotificationEndpointFactory(owner=owner)
    rotated = client.rotate_notification_secret(endpoint.pk)
    endpoint.refresh_from_db()
    assert rotated.secret == endpoint.secret and endpoint.previous_secret
    assert rotated.previous_secret_valid_until > datetime.now(UTC) + timedelta(hours=23)

    delivery = client.send_test_notification(endpoint.pk)
    assert isinstance(delivery, NotificationDelivery)
    assert (delivery.event_type, delivery.state, delivery.delivery_attempts) == (
        "notification.test",
        "pending",
        [],
    )
    assert client.get_notification_delivery(endpoint.pk, delivery.id).id == delivery.id


def test_deliveries_and_replay(client, owner):
    endpoint = NotificationEndpointFactory(owner=owner)
    failed = NotificationMessageFactory(endpoint=endpoint, attempts_made=2, state=MessageState.FAILED)
    pending = NotificationMessageFactory(endpoint=endpoint)

    page = client.list_notification_deliveries(endpoint.pk, page_size=1)
    assert [delivery.id for delivery in page.results] == [pending.webhook_id]
    rest = client.list_notification_deliveries(endpoint.pk, cursor=page.next_cursor)
    [gave_up] = rest.results
    assert (gave_up.id, gave_up.state, len(gave_up.delivery_attempts)) == (failed.webhook_id, "failed", 2)
    assert gave_up.delivery_attempts[0].status_code == 500 and gave_up.delivery_attempts[0].succeeded is False
    assert [
        item.id for item in client.list_notification_deliveries(endpoint.pk, state=["failed"]).results
    ] == [failed.webhook_id]

    assert client.replay_notification_delivery(endpoint.pk, failed.webhook_id).state == "pending"
    NotificationMessage.objects.filter(pk=failed.pk).update(state=MessageState.FAILED)
    assert client.replay_failed_notifications(endpoint.pk, datetime.now(UTC) - timedelta(hours=1)) == 1


def test_a_create_is_not_retried_once_it_may_have_reached_the_service(owner):
    tries = []

    def lost_answer(request):
        tries.append(request)
        raise httpx.ReadTimeout("the answer never came", request=request)

    client = ExecutionsClient(
        "http://service", "token", transport=httpx.MockTransport(lost_answer), retry_for=30
    )
    with pytest.raises(ServiceUnavailableError, match="not retried"):
        client.create_notification_endpoint("webhook", ["execution.failed"], url="https://x.example")
    assert len(tries) == 1


def test_a_create_is_retried_when_it_never_reached_the_service(monkeypatch):
    monkeypatch.setattr("executions_client.client.time.sleep", lambda seconds: None)
    answers = iter(
        [
            httpx.ConnectError("connection refused"),
            httpx.Response(503, json={"detail": "down", "error_code": "SERVICE_UNAVAILABLE"}),
        ]
    )

    def flaky(request):
        answer = next(answers, None)
        if isinstance(answer, Exception):
            raise answer
        return answer or httpx.Response(201, json=ENDPOINT_BODY)

    client = ExecutionsClient("http://service", "token", transport=httpx.MockTransport(flaky), retry_for=30)
    assert (
        client.create_notification_endpoint("webhook", ["execution.failed"], url="https://x.example").secret
        == "whsec_x"
    )


ENDPOINT_BODY = {
    "id": "01a24000-0000-7000-8000-000000000000",
    "kind": "webhook",
    "description": "",
    "url": "https://x.example",
    "emails": None,
    "events": ["execution.failed"],
    "name_prefix": None,
    "monitor": None,
    "enabled": True,
    "disabled_reason": None,
    "disabled_at": None,
    "failing_since": None,
    "previous_secret_valid_until": None,
    "owner": "owner",
    "created_at": "2026-12-05T10:00:00Z",
    "updated_at": "2026-12-05T10:00:00Z",
    "secret": "whsec_x",
}
