"""Who may do what with a notification endpoint, as one table: every role of
tests/test_authorization_matrix.py against every operation on the owner's endpoint.

An endpoint is its owner's; managers (manage_all_executions) and superusers see and change
every endpoint, as they do executions. Whatever a caller may not see is a 404
NOTIFICATION_ENDPOINT_NOT_FOUND exactly like an id that does not exist: same status, same
body but for correlation_id and timestamp, same SQL statements; and it changes nothing."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions.errors import ErrorCode
from executions.models import DeliveryAttempt, NotificationEndpoint, NotificationMessage

from .factories import NotificationEndpointFactory, NotificationMessageFactory
from .test_authorization_matrix import (  # noqa: F401 (fixtures)
    API_ROLES,
    ROLES,
    api_as,
    expect,
    shape,
    unauthenticated_error_code,
    users,
    volatile_fields_removed,
)

URL = "/api/v1/notification-endpoints"
SINCE = {"since": "2000-01-01T00:00:00Z"}

OPERATIONS = {
    # name: (call(client, endpoint id, webhook id), expected status for those who may see it, writes?)
    "GET one": (lambda client, e, m: client.get(f"{URL}/{e}"), 200, False),
    "PATCH": (lambda client, e, m: client.patch(f"{URL}/{e}", {"enabled": False}, format="json"), 200, True),
    "DELETE": (lambda client, e, m: client.delete(f"{URL}/{e}"), 204, True),
    "POST rotate-secret": (lambda client, e, m: client.post(f"{URL}/{e}/rotate-secret"), 200, True),
    "POST test": (lambda client, e, m: client.post(f"{URL}/{e}/test"), 202, True),
    "POST replay since": (
        lambda client, e, m: client.post(f"{URL}/{e}/replay", SINCE, format="json"),
        202,
        True,
    ),
    "GET deliveries": (lambda client, e, m: client.get(f"{URL}/{e}/deliveries"), 200, False),
    "GET one delivery": (lambda client, e, m: client.get(f"{URL}/{e}/deliveries/{m}"), 200, False),
    "POST replay one": (lambda client, e, m: client.post(f"{URL}/{e}/deliveries/{m}/replay"), 202, True),
}

CASES = [pytest.param(name, role, id=f"{name}-{role}") for name in OPERATIONS for role in API_ROLES]
HIDDEN_CASES = [
    pytest.param(name, role, id=f"{name}-{role}")
    for name in OPERATIONS
    for role in ROLES
    if expect(200)[role] == 404
]


def the_owners_endpoint(owner):
    endpoint = NotificationEndpointFactory(owner=owner)
    message = NotificationMessageFactory(endpoint=endpoint, attempts_made=2, state="failed")
    return endpoint, message


def snapshot() -> tuple:
    return (
        list(NotificationEndpoint.objects.order_by("pk").values()),
        list(NotificationMessage.objects.order_by("pk").values()),
        DeliveryAttempt.objects.count(),
    )


@pytest.mark.parametrize("name,role", CASES)
def test_notification_endpoint_matrix(api_as, owner, name, role):  # noqa: F811
    call, allowed, writes = OPERATIONS[name]
    endpoint, message = the_owners_endpoint(owner)
    expected = expect(allowed)[role]
    before = snapshot()

    response = call(api_as(role), endpoint.pk, message.webhook_id)

    assert response.status_code == expected, response.content
    if expected == 401:
        assert response.json()["error_code"] == unauthenticated_error_code(role)
    if expected == 404:
        assert response.json()["error_code"] == ErrorCode.NOTIFICATION_ENDPOINT_NOT_FOUND
    if expected == 200 and name == "GET one":
        assert response.json()["id"] == str(endpoint.pk)
    # Only an allowed write writes.
    assert (snapshot() != before) == (writes and expected == allowed)


@pytest.mark.parametrize("name,role", HIDDEN_CASES)
def test_an_invisible_endpoint_looks_exactly_like_a_missing_one(api_as, owner, name, role):  # noqa: F811
    call, _, _ = OPERATIONS[name]
    endpoint, message = the_owners_endpoint(owner)
    client = api_as(role)

    with CaptureQueriesContext(connection) as invisible_queries:
        invisible = call(client, endpoint.pk, message.webhook_id)
    with CaptureQueriesContext(connection) as missing_queries:
        missing = call(client, uuid.uuid4(), message.webhook_id)

    assert invisible.status_code == missing.status_code == 404
    assert volatile_fields_removed(invisible.json()) == volatile_fields_removed(missing.json())
    assert invisible.headers.keys() == missing.headers.keys()
    assert [shape(query["sql"]) for query in invisible_queries] == [
        shape(query["sql"]) for query in missing_queries
    ]


def test_the_list_shows_each_role_what_it_may_see(api_as, users, owner):  # noqa: F811
    mine, _ = the_owners_endpoint(owner)
    others = NotificationEndpointFactory(owner=users["other"])
    everyone = {str(mine.pk), str(others.pk)}
    expected = {
        "owner": {str(mine.pk)},
        "other": {str(others.pk)},
        "staff": set(),
        "manager": everyone,
        "staff_manager": everyone,
        "superuser": everyone,
    }
    for role, visible in expected.items():
        listed = {item["id"] for item in api_as(role).get(URL).json()["results"]}
        assert listed == visible, role
