"""The admin's notification pages, through Django's test client: what an operator sees (the
endpoints, the ones the service disabled standing out, the deliveries with their attempts)
and what the actions do (send a test event, rotate a secret shown once, disable, enable,
replay)."""

import re
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.utils import timezone

from executions.models import (
    DeliveryAttempt,
    DisabledReason,
    MessageState,
    NotificationEndpoint,
    NotificationMessage,
)

from .factories import NotificationEndpointFactory, NotificationMessageFactory, UserFactory

ENDPOINTS = "/admin/executions/notificationendpoint/"
DELIVERIES = "/admin/executions/notificationmessage/"
PERMISSIONS = [
    "view_notificationendpoint",
    "change_notificationendpoint",
    "view_notificationmessage",
    "change_notificationmessage",
]


@pytest.fixture
def operator(db):
    """Staff who may see and change everyone's endpoints."""
    return UserFactory(
        username="operator", is_staff=True, permissions=[*PERMISSIONS, "manage_all_executions"]
    )


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def run_action(client, url, action, rows, **extra):
    return client.post(
        url,
        {"action": action, "index": 0, ACTION_CHECKBOX_NAME: [str(row.pk) for row in rows], **extra},
        follow=True,
    )


def page_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def text(response) -> str:
    return response.content.decode()


# --- Endpoints ---------------------------------------------------------------------------


def test_the_endpoint_list_shows_target_owner_events_and_state(operator, owner):
    NotificationEndpointFactory(
        owner=owner, url="https://hooks.example.com/pager", events=["execution.failed"]
    )
    NotificationEndpointFactory(
        owner=owner, kind="email", url="", emails=["ops@example.com"], events=["monitor.down"]
    )

    page = text(logged_in(operator).get(ENDPOINTS))

    for shown in (
        "https://hooks.example.com/pager",
        "ops@example.com",
        "execution.failed",
        "monitor.down",
        "owner",
    ):
        assert shown in page
    assert page.count('class="endpoint-state endpoint-enabled"') == 2


def test_endpoints_the_service_disabled_stand_out(operator, owner):
    now = timezone.now()
    NotificationEndpointFactory(
        owner=owner,
        url="https://gone.example.com/",
        enabled=False,
        disabled_reason=DisabledReason.FAILING,
        disabled_at=now,
        failing_since=now - timedelta(days=5),
    )
    NotificationEndpointFactory(
        owner=owner, enabled=False, disabled_reason=DisabledReason.OWNER, disabled_at=now
    )
    NotificationEndpointFactory(owner=owner, failing_since=now - timedelta(hours=3))

    response = logged_in(operator).get(ENDPOINTS)

    page = text(response)
    assert page_messages(response) == [
        "1 endpoint disabled by the service after failing (or answered 410 Gone): nothing is sent to them "
        "until they are enabled again."
    ]
    assert re.search(
        r'endpoint-service-disabled" style="color: #c62828">disabled: Every delivery failed', page
    )
    assert 'class="endpoint-state endpoint-disabled"' in page
    assert re.search(r'endpoint-failing" style="color: #ef6c00">enabled, failing since \d{4}-', page)
    only = text(logged_in(operator).get(ENDPOINTS, {"state": "service_disabled"}))
    assert "https://gone.example.com/" in only and only.count('class="endpoint-state ') == 1


def test_the_endpoint_page_shows_it_without_its_secret(operator, owner):
    endpoint = NotificationEndpointFactory(owner=owner, description="pager duty", name_prefix="nightly-")
    page = text(logged_in(operator).get(f"{ENDPOINTS}{endpoint.pk}/change/"))
    for shown in ("pager duty", "nightly-", endpoint.url, "Its deliveries", "one secret (shown once"):
        assert shown in page
    assert endpoint.secret not in page
    assert 'name="_save"' not in page


def test_rotating_shows_the_new_secret_once_on_a_page_never_cached(operator, owner):
    endpoint = NotificationEndpointFactory(owner=owner)
    old = endpoint.secret
    client = logged_in(operator)

    response = client.post(
        ENDPOINTS, {"action": "rotate_secret", "index": 0, ACTION_CHECKBOX_NAME: [str(endpoint.pk)]}
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [secret] = re.findall(r'<code class="endpoint-secret"[^>]*>([^<]+)</code>', text(response))
    endpoint.refresh_from_db()
    assert secret == endpoint.secret != old
    assert endpoint.previous_secret == old
    assert "Copy them now: they are not shown again." in text(response)
    assert secret not in text(client.get(ENDPOINTS))
    page = text(client.get(f"{ENDPOINTS}{endpoint.pk}/change/"))
    assert secret not in page and "the previous secret also signs until" in page


def test_send_test_disable_and_enable_from_the_list(operator, owner):
    endpoint = NotificationEndpointFactory(
        owner=owner, enabled=False, disabled_reason=DisabledReason.GONE, disabled_at=timezone.now()
    )
    client = logged_in(operator)

    tested = run_action(client, ENDPOINTS, "send_test", [endpoint])
    assert page_messages(tested)[0] == "Queued a test event for 1 endpoint; see their deliveries."
    assert "1 endpoint disabled by the service" in page_messages(tested)[1]
    assert NotificationMessage.objects.get().event_type == "notification.test"

    enabled = run_action(client, ENDPOINTS, "enable_selected", [endpoint])
    assert page_messages(enabled) == ["Enabled 1 endpoint."]  # and no warning any more
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at) == (True, "", None)

    disabled = run_action(client, ENDPOINTS, "disable_selected", [endpoint])
    assert page_messages(disabled) == ["Disabled 1 endpoint."]
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, DisabledReason.OWNER)


