"""/api/v1/notification-endpoints: create, list, get, update (enable, disable), delete, rotate
the secret, send a test event; what each answers, what it refuses (422 items in the
contract's shape) and what it leaves in the database."""

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from executions.models import DisabledReason, NotificationEndpoint, NotificationMessage

from .api import ERROR_RESPONSE_KEYS
from .factories import NotificationEndpointFactory, NotificationMessageFactory, monitor_for

ENDPOINTS = "/api/v1/notification-endpoints"
WEBHOOK = {"kind": "webhook", "url": "https://hooks.example.com/executions", "events": ["execution.failed"]}


def endpoint_url(endpoint) -> str:
    return f"{ENDPOINTS}/{getattr(endpoint, 'pk', endpoint)}"


def create(client, **fields):
    return client.post(ENDPOINTS, {**WEBHOOK, **fields}, format="json")


def items(response) -> list[tuple]:
    """The 422's items as (loc, type) pairs."""
    assert response.status_code == 422, response.content
    return [(tuple(item["loc"]), item["type"]) for item in response.json()["detail"]]


# --- Create -------------------------------------------------------------------------------


def test_a_webhook_is_created_with_its_secret_shown_in_that_answer_only(owner_client, owner):
    response = create(owner_client, name_prefix="nightly-", description="on-call pager")

    assert response.status_code == 201, response.content
    body = response.json()
    endpoint = NotificationEndpoint.objects.get()
    assert body["id"] == str(endpoint.id)
    assert urlsplit(response["Location"]).path == endpoint_url(endpoint)
    assert body["secret"] == endpoint.secret and body["secret"].startswith("whsec_")
    assert {key: body[key] for key in ("kind", "url", "emails", "events", "name_prefix", "monitor")} == {
        "kind": "webhook",
        "url": "https://hooks.example.com/executions",
        "emails": None,
        "events": ["execution.failed"],
        "name_prefix": "nightly-",
        "monitor": None,
    }
    assert (body["enabled"], body["disabled_reason"], body["owner"]) == (True, None, "owner")
    assert (endpoint.owner, endpoint.description) == (owner, "on-call pager")

    # Never again: not in the endpoint, not in the list.
    assert "secret" not in owner_client.get(endpoint_url(endpoint)).json()
    assert endpoint.secret not in owner_client.get(ENDPOINTS).content.decode()


def test_slack_and_email_endpoints(owner_client):
    slack = create(owner_client, kind="slack", url="https://hooks.slack.com/services/T0/B0/x")
    email = owner_client.post(
        ENDPOINTS,
        {"kind": "email", "emails": ["ops@example.com", "Lead@Example.org"], "events": ["monitor.down"]},
        format="json",
    )

    assert slack.status_code == 201 and slack.json()["url"] == "https://hooks.slack.com/services/T0/B0/x"
    assert email.status_code == 201, email.content
    assert (email.json()["url"], email.json()["emails"]) == (None, ["ops@example.com", "Lead@Example.org"])
    assert NotificationEndpoint.objects.get(kind="email").emails == ["ops@example.com", "Lead@Example.org"]


