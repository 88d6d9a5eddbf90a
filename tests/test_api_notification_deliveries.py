"""An endpoint's deliveries (its messages and every attempt), and replay: of one message, and
of every failed message since a time."""

from datetime import timedelta

import pytest
from django.utils import timezone

from executions.models import MessageState, NotificationMessage

from .factories import NotificationEndpointFactory, NotificationMessageFactory

ENDPOINTS = "/api/v1/notification-endpoints"


def deliveries_url(endpoint) -> str:
    return f"{ENDPOINTS}/{endpoint.pk}/deliveries"


@pytest.fixture
def endpoint(owner):
    return NotificationEndpointFactory(owner=owner)


def failed(endpoint, **fields):
    message = NotificationMessageFactory(endpoint=endpoint, attempts_made=8, **fields)
    NotificationMessage.objects.filter(pk=message.pk).update(
        state=MessageState.FAILED, finished_at=timezone.now()
    )
    message.refresh_from_db()
    return message


def test_deliveries_newest_first_with_every_attempt(owner_client, endpoint):
    older = NotificationMessageFactory(endpoint=endpoint, attempts_made=2)
    newer = NotificationMessageFactory(endpoint=endpoint, event_type="execution.completed")
    NotificationMessageFactory()  # another endpoint's

    response = owner_client.get(deliveries_url(endpoint))

    assert response.status_code == 200
    results = response.json()["results"]
    assert [item["id"] for item in results] == [newer.webhook_id, older.webhook_id]
    assert results[0]["delivery_attempts"] == [] and results[0]["event_type"] == "execution.completed"
    attempts = results[1]["delivery_attempts"]
    assert len(attempts) == 2 and results[1]["attempts"] == 2
    assert attempts[0] == {
        "attempted_at": attempts[0]["attempted_at"],
        "status_code": 500,
        "latency_ms": 12,
        "succeeded": False,
        "error": "HTTP 500",
        "response_body": "oops",
    }
    assert attempts[0]["attempted_at"] >= attempts[1]["attempted_at"]
    assert results[1]["data"] == older.payload
    assert results[1]["state"] == "pending" and results[1]["next_attempt_at"] is not None


def test_deliveries_page_with_a_cursor_and_filter_by_state(owner_client, endpoint):
    messages = [NotificationMessageFactory(endpoint=endpoint) for _ in range(5)]
    gave_up = failed(endpoint)

    first = owner_client.get(deliveries_url(endpoint), {"page_size": 4}).json()
    second = owner_client.get(
        deliveries_url(endpoint), {"page_size": 4, "cursor": first["next_cursor"]}
    ).json()
    listed = [item["id"] for item in first["results"] + second["results"]]
    assert listed == [message.webhook_id for message in [gave_up, *reversed(messages)]]
    assert second["next_cursor"] is None

    only_failed = owner_client.get(deliveries_url(endpoint), {"state": "failed"}).json()["results"]
    assert [(item["id"], item["state"], item["next_attempt_at"]) for item in only_failed] == [
        (gave_up.webhook_id, "failed", None)
    ]


def test_deliveries_refuse_bad_queries(owner_client, endpoint):
    query = {"state": "lost", "cursor": "bm90LWFuLWlk", "sort": "old"}
    response = owner_client.get(deliveries_url(endpoint), query)
    assert response.status_code == 422
    assert sorted(tuple(item["loc"]) for item in response.json()["detail"]) == [
        ("query", "cursor"),
        ("query", "sort"),
        ("query", "state"),
    ]


def test_one_delivery_by_its_webhook_id(owner_client, endpoint):
    message = NotificationMessageFactory(endpoint=endpoint, attempts_made=1)
    body = owner_client.get(f"{deliveries_url(endpoint)}/{message.webhook_id}").json()
    assert (body["id"], len(body["delivery_attempts"])) == (message.webhook_id, 1)
    for missing in ("msg_nope", "x" * 300, "msg_\x00", NotificationMessageFactory().webhook_id):
        response = owner_client.get(f"{deliveries_url(endpoint)}/{missing}")
        assert response.status_code == 404
        assert response.json()["error_code"] == "DELIVERY_NOT_FOUND"


