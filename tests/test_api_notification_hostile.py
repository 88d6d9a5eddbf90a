"""Hostile input on the notification endpoints: raw bodies no client library would send, ids
and query strings built to break things. Every answer is JSON in a documented shape with a
4xx status (never a 500), and nothing in the database changes."""

import json

import pytest
from django.test import Client

from executions.api.schemas import ErrorResponse, HTTPValidationError
from executions.models import DeliveryAttempt, NotificationEndpoint, NotificationMessage

from .factories import NotificationEndpointFactory, NotificationMessageFactory, api_key_for

ENDPOINTS = "/api/v1/notification-endpoints"


@pytest.fixture
def http(owner):
    """A test client that turns server errors into responses, as a real server does."""
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {api_key_for(owner)}")


@pytest.fixture
def endpoint(owner):
    endpoint = NotificationEndpointFactory(owner=owner)
    NotificationMessageFactory(endpoint=endpoint, attempts_made=1, state="failed")
    return endpoint


def snapshot():
    return (
        list(NotificationEndpoint.objects.order_by("pk").values()),
        list(NotificationMessage.objects.order_by("pk").values()),
        DeliveryAttempt.objects.count(),
    )


def assert_documented_4xx(response):
    assert 400 <= response.status_code < 500, response.content[:500]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    if response.status_code == 422:
        HTTPValidationError.model_validate(body)
    else:
        ErrorResponse.model_validate(body)


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


WEBHOOK = b'{"kind": "webhook", "url": "https://x.example", "events": ["execution.failed"]'
HOSTILE_BODIES = [
    b"",
    b"null",
    b"[]",
    b'"webhook"',
    b"{",
    b'{"kind": "webhook", "url": "https://x.example", "events": ["execution.failed"]} trailing',
    b'{"kind": "webhook\\u0000"}',
    b'{"kind": "webhook", "url": "https://x.example/\\ud800", "events": ["execution.failed"]}',
    b'{"kind": "email", "emails": ["a@b.c\\u0000"], "events": ["monitor.up"]}',
    b'{"kind": "email", "emails": "a@example.com", "events": ["monitor.up"]}',
    b'{"kind": "email", "emails": ['
    + b", ".join([b'"a@example.com"'] * 5000)
    + b'], "events": ["monitor.up"]}',
    WEBHOOK + b', "name_prefix": {"a": 1}}',
    WEBHOOK + b', "monitor": "\\u0000"}',
    b'{"kind": "webhook", "url": "https://x.example", "events": ' + nested(900).encode() + b"}",
    b'{"kind": "webhook", "url": "https://x.example", "events": ["execution.failed"], "enabled": 1e400}',
    b'{"kind": "webhook", "url": "https://x.example", "events": ["execution.failed"], "description": NaN}',
    b'{"kind": "webhook", "url": "'
    + b"https://x.example/"
    + b"a" * 300_000
    + b'", "events": ["execution.failed"]}',
    '{"kind": "webhook", "url": "https://ex\u00e4mple.com", "events": ["execution.failed"]}'.encode(
        "latin-1"
    ),
    json.dumps({"kind": "webhook", "url": "javascript:alert(1)", "events": ["execution.failed"]}).encode(),
    json.dumps(
        {"kind": "webhook", "url": "https://169.254.169.254.nip.io\x00/", "events": ["execution.failed"]}
    ).encode(),
    json.dumps({"since": "2026-13-45T99:99:99Z"}).encode(),
    json.dumps({"since": "+10000-01-01T00:00:00Z"}).encode(),
    json.dumps({"since": ["2026-01-01"]}).encode(),
]


@pytest.mark.parametrize(
    "method,path",
    [("POST", ""), ("PATCH", "/{id}"), ("POST", "/{id}/replay")],
    ids=["create", "update", "replay since"],
)
@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_hostile_bodies_are_refused_and_change_nothing(http, endpoint, settings, method, path, body):
    settings.NOTIFICATIONS_ALLOW_PRIVATE_TARGETS = False
    before = snapshot()
    response = http.generic(
        method, ENDPOINTS + path.format(id=endpoint.pk), body, content_type="application/json"
    )
    if method == "PATCH" and body == b"":
        assert response.status_code == 200  # no body: an update that changes nothing
    else:
        assert_documented_4xx(response)
    assert snapshot() == before


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]
)
def test_bodies_that_are_not_json_are_415(http, endpoint, content_type):
    before = snapshot()
    response = http.generic("POST", ENDPOINTS, b"kind=webhook", content_type=content_type)
    assert response.status_code == 415
    assert_documented_4xx(response)
    assert snapshot() == before


HOSTILE_IDS = ["\x00", "%00", "../../admin", "x" * 5000, "\u202e", "0" * 36, "-1", "msg_' OR 1=1 --"]


@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=range(len(HOSTILE_IDS)))
def test_hostile_ids_are_404_on_every_operation(http, endpoint, hostile):
    message = NotificationMessage.objects.get()
    before = snapshot()
    calls = [
        ("GET", f"{ENDPOINTS}/{hostile}"),
        ("DELETE", f"{ENDPOINTS}/{hostile}"),
        ("POST", f"{ENDPOINTS}/{hostile}/test"),
        ("POST", f"{ENDPOINTS}/{hostile}/rotate-secret"),
        ("GET", f"{ENDPOINTS}/{hostile}/deliveries"),
        ("GET", f"{ENDPOINTS}/{endpoint.pk}/deliveries/{hostile}"),
        ("POST", f"{ENDPOINTS}/{endpoint.pk}/deliveries/{hostile}/replay"),
        ("POST", f"{ENDPOINTS}/{hostile}/deliveries/{message.webhook_id}/replay"),
    ]
    for method, url in calls:
        response = http.generic(method, url)
        assert response.status_code == 404, (method, url, response.content[:300])
        assert_documented_4xx(response)
    assert snapshot() == before


@pytest.mark.parametrize(
    "query",
    [
        {"kind": "\x00"},
        {"enabled": "\x00"},
        {"cursor": "\x00"},
        {"cursor": "A" * 10_000},
        {"page_size": "9" * 50},
        {"kind": ",,,"},
        {"state": "failed\x00"},
        {"event_type": "x" * 1000},
    ],
)
def test_hostile_query_strings_are_422(http, endpoint, query):
    url = f"{ENDPOINTS}/{endpoint.pk}/deliveries" if {"state", "event_type"} & set(query) else ENDPOINTS
    response = http.get(url, query)
    assert response.status_code == 422, response.content[:300]
    assert_documented_4xx(response)