@pytest.mark.parametrize(
    "fields,expected",
    [
        ({"url": None}, [(("body", "url"), "missing")]),
        (
            {"kind": "email", "events": ["execution.failed"]},
            [(("body", "url"), "field_not_allowed"), (("body", "emails"), "missing")],
        ),
        ({"emails": ["a@example.com"]}, [(("body", "emails"), "field_not_allowed")]),
        ({"kind": "pager"}, [(("body", "kind"), "literal_error")]),
        ({"events": []}, [(("body", "events"), "too_short")]),
        ({"events": ["execution.failed", "execution.failed"]}, [(("body", "events"), "list_not_unique")]),
        ({"events": ["execution.started"]}, [(("body", "events", 0), "literal_error")]),
        ({"events": ["notification.test"]}, [(("body", "events", 0), "literal_error")]),
        ({"url": "ftp://example.com/x"}, [(("body", "url"), "url_refused")]),
        ({"url": "https://user:pw@example.com/"}, [(("body", "url"), "url_refused")]),
        ({"url": "https://exa mple.com/"}, [(("body", "url"), "url_refused")]),
        ({"url": "https://[::1/"}, [(("body", "url"), "url_refused")]),
        ({"url": "https://example.com:99999/"}, [(("body", "url"), "url_refused")]),
        ({"url": "https://example.com/\x00"}, [(("body", "url"), "string_unstorable")]),
        ({"url": "https://example.com/" + "a" * 2000}, [(("body", "url"), "string_too_long")]),
        ({"url": 7}, [(("body", "url"), "string_type")]),
        ({"name_prefix": "night\x1b[2J"}, [(("body", "name_prefix"), "string_control_characters")]),
        ({"description": "x" * 201}, [(("body", "description"), "string_too_long")]),
        ({"monitor": "nightly"}, [(("body", "monitor"), "monitor_unknown")]),
        ({"secret": "whsec_mine"}, [(("body", "secret"), "extra_forbidden")]),
        ({"enabled": "maybe"}, [(("body", "enabled"), "bool_parsing")]),
    ],
)
def test_create_refuses_what_it_cannot_take_at_the_fields_location(owner_client, fields, expected):
    response = create(owner_client, **fields)
    assert items(response) == expected
    assert not NotificationEndpoint.objects.exists()


def test_email_addresses_are_checked_one_by_one(owner_client):
    response = owner_client.post(
        ENDPOINTS,
        {
            "kind": "email",
            "emails": ["ok@example.com", "not an address", "x@y\r\nBcc: z@w"],
            "events": ["monitor.up"],
        },
        format="json",
    )
    assert items(response) == [
        (("body", "emails", 1), "email_invalid"),
        (("body", "emails", 2), "email_invalid"),
    ]
    duplicate = owner_client.post(
        ENDPOINTS,
        {"kind": "email", "emails": ["a@example.com", "A@example.com"], "events": ["monitor.up"]},
        format="json",
    )
    assert items(duplicate) == [(("body", "emails"), "list_not_unique")]


@pytest.mark.parametrize("body", [[], "webhook", None, 3])
def test_a_body_that_is_not_an_object_is_a_422(owner_client, body):
    response = owner_client.post(ENDPOINTS, body, format="json")
    assert response.status_code == 422
    assert not NotificationEndpoint.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
def test_private_targets_are_refused_unless_the_service_allows_them(owner_client, settings, url):
    settings.NOTIFICATIONS_ALLOW_PRIVATE_TARGETS = False
    response = create(owner_client, url=url)
    assert items(response) == [(("body", "url"), "url_refused")]
    assert "not a public address" in response.json()["detail"][0]["msg"]

    settings.NOTIFICATIONS_ALLOW_PRIVATE_TARGETS = True
    assert create(owner_client, url=url).status_code == 201


# --- Read ---------------------------------------------------------------------------------


def test_list_newest_first_with_cursor_and_filters(owner_client, owner, other_user):
    endpoints = [NotificationEndpointFactory(owner=owner) for _ in range(5)]
    NotificationEndpointFactory(owner=owner, kind="email", url="", emails=["a@example.com"], enabled=False)
    NotificationEndpointFactory(owner=other_user)

    first = owner_client.get(ENDPOINTS, {"page_size": 4, "kind": "webhook"}).json()
    second = owner_client.get(
        ENDPOINTS, {"page_size": 4, "kind": "webhook", "cursor": first["next_cursor"]}
    ).json()

    listed = [item["id"] for item in first["results"] + second["results"]]
    assert listed == [str(endpoint.id) for endpoint in reversed(endpoints)]
    assert second["next_cursor"] is None
    disabled = owner_client.get(ENDPOINTS, {"enabled": "false"}).json()["results"]
    assert [item["kind"] for item in disabled] == ["email"]