def test_replaying_a_failed_message_sends_it_again_with_the_same_webhook_id(owner_client, endpoint):
    message = failed(endpoint)

    response = owner_client.post(f"{deliveries_url(endpoint)}/{message.webhook_id}/replay")

    assert response.status_code == 202
    body = response.json()
    message.refresh_from_db()
    assert (message.state, message.attempts, message.finished_at) == (MessageState.PENDING, 0, None)
    assert message.next_attempt_at <= timezone.now()
    assert (body["id"], body["state"], body["attempts"]) == (message.webhook_id, "pending", 0)
    # The log keeps the attempts before the replay.
    assert len(body["delivery_attempts"]) == 8


def test_replaying_a_pending_message_leaves_it_as_it_is(owner_client, endpoint):
    later = timezone.now() + timedelta(hours=2)
    message = NotificationMessageFactory(endpoint=endpoint, attempts_made=3, next_attempt_at=later)

    response = owner_client.post(f"{deliveries_url(endpoint)}/{message.webhook_id}/replay")

    assert response.status_code == 202
    message.refresh_from_db()
    assert (message.attempts, message.next_attempt_at) == (3, later)


def test_replaying_every_failed_message_since_a_time(owner_client, endpoint):
    now = timezone.now()
    before = failed(endpoint, created_at=now - timedelta(days=2))
    since = [failed(endpoint, created_at=now - timedelta(hours=h)) for h in (1, 2)]
    delivered = NotificationMessageFactory(endpoint=endpoint, created_at=now - timedelta(hours=1))
    NotificationMessage.objects.filter(pk=delivered.pk).update(state=MessageState.DELIVERED)
    elsewhere = failed(NotificationEndpointFactory(owner=endpoint.owner), created_at=now)

    response = owner_client.post(
        f"{ENDPOINTS}/{endpoint.pk}/replay", {"since": (now - timedelta(days=1)).isoformat()}, format="json"
    )

    assert response.status_code == 202, response.content
    assert response.json() == {"replayed": 2}
    states = dict(NotificationMessage.objects.values_list("pk", "state"))
    assert [states[message.pk] for message in since] == [MessageState.PENDING] * 2
    assert states[before.pk] == states[elsewhere.pk] == MessageState.FAILED
    assert states[delivered.pk] == MessageState.DELIVERED


@pytest.mark.parametrize(
    "body,expected",
    [
        ({}, [(("body", "since"), "missing")]),
        ({"since": "yesterday"}, [(("body", "since"), "datetime_from_date_parsing")]),
        ({"since": 0}, [(("body", "since"), "datetime_type")]),
        ({"since": "2026-01-01T00:00:00Z", "state": "failed"}, [(("body", "state"), "extra_forbidden")]),
    ],
)
def test_replay_since_refuses_what_is_not_a_time(owner_client, endpoint, body, expected):
    message = failed(endpoint)
    response = owner_client.post(f"{ENDPOINTS}/{endpoint.pk}/replay", body, format="json")
    assert response.status_code == 422
    assert [(tuple(item["loc"]), item["type"]) for item in response.json()["detail"]] == expected
    message.refresh_from_db()
    assert message.state == MessageState.FAILED


def test_a_since_before_year_one_in_utc_is_every_message(owner_client, endpoint):
    failed(endpoint, created_at=timezone.now() - timedelta(days=3650))
    response = owner_client.post(
        f"{ENDPOINTS}/{endpoint.pk}/replay", {"since": "0001-01-01T00:00:00+01:00"}, format="json"
    )
    assert response.json() == {"replayed": 1}


def test_a_since_after_year_9999_in_utc_is_no_message(owner_client, endpoint):
    failed(endpoint)
    response = owner_client.post(
        f"{ENDPOINTS}/{endpoint.pk}/replay", {"since": "9999-12-31T23:59:59-23:59"}, format="json"
    )
    assert response.json() == {"replayed": 0}


def test_a_naive_since_is_utc(owner_client, endpoint):
    failed(endpoint, created_at=timezone.now() - timedelta(minutes=30))
    since = (timezone.now() - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    response = owner_client.post(f"{ENDPOINTS}/{endpoint.pk}/replay", {"since": since}, format="json")
    assert response.json() == {"replayed": 1}