def test_staff_without_manage_all_see_and_act_on_their_own_endpoints_only(owner, other_user):
    staff = UserFactory(username="staff", is_staff=True, permissions=PERMISSIONS)
    mine = NotificationEndpointFactory(owner=staff, url="https://mine.example.com/")
    theirs = NotificationEndpointFactory(owner=other_user, url="https://theirs.example.com/")
    NotificationMessageFactory(endpoint=theirs)
    client = logged_in(staff)

    page = text(client.get(ENDPOINTS))
    assert "https://mine.example.com/" in page and "https://theirs.example.com/" not in page
    assert client.get(f"{ENDPOINTS}{theirs.pk}/change/").status_code == 302  # "does not exist" redirect
    assert "https://theirs.example.com/" not in text(client.get(DELIVERIES))
    before = NotificationEndpoint.objects.values().get(pk=theirs.pk)
    run_action(client, ENDPOINTS, "disable_selected", [mine, theirs])
    run_action(client, ENDPOINTS, "rotate_secret", [theirs])
    assert NotificationEndpoint.objects.values().get(pk=theirs.pk) == before
    assert NotificationEndpoint.objects.get(pk=mine.pk).enabled is False


def test_viewers_cannot_run_the_actions(owner):
    viewer = UserFactory(
        username="viewer",
        is_staff=True,
        permissions=["view_notificationendpoint", "view_notificationmessage", "manage_all_executions"],
    )
    endpoint = NotificationEndpointFactory(owner=owner)
    client = logged_in(viewer)
    assert 'name="action"' not in text(client.get(ENDPOINTS))
    run_action(client, ENDPOINTS, "rotate_secret", [endpoint])
    assert NotificationEndpoint.objects.get().secret == endpoint.secret


# --- Deliveries ----------------------------------------------------------------------------


def test_the_deliveries_list_shows_state_last_status_and_latency(operator, owner):
    endpoint = NotificationEndpointFactory(owner=owner, url="https://hooks.example.com/a")
    failing = NotificationMessageFactory(endpoint=endpoint, attempts_made=3)
    delivered = NotificationMessageFactory(endpoint=endpoint)
    DeliveryAttempt.objects.create(message=delivered, status_code=204, latency_ms=41, succeeded=True)
    NotificationMessage.objects.filter(pk=delivered.pk).update(state=MessageState.DELIVERED, attempts=1)
    no_answer = NotificationMessageFactory(endpoint=endpoint)
    DeliveryAttempt.objects.create(message=no_answer, latency_ms=15000, error="timed out after 15 s")

    page = text(logged_in(operator).get(DELIVERIES))

    row = {
        message: re.search(rf"{message.webhook_id}.*?</tr>", page, re.S).group(0)
        for message in (failing, delivered, no_answer)
    }
    assert "Pending" in row[failing] and '<td class="field-last_status">500</td>' in row[failing]
    assert "12 ms" in row[failing]
    assert "Delivered" in row[delivered] and "204" in row[delivered] and "41 ms" in row[delivered]
    assert "timed out after 15 s" in row[no_answer] and "15000 ms" in row[no_answer]


def test_the_deliveries_filter_by_state_and_endpoint(operator, owner):
    one = NotificationEndpointFactory(owner=owner, url="https://one.example.com/")
    two = NotificationEndpointFactory(owner=owner, url="https://two.example.com/")
    first = NotificationMessageFactory(endpoint=one)
    second = NotificationMessageFactory(endpoint=two, state=MessageState.FAILED)
    client = logged_in(operator)

    by_endpoint = text(client.get(DELIVERIES, {"endpoint": str(one.pk)}))
    assert first.webhook_id in by_endpoint and second.webhook_id not in by_endpoint
    by_state = text(client.get(DELIVERIES, {"state": "failed"}))
    assert second.webhook_id in by_state and first.webhook_id not in by_state
    assert client.get(DELIVERIES, {"endpoint": "not-a-uuid"}).status_code == 200


def test_a_delivery_page_shows_its_data_and_every_attempt(operator, owner):
    message = NotificationMessageFactory(endpoint=NotificationEndpointFactory(owner=owner), attempts_made=2)

    page = text(logged_in(operator).get(f"{DELIVERIES}{message.pk}/change/"))

    assert "Attempts (newest first)" in page
    assert page.count('<td class="field-status_code"><p>500</p></td>') == 2
    assert "oops" in page and "&quot;name&quot;: &quot;nightly&quot;" in page
    empty = NotificationMessageFactory(endpoint=message.endpoint)
    assert "No attempt yet." in text(logged_in(operator).get(f"{DELIVERIES}{empty.pk}/change/"))


def test_replaying_failed_deliveries_from_the_list(operator, owner):
    endpoint = NotificationEndpointFactory(owner=owner)
    failed = NotificationMessageFactory(endpoint=endpoint, attempts_made=8, state=MessageState.FAILED)
    pending = NotificationMessageFactory(endpoint=endpoint, attempts_made=2)

    response = run_action(logged_in(operator), DELIVERIES, "replay_selected", [failed, pending])

    assert page_messages(response) == [
        "1 delivery queued to be sent again; pending ones were left as they are."
    ]
    failed.refresh_from_db()
    pending.refresh_from_db()
    assert (failed.state, failed.attempts, failed.webhook_id) == (MessageState.PENDING, 0, failed.webhook_id)
    assert pending.attempts == 2
    assert DeliveryAttempt.objects.filter(message=failed).count() == 8