def test_list_refuses_unknown_parameters_and_bad_cursors(owner_client):
    response = owner_client.get(
        ENDPOINTS, {"knd": "webhook", "cursor": "x", "enabled": "yes", "page_size": 0}
    )
    assert sorted(items(response)) == sorted(
        [
            (("query", "knd"), "extra_forbidden"),
            (("query", "enabled"), "invalid_choice"),
            (("query", "cursor"), "cursor_invalid"),
            (("query", "page_size"), "greater_than_equal"),
        ]
    )


def test_someone_elses_endpoint_is_a_404_like_one_that_does_not_exist(owner_client, other_user, client_for):
    theirs = NotificationEndpointFactory(owner=other_user)
    for url in (
        endpoint_url(theirs),
        endpoint_url("not-a-uuid"),
        endpoint_url("00000000-0000-0000-0000-000000000000"),
    ):
        response = owner_client.get(url)
        assert response.status_code == 404
        body = response.json()
        assert set(body) == ERROR_RESPONSE_KEYS
        assert (body["error_code"], body["detail"]) == (
            "NOTIFICATION_ENDPOINT_NOT_FOUND",
            "Notification endpoint not found",
        )
    assert owner_client.get(ENDPOINTS).json()["results"] == []
    assert client_for(other_user).get(endpoint_url(theirs)).status_code == 200


def test_a_manager_sees_every_endpoint(manager, client_for, owner):
    endpoint = NotificationEndpointFactory(owner=owner)
    client = client_for(manager)
    assert client.get(endpoint_url(endpoint)).json()["owner"] == "owner"
    assert [item["id"] for item in client.get(ENDPOINTS).json()["results"]] == [str(endpoint.id)]


# --- Update -------------------------------------------------------------------------------


def test_update_changes_only_the_fields_given(owner_client, owner):
    endpoint = NotificationEndpointFactory(owner=owner, name_prefix="nightly-", description="pager")
    response = owner_client.patch(
        endpoint_url(endpoint),
        {"events": ["execution.failed", "execution.interrupted"], "url": "https://new.example.com/h"},
        format="json",
    )

    assert response.status_code == 200, response.content
    endpoint.refresh_from_db()
    assert endpoint.events == ["execution.failed", "execution.interrupted"]
    assert endpoint.url == "https://new.example.com/h"
    assert (endpoint.name_prefix, endpoint.description) == ("nightly-", "pager")
    assert response.json()["url"] == "https://new.example.com/h"

    cleared = owner_client.patch(endpoint_url(endpoint), {"name_prefix": None}, format="json")
    assert cleared.json()["name_prefix"] is None
    endpoint.refresh_from_db()
    assert endpoint.name_prefix == ""


def test_disable_and_enable_again(owner_client, owner):
    failing_since = timezone.now() - timedelta(days=5)
    endpoint = NotificationEndpointFactory(owner=owner)

    disabled = owner_client.patch(endpoint_url(endpoint), {"enabled": False}, format="json").json()
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "owner")
    assert disabled["disabled_at"] is not None

    # The service disabled it after 5 days of failures; its owner enables it again.
    NotificationEndpoint.objects.filter(pk=endpoint.pk).update(
        disabled_reason=DisabledReason.FAILING, failing_since=failing_since
    )
    enabled = owner_client.patch(endpoint_url(endpoint), {"enabled": True}, format="json").json()
    assert (
        enabled["enabled"],
        enabled["disabled_reason"],
        enabled["disabled_at"],
        enabled["failing_since"],
    ) == (
        True,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    "fields,expected",
    [
        ({"kind": "email"}, [(("body", "kind"), "extra_forbidden")]),
        ({"url": None}, [(("body", "url"), "null_not_allowed")]),
        ({"emails": ["a@example.com"]}, [(("body", "emails"), "field_not_allowed")]),
        ({"events": None}, [(("body", "events"), "list_type")]),
        ({"enabled": None}, [(("body", "enabled"), "bool_type")]),
        ({"url": "gopher://example.com"}, [(("body", "url"), "url_refused")]),
        ({}, []),
    ],
)
def test_update_refuses_what_the_endpoint_cannot_take(owner_client, owner, fields, expected):
    endpoint = NotificationEndpointFactory(owner=owner)
    before = NotificationEndpoint.objects.values().get(pk=endpoint.pk)
    response = owner_client.patch(endpoint_url(endpoint), fields, format="json")
    if expected:
        assert items(response) == expected
        assert NotificationEndpoint.objects.values().get(pk=endpoint.pk) == before
    else:
        assert response.status_code == 200


def test_an_update_without_a_body_changes_nothing(owner_client, owner):
    # Every field of the update is optional, so the schema's body is too: none is no change.
    endpoint = NotificationEndpointFactory(owner=owner)
    before = NotificationEndpoint.objects.values().get(pk=endpoint.pk)
    response = owner_client.patch(endpoint_url(endpoint))
    assert response.status_code == 200 and response.json()["id"] == str(endpoint.pk)
    assert NotificationEndpoint.objects.values().get(pk=endpoint.pk) == before


def test_an_email_endpoint_changes_its_addresses_not_a_url(owner_client, owner):
    endpoint = NotificationEndpointFactory(owner=owner, kind="email", url="", emails=["a@example.com"])
    assert items(owner_client.patch(endpoint_url(endpoint), {"url": "https://x.example"}, format="json")) == [
        (("body", "url"), "field_not_allowed")
    ]
    assert items(owner_client.patch(endpoint_url(endpoint), {"emails": None}, format="json")) == [
        (("body", "emails"), "null_not_allowed")
    ]
    response = owner_client.patch(endpoint_url(endpoint), {"emails": ["b@example.com"]}, format="json")
    assert response.json()["emails"] == ["b@example.com"]


def test_another_users_endpoint_cannot_be_changed_deleted_or_rotated(owner_client, other_user):
    theirs = NotificationEndpointFactory(owner=other_user)
    before = NotificationEndpoint.objects.values().get(pk=theirs.pk)
    url = endpoint_url(theirs)
    answers = [
        owner_client.patch(url, {"enabled": False}, format="json"),
        owner_client.delete(url),
        owner_client.post(f"{url}/rotate-secret"),
        owner_client.post(f"{url}/test"),
        owner_client.get(f"{url}/deliveries"),
        owner_client.post(f"{url}/replay", {"since": "2026-01-01T00:00:00Z"}, format="json"),
    ]
    assert [answer.status_code for answer in answers] == [404] * len(answers)
    assert {answer.json()["error_code"] for answer in answers} == {"NOTIFICATION_ENDPOINT_NOT_FOUND"}
    assert NotificationEndpoint.objects.values().get(pk=theirs.pk) == before
    assert not NotificationMessage.objects.exists()


# --- Delete, rotate, test -------------------------------------------------------------------


def test_delete_removes_the_endpoint_and_its_deliveries(owner_client, owner):
    endpoint = NotificationEndpointFactory(owner=owner)
    NotificationMessageFactory(endpoint=endpoint, attempts_made=2)
    kept = NotificationMessageFactory()

    response = owner_client.delete(endpoint_url(endpoint))

    assert response.status_code == 204
    assert owner_client.get(endpoint_url(endpoint)).status_code == 404
    assert list(NotificationMessage.objects.all()) == [kept]


def test_rotating_answers_a_new_secret_once_and_keeps_the_old_one_for_24_hours(owner_client, owner):
    endpoint = NotificationEndpointFactory(owner=owner)
    old = endpoint.secret

    response = owner_client.post(f"{endpoint_url(endpoint)}/rotate-secret")

    assert response.status_code == 200
    body = response.json()
    endpoint.refresh_from_db()
    assert body["secret"] == endpoint.secret != old
    assert endpoint.previous_secret == old
    valid_until = endpoint.previous_secret_expires_at - timezone.now()
    assert timedelta(hours=23, minutes=59) < valid_until <= timedelta(hours=24)
    assert body["previous_secret_valid_until"] is not None
    shown = owner_client.get(endpoint_url(endpoint)).json()
    assert (
        "secret" not in shown and shown["previous_secret_valid_until"] == body["previous_secret_valid_until"]
    )
    assert old not in response.content.decode()


def test_a_test_event_is_queued_and_shows_in_the_deliveries(owner_client, owner):
    endpoint = NotificationEndpointFactory(owner=owner, events=["execution.failed"])

    response = owner_client.post(f"{endpoint_url(endpoint)}/test")

    assert response.status_code == 202, response.content
    body = response.json()
    message = NotificationMessage.objects.get()
    assert (message.endpoint, message.event_type, message.state) == (endpoint, "notification.test", "pending")
    assert message.next_attempt_at <= timezone.now()
    assert (body["id"], body["event_type"], body["state"]) == (
        message.webhook_id,
        "notification.test",
        "pending",
    )
    assert body["data"]["endpoint"] == str(endpoint.id)
    deliveries = owner_client.get(f"{endpoint_url(endpoint)}/deliveries").json()["results"]
    assert [delivery["id"] for delivery in deliveries] == [message.webhook_id]


def test_methods_an_endpoint_path_does_not_take_are_405(owner_client, owner):
    endpoint = NotificationEndpointFactory(owner=owner)
    assert owner_client.put(endpoint_url(endpoint), WEBHOOK, format="json").status_code == 405
    assert owner_client.get(f"{endpoint_url(endpoint)}/test").status_code == 405
    assert owner_client.delete(ENDPOINTS).status_code == 405


def test_an_endpoint_whose_stored_url_is_no_longer_allowed_must_get_a_new_one(owner_client, owner, settings):
    # Made while private targets were allowed; the service no longer allows them.
    endpoint = NotificationEndpointFactory(owner=owner, url="http://127.0.0.1:9000/hook")
    settings.NOTIFICATIONS_ALLOW_PRIVATE_TARGETS = False

    response = owner_client.patch(endpoint_url(endpoint), {"description": "pager"}, format="json")

    assert items(response) == [(("body", "url"), "invalid_endpoint")]
    assert "not a public address" in response.json()["detail"][0]["msg"]
    endpoint.refresh_from_db()
    assert endpoint.description == ""
    moved = owner_client.patch(
        endpoint_url(endpoint), {"description": "pager", "url": "https://hooks.example.com/h"}, format="json"
    )
    assert moved.status_code == 200 and moved.json()["description"] == "pager"


# --- The monitor filter ----------------------------------------------------------------------


def test_an_endpoint_for_one_monitor_named_by_its_name_or_id(owner_client, owner):
    nightly = monitor_for(owner, name="nightly")
    response = create(owner_client, events=["monitor.down", "monitor.up"], monitor="nightly")
    assert response.status_code == 201, response.content
    assert response.json()["monitor"] == str(nightly.pk)
    endpoint = NotificationEndpoint.objects.get()
    assert endpoint.monitor == nightly

    weekly = monitor_for(owner, name="weekly")
    moved = owner_client.patch(endpoint_url(endpoint), {"monitor": str(weekly.pk)}, format="json")
    assert moved.json()["monitor"] == str(weekly.pk)
    cleared = owner_client.patch(endpoint_url(endpoint), {"monitor": None}, format="json")
    assert cleared.json()["monitor"] is None
    endpoint.refresh_from_db()
    assert endpoint.monitor is None


def test_another_users_monitor_cannot_be_named(owner_client, other_user, manager, client_for):
    theirs = monitor_for(other_user, name="theirs")
    for reference in ("theirs", str(theirs.pk)):
        assert items(create(owner_client, events=["monitor.down"], monitor=reference)) == [
            (("body", "monitor"), "monitor_unknown")
        ]
    assert not NotificationEndpoint.objects.exists()
    # A manager may subscribe to anyone's.
    response = create(client_for(manager), events=["monitor.down"], monitor=str(theirs.pk))
    assert response.status_code == 201 and response.json()["monitor"] == str(theirs.pk)
