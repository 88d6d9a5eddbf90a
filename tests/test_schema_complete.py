"""The OpenAPI document is valid, complete and true: every response that an operation
documents is one that a real request gets, with a body that matches the documented schema,
and no operation gives an error it does not document (for the requests below)."""

import re
import uuid
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from rest_framework.test import APIClient

from executions.models import ExecutionStatus

from .database_down import database_down  # noqa: F401
from .factories import ExecutionFactory, NotificationEndpointFactory, NotificationMessageFactory, monitor_for

EXECUTIONS = "/api/v1/executions"
ONE = "/api/v1/executions/{execution_id}"
HEARTBEAT = "/api/v1/executions/{execution_id}/heartbeat"
HISTORY = "/api/v1/executions/{execution_id}/history"
FEED = "/api/v1/status-changes"
MONITORS = "/api/v1/monitors"
MONITOR = "/api/v1/monitors/{monitor_id}"
MONITOR_HISTORY = "/api/v1/monitors/{monitor_id}/history"
TOKEN = {"HTTP_AUTHORIZATION": "Token 0123456789abcdef0123456789abcdef01234567"}
NOT_JSON = {"HTTP_ACCEPT": "text/html"}


@pytest.fixture(scope="module")
def openapi(django_db_blocker):
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_valid_openapi(openapi):
    validate(openapi)
    assert openapi["openapi"].startswith("3.1")


def documented_responses(openapi):
    return {
        (method.upper(), path, int(code))
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        for code in operation["responses"]
    }


def body_schema(openapi, method, path, code):
    response = openapi["paths"][path][method.lower()]["responses"][str(code)]
    return response["content"]["application/json"]["schema"]


# One request per documented (method, path, status). `ctx` has clients and executions.
def _throttled(ctx, send):
    """The second of two requests, with every client allowed one a minute."""
    one_a_minute = {"user": "1/min", "anon": "1/min"}
    ctx.settings.REST_FRAMEWORK = {**ctx.settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": one_a_minute}
    cache.clear()
    send()
    return send()


def _new_monitor(name="new", **fields):
    return {"name": name, "schedule": "every 1h", "grace_seconds": 60, **fields}


def _big_body(ctx):
    ctx.settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    return {"name": "x", "metadata": {"blob": "y" * 200}}


CASES = {
    ("GET", "/healthz", 200): lambda ctx: ctx.anonymous.get("/healthz"),
    ("GET", "/healthz", 406): lambda ctx: ctx.anonymous.get("/healthz", **NOT_JSON),
    ("GET", "/readyz", 200): lambda ctx: ctx.anonymous.get("/readyz"),
    ("GET", "/readyz", 406): lambda ctx: ctx.anonymous.get("/readyz", **NOT_JSON),
    ("GET", "/readyz", 503): lambda ctx: ctx.down() or ctx.anonymous.get("/readyz"),
    # List
    ("GET", EXECUTIONS, 200): lambda ctx: ctx.owner.get(EXECUTIONS, {"page_size": 1}),
    ("GET", EXECUTIONS, 401): lambda ctx: ctx.anonymous.get(EXECUTIONS),
    ("GET", EXECUTIONS, 406): lambda ctx: ctx.owner.get(EXECUTIONS, **NOT_JSON),
    ("GET", EXECUTIONS, 422): lambda ctx: ctx.owner.get(EXECUTIONS, {"status": "nope", "cursor": "x"}),
    ("GET", EXECUTIONS, 429): lambda ctx: _throttled(ctx, lambda: ctx.owner.get(EXECUTIONS)),
    ("GET", EXECUTIONS, 503): lambda ctx: ctx.down() or ctx.anonymous.get(EXECUTIONS, **TOKEN),
    # Create
    ("POST", EXECUTIONS, 201): lambda ctx: ctx.owner.post(
        EXECUTIONS, {"name": "n", "metadata": {"a": 1}}, format="json"
    ),
    ("POST", EXECUTIONS, 401): lambda ctx: ctx.anonymous.post(EXECUTIONS, {"name": "n"}, format="json"),
    ("POST", EXECUTIONS, 403): lambda ctx: ctx.session_without_csrf.post(
        EXECUTIONS, {"name": "n"}, format="json"
    ),
    ("POST", EXECUTIONS, 406): lambda ctx: ctx.owner.post(
        EXECUTIONS, {"name": "n"}, format="json", **NOT_JSON
    ),
    ("POST", EXECUTIONS, 413): lambda ctx: ctx.owner.post(EXECUTIONS, _big_body(ctx), format="json"),
    ("POST", EXECUTIONS, 415): lambda ctx: ctx.owner.post(EXECUTIONS, "name=n", content_type="text/plain"),
    ("POST", EXECUTIONS, 422): lambda ctx: ctx.owner.post(EXECUTIONS, {"name": ""}, format="json"),
    ("POST", EXECUTIONS, 429): lambda ctx: _throttled(
        ctx, lambda: ctx.owner.post(EXECUTIONS, {"name": "n"}, format="json")
    ),
    ("POST", EXECUTIONS, 503): lambda ctx: (
        ctx.down() or ctx.anonymous.post(EXECUTIONS, {"name": "n"}, format="json", **TOKEN)
    ),
    # Read
    ("GET", ONE, 200): lambda ctx: ctx.owner.get(ctx.one),
    ("GET", ONE, 401): lambda ctx: ctx.anonymous.get(ctx.one),
    ("GET", ONE, 404): lambda ctx: ctx.other.get(ctx.one),
    ("GET", ONE, 406): lambda ctx: ctx.owner.get(ctx.one, **NOT_JSON),
    ("GET", ONE, 429): lambda ctx: _throttled(ctx, lambda: ctx.owner.get(ctx.one)),
    ("GET", ONE, 503): lambda ctx: ctx.down() or ctx.anonymous.get(ctx.one, **TOKEN),
    # Update status
    ("PATCH", ONE, 200): lambda ctx: ctx.owner.patch(ctx.one, {"status": "cancelled"}, format="json"),
    ("PATCH", ONE, 400): lambda ctx: ctx.owner.patch(ctx.finished_one, {"status": "failed"}, format="json"),
    ("PATCH", ONE, 401): lambda ctx: ctx.anonymous.patch(ctx.one, {"status": "cancelled"}, format="json"),
    ("PATCH", ONE, 403): lambda ctx: ctx.session_without_csrf.patch(
        ctx.one, {"status": "cancelled"}, format="json"
    ),
    ("PATCH", ONE, 404): lambda ctx: ctx.other.patch(ctx.one, {"status": "cancelled"}, format="json"),
    ("PATCH", ONE, 406): lambda ctx: ctx.owner.patch(
        ctx.one, {"status": "cancelled"}, format="json", **NOT_JSON
    ),
    ("PATCH", ONE, 412): lambda ctx: ctx.owner.patch(
        ctx.one, {"status": "cancelled"}, format="json", HTTP_IF_MATCH='"1"'
    ),
    ("PATCH", ONE, 413): lambda ctx: ctx.owner.patch(
        ctx.one, {**_big_body(ctx), "status": "failed"}, format="json"
    ),
    ("PATCH", ONE, 415): lambda ctx: ctx.owner.patch(ctx.one, "status=failed", content_type="text/plain"),
    ("PATCH", ONE, 422): lambda ctx: ctx.owner.patch(ctx.one, {}, format="json"),
    ("PATCH", ONE, 429): lambda ctx: _throttled(
        ctx, lambda: ctx.anonymous.patch(ctx.one, {"status": "cancelled"}, format="json")
    ),
    ("PATCH", ONE, 503): lambda ctx: (
        ctx.down() or ctx.anonymous.patch(ctx.one, {"status": "cancelled"}, format="json", **TOKEN)
    ),
    # Heartbeat
    ("POST", HEARTBEAT, 200): lambda ctx: ctx.owner.post(f"{ctx.one}/heartbeat"),
    ("POST", HEARTBEAT, 401): lambda ctx: ctx.anonymous.post(f"{ctx.one}/heartbeat"),
    ("POST", HEARTBEAT, 403): lambda ctx: ctx.session_without_csrf.post(f"{ctx.one}/heartbeat"),
    ("POST", HEARTBEAT, 404): lambda ctx: ctx.other.post(f"{ctx.one}/heartbeat"),
    ("POST", HEARTBEAT, 406): lambda ctx: ctx.owner.post(f"{ctx.one}/heartbeat", **NOT_JSON),
    ("POST", HEARTBEAT, 409): lambda ctx: ctx.owner.post(f"{ctx.finished_one}/heartbeat"),
    ("POST", HEARTBEAT, 429): lambda ctx: _throttled(ctx, lambda: ctx.owner.post(f"{ctx.one}/heartbeat")),
    ("POST", HEARTBEAT, 503): lambda ctx: ctx.down() or ctx.anonymous.post(f"{ctx.one}/heartbeat", **TOKEN),
    # History
    ("GET", HISTORY, 200): lambda ctx: ctx.owner.get(f"{ctx.finished_one}/history"),
    ("GET", HISTORY, 401): lambda ctx: ctx.anonymous.get(f"{ctx.one}/history"),
    ("GET", HISTORY, 404): lambda ctx: ctx.owner.get(f"{EXECUTIONS}/{uuid.uuid4()}/history"),
    ("GET", HISTORY, 406): lambda ctx: ctx.owner.get(f"{ctx.one}/history", **NOT_JSON),
    ("GET", HISTORY, 429): lambda ctx: _throttled(ctx, lambda: ctx.owner.get(f"{ctx.one}/history")),
    ("GET", HISTORY, 503): lambda ctx: ctx.down() or ctx.anonymous.get(f"{ctx.one}/history", **TOKEN),
    # Change feed
    ("GET", FEED, 200): lambda ctx: ctx.owner.get(FEED, {"page_size": 1}),
    ("GET", FEED, 401): lambda ctx: ctx.anonymous.get(FEED),
    ("GET", FEED, 406): lambda ctx: ctx.owner.get(FEED, **NOT_JSON),
    ("GET", FEED, 422): lambda ctx: ctx.owner.get(FEED, {"after": "not-a-cursor"}),
    ("GET", FEED, 429): lambda ctx: _throttled(ctx, lambda: ctx.owner.get(FEED)),
    ("GET", FEED, 503): lambda ctx: ctx.down() or ctx.anonymous.get(FEED, **TOKEN),
    # Monitors: list
    ("GET", MONITORS, 200): lambda ctx: ctx.owner.get(MONITORS, {"page_size": 1}),
    ("GET", MONITORS, 401): lambda ctx: ctx.anonymous.get(MONITORS),
    ("GET", MONITORS, 406): lambda ctx: ctx.owner.get(MONITORS, **NOT_JSON),
    ("GET", MONITORS, 422): lambda ctx: ctx.owner.get(MONITORS, {"state": "sideways"}),
    ("GET", MONITORS, 429): lambda ctx: _throttled(ctx, lambda: ctx.owner.get(MONITORS)),
    ("GET", MONITORS, 503): lambda ctx: ctx.down() or ctx.anonymous.get(MONITORS, **TOKEN),
    # Monitors: create
    ("POST", MONITORS, 201): lambda ctx: ctx.owner.post(MONITORS, _new_monitor("new"), format="json"),
    ("POST", MONITORS, 401): lambda ctx: ctx.anonymous.post(MONITORS, _new_monitor(), format="json"),
    ("POST", MONITORS, 403): lambda ctx: ctx.session_without_csrf.post(
        MONITORS, _new_monitor(), format="json"
    ),
    ("POST", MONITORS, 406): lambda ctx: ctx.owner.post(MONITORS, _new_monitor(), format="json", **NOT_JSON),
    ("POST", MONITORS, 409): lambda ctx: ctx.owner.post(MONITORS, _new_monitor("watched"), format="json"),
    ("POST", MONITORS, 413): lambda ctx: ctx.owner.post(
        MONITORS, {**_new_monitor(), **_big_body(ctx)}, format="json"
    ),
    ("POST", MONITORS, 415): lambda ctx: ctx.owner.post(MONITORS, "name=n", content_type="text/plain"),
    ("POST", MONITORS, 422): lambda ctx: ctx.owner.post(
        MONITORS, _new_monitor(schedule="nope"), format="json"
    ),
    ("POST", MONITORS, 429): lambda ctx: _throttled(
        ctx, lambda: ctx.owner.post(MONITORS, _new_monitor(), format="json")
    ),
    ("POST", MONITORS, 503): lambda ctx: (
        ctx.down() or ctx.anonymous.post(MONITORS, _new_monitor(), format="json", **TOKEN)
    ),
    # Monitors: read
    ("GET", MONITOR, 200): lambda ctx: ctx.owner.get(ctx.monitor),
    ("GET", MONITOR, 401): lambda ctx: ctx.anonymous.get(ctx.monitor),
    ("GET", MONITOR, 404): lambda ctx: ctx.other.get(ctx.monitor),
    ("GET", MONITOR, 406): lambda ctx: ctx.owner.get(ctx.monitor, **NOT_JSON),
    ("GET", MONITOR, 429): lambda ctx: _throttled(ctx, lambda: ctx.owner.get(ctx.monitor)),
    ("GET", MONITOR, 503): lambda ctx: ctx.down() or ctx.anonymous.get(ctx.monitor, **TOKEN),
    # Monitors: update
    ("PATCH", MONITOR, 200): lambda ctx: ctx.owner.patch(ctx.monitor, {"paused": True}, format="json"),
    ("PATCH", MONITOR, 401): lambda ctx: ctx.anonymous.patch(ctx.monitor, {"paused": True}, format="json"),
    ("PATCH", MONITOR, 403): lambda ctx: ctx.session_without_csrf.patch(
        ctx.monitor, {"paused": True}, format="json"
    ),
    ("PATCH", MONITOR, 404): lambda ctx: ctx.other.patch(ctx.monitor, {"paused": True}, format="json"),
    ("PATCH", MONITOR, 406): lambda ctx: ctx.owner.patch(
        ctx.monitor, {"paused": True}, format="json", **NOT_JSON
    ),
    ("PATCH", MONITOR, 409): lambda ctx: ctx.owner.patch(ctx.monitor, {"name": "other-name"}, format="json"),
    ("PATCH", MONITOR, 413): lambda ctx: ctx.owner.patch(ctx.monitor, _big_body(ctx), format="json"),
    ("PATCH", MONITOR, 415): lambda ctx: ctx.owner.patch(ctx.monitor, "paused=1", content_type="text/plain"),
    ("PATCH", MONITOR, 422): lambda ctx: ctx.owner.patch(ctx.monitor, {"grace_seconds": -1}, format="json"),
    ("PATCH", MONITOR, 429): lambda ctx: _throttled(
        ctx, lambda: ctx.owner.patch(ctx.monitor, {"paused": True}, format="json")
    ),
    ("PATCH", MONITOR, 503): lambda ctx: (
        ctx.down() or ctx.anonymous.patch(ctx.monitor, {"paused": True}, format="json", **TOKEN)
    ),
    # Monitors: delete
    ("DELETE", MONITOR, 204): lambda ctx: ctx.owner.delete(ctx.monitor),
    ("DELETE", MONITOR, 401): lambda ctx: ctx.anonymous.delete(ctx.monitor),
    ("DELETE", MONITOR, 403): lambda ctx: ctx.session_without_csrf.delete(ctx.monitor),
    ("DELETE", MONITOR, 404): lambda ctx: ctx.other.delete(ctx.monitor),
    ("DELETE", MONITOR, 406): lambda ctx: ctx.owner.delete(ctx.monitor, **NOT_JSON),
    ("DELETE", MONITOR, 429): lambda ctx: _throttled(ctx, lambda: ctx.other.delete(ctx.monitor)),
    ("DELETE", MONITOR, 503): lambda ctx: ctx.down() or ctx.anonymous.delete(ctx.monitor, **TOKEN),
    # Monitors: history
    ("GET", MONITOR_HISTORY, 200): lambda ctx: ctx.owner.get(f"{ctx.monitor}/history"),
    ("GET", MONITOR_HISTORY, 401): lambda ctx: ctx.anonymous.get(f"{ctx.monitor}/history"),
    ("GET", MONITOR_HISTORY, 404): lambda ctx: ctx.other.get(f"{ctx.monitor}/history"),
    ("GET", MONITOR_HISTORY, 406): lambda ctx: ctx.owner.get(f"{ctx.monitor}/history", **NOT_JSON),
    ("GET", MONITOR_HISTORY, 422): lambda ctx: ctx.owner.get(f"{ctx.monitor}/history", {"after": "x"}),
    ("GET", MONITOR_HISTORY, 429): lambda ctx: _throttled(
        ctx, lambda: ctx.owner.get(f"{ctx.monitor}/history")
    ),
    ("GET", MONITOR_HISTORY, 503): lambda ctx: (
        ctx.down() or ctx.anonymous.get(f"{ctx.monitor}/history", **TOKEN)
    ),
}


# --- Notification endpoints and their deliveries -------------------------------------------
ENDPOINTS = "/api/v1/notification-endpoints"
ENDPOINT = f"{ENDPOINTS}/{{endpoint_id}}"
DELIVERIES = f"{ENDPOINT}/deliveries"
DELIVERY = f"{DELIVERIES}/{{message_id}}"
NEW_WEBHOOK = {"kind": "webhook", "url": "https://hooks.example.com/x", "events": ["execution.failed"]}
SINCE = {"since": "2026-01-01T00:00:00Z"}


def _common_errors(method: str, path: str, url, body=None) -> dict:
    """The cases every operation documents: 401, 406, 429, 503, and for unsafe methods 403
    (a session without its CSRF token). `url(ctx)` is the request's URL."""

    def send(client, ctx, **extra):
        call = getattr(client, method.lower())
        if body is None:
            return call(url(ctx), **extra)
        return call(url(ctx), body, format="json", **extra)

    cases = {
        (method, path, 401): lambda ctx: send(ctx.anonymous, ctx),
        (method, path, 406): lambda ctx: send(ctx.owner, ctx, **NOT_JSON),
        (method, path, 429): lambda ctx: _throttled(ctx, lambda: send(ctx.owner, ctx)),
        (method, path, 503): lambda ctx: ctx.down() or send(ctx.anonymous, ctx, **TOKEN),
    }
    if method != "GET":
        cases[(method, path, 403)] = lambda ctx: send(ctx.session_without_csrf, ctx)
    return cases


NOTIFICATION_CASES = {
    **_common_errors("GET", ENDPOINTS, lambda ctx: ENDPOINTS),
    ("GET", ENDPOINTS, 200): lambda ctx: ctx.owner.get(ENDPOINTS, {"page_size": 1}),
    ("GET", ENDPOINTS, 422): lambda ctx: ctx.owner.get(ENDPOINTS, {"kind": "pager", "cursor": "x"}),
    **_common_errors("POST", ENDPOINTS, lambda ctx: ENDPOINTS, NEW_WEBHOOK),
    ("POST", ENDPOINTS, 201): lambda ctx: ctx.owner.post(ENDPOINTS, NEW_WEBHOOK, format="json"),
    ("POST", ENDPOINTS, 413): lambda ctx: ctx.owner.post(
        ENDPOINTS, {**NEW_WEBHOOK, **_big_body(ctx)}, format="json"
    ),
    ("POST", ENDPOINTS, 415): lambda ctx: ctx.owner.post(
        ENDPOINTS, "kind=webhook", content_type="text/plain"
    ),
    ("POST", ENDPOINTS, 422): lambda ctx: ctx.owner.post(ENDPOINTS, {"kind": "webhook"}, format="json"),
    **_common_errors("GET", ENDPOINT, lambda ctx: ctx.endpoint),
    ("GET", ENDPOINT, 200): lambda ctx: ctx.owner.get(ctx.endpoint),
    ("GET", ENDPOINT, 404): lambda ctx: ctx.other.get(ctx.endpoint),
    **_common_errors("PATCH", ENDPOINT, lambda ctx: ctx.endpoint, {"enabled": False}),
    ("PATCH", ENDPOINT, 200): lambda ctx: ctx.owner.patch(ctx.endpoint, {"enabled": False}, format="json"),
    ("PATCH", ENDPOINT, 404): lambda ctx: ctx.other.patch(ctx.endpoint, {"enabled": False}, format="json"),
    ("PATCH", ENDPOINT, 413): lambda ctx: ctx.owner.patch(ctx.endpoint, _big_body(ctx), format="json"),
    ("PATCH", ENDPOINT, 415): lambda ctx: ctx.owner.patch(
        ctx.endpoint, "enabled=0", content_type="text/plain"
    ),
    ("PATCH", ENDPOINT, 422): lambda ctx: ctx.owner.patch(ctx.endpoint, {"events": []}, format="json"),
    **_common_errors("DELETE", ENDPOINT, lambda ctx: ctx.endpoint),
    ("DELETE", ENDPOINT, 204): lambda ctx: ctx.owner.delete(ctx.endpoint),
    ("DELETE", ENDPOINT, 404): lambda ctx: ctx.other.delete(ctx.endpoint),
    **_common_errors("POST", f"{ENDPOINT}/rotate-secret", lambda ctx: f"{ctx.endpoint}/rotate-secret"),
    ("POST", f"{ENDPOINT}/rotate-secret", 200): lambda ctx: ctx.owner.post(f"{ctx.endpoint}/rotate-secret"),
    ("POST", f"{ENDPOINT}/rotate-secret", 404): lambda ctx: ctx.other.post(f"{ctx.endpoint}/rotate-secret"),
    **_common_errors("POST", f"{ENDPOINT}/test", lambda ctx: f"{ctx.endpoint}/test"),
    ("POST", f"{ENDPOINT}/test", 202): lambda ctx: ctx.owner.post(f"{ctx.endpoint}/test"),
    ("POST", f"{ENDPOINT}/test", 404): lambda ctx: ctx.other.post(f"{ctx.endpoint}/test"),
    **_common_errors("POST", f"{ENDPOINT}/replay", lambda ctx: f"{ctx.endpoint}/replay", SINCE),
    ("POST", f"{ENDPOINT}/replay", 202): lambda ctx: ctx.owner.post(
        f"{ctx.endpoint}/replay", SINCE, format="json"
    ),
    ("POST", f"{ENDPOINT}/replay", 404): lambda ctx: ctx.other.post(
        f"{ctx.endpoint}/replay", SINCE, format="json"
    ),
    ("POST", f"{ENDPOINT}/replay", 413): lambda ctx: ctx.owner.post(
        f"{ctx.endpoint}/replay", {**SINCE, **_big_body(ctx)}, format="json"
    ),
    ("POST", f"{ENDPOINT}/replay", 415): lambda ctx: ctx.owner.post(
        f"{ctx.endpoint}/replay", "since=now", content_type="text/plain"
    ),
    ("POST", f"{ENDPOINT}/replay", 422): lambda ctx: ctx.owner.post(
        f"{ctx.endpoint}/replay", {}, format="json"
    ),
    **_common_errors("GET", DELIVERIES, lambda ctx: f"{ctx.endpoint}/deliveries"),
    ("GET", DELIVERIES, 200): lambda ctx: ctx.owner.get(f"{ctx.endpoint}/deliveries"),
    ("GET", DELIVERIES, 404): lambda ctx: ctx.other.get(f"{ctx.endpoint}/deliveries"),
    ("GET", DELIVERIES, 422): lambda ctx: ctx.owner.get(f"{ctx.endpoint}/deliveries", {"state": "lost"}),
    **_common_errors("GET", DELIVERY, lambda ctx: ctx.delivery),
    ("GET", DELIVERY, 200): lambda ctx: ctx.owner.get(ctx.delivery),
    ("GET", DELIVERY, 404): lambda ctx: ctx.owner.get(f"{ctx.endpoint}/deliveries/msg_none"),
    **_common_errors("POST", f"{DELIVERY}/replay", lambda ctx: f"{ctx.delivery}/replay"),
    ("POST", f"{DELIVERY}/replay", 202): lambda ctx: ctx.owner.post(f"{ctx.delivery}/replay"),
    ("POST", f"{DELIVERY}/replay", 404): lambda ctx: ctx.other.post(f"{ctx.delivery}/replay"),
}
CASES.update(NOTIFICATION_CASES)


def test_every_documented_response_has_a_case_and_every_case_is_documented(openapi):
    assert documented_responses(openapi) == set(CASES)


@pytest.fixture
def ctx(request, owner, other_user, client_for, settings):
    execution = ExecutionFactory(created_by=owner)
    finished = ExecutionFactory(created_by=owner)
    client_for(owner).patch(f"{EXECUTIONS}/{finished.id}", {"status": "cancelled"}, format="json")
    session_without_csrf = APIClient(enforce_csrf_checks=True)
    session_without_csrf.force_login(owner)
    assert ExecutionStatus.CANCELLED == type(finished).objects.get(pk=finished.pk).status
    endpoint = NotificationEndpointFactory(owner=owner)
    message = NotificationMessageFactory(endpoint=endpoint, attempts_made=1)
    monitor = monitor_for(owner, name="watched")
    monitor_for(owner, name="other-name")
    return SimpleNamespace(
        anonymous=APIClient(),
        owner=client_for(owner),
        other=client_for(other_user),
        session_without_csrf=session_without_csrf,
        one=f"{EXECUTIONS}/{execution.id}",
        finished_one=f"{EXECUTIONS}/{finished.id}",
        endpoint=f"{ENDPOINTS}/{endpoint.id}",
        delivery=f"{ENDPOINTS}/{endpoint.id}/deliveries/{message.webhook_id}",
        monitor=f"{MONITORS}/{monitor.id}",
        settings=settings,
        down=lambda: request.getfixturevalue("database_down") and None,
    )


@pytest.mark.parametrize("case", sorted(CASES), ids=lambda case: f"{case[0]} {case[1]} {case[2]}")
def test_documented_response_is_what_the_endpoint_returns(openapi, ctx, case):
    method, path, code = case
    response = CASES[case](ctx)

    assert response.status_code == code, response.content
    if code == 204:
        assert (
            response.content == b""
            and "content" not in openapi["paths"][path][method.lower()]["responses"]["204"]
        )
        return
    assert response["Content-Type"] == "application/json"
    schema = body_schema(openapi, method, path, code)
    validator = Draft202012Validator(
        {**schema, "components": openapi["components"]}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = [error.message for error in validator.iter_errors(response.json())]
    assert errors == []


# --- The documentation pages work offline ------------------------------------------------


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_use_only_local_assets_and_they_load(client, db, page):
    response = client.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, "the page loads no assets at all?"
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        asset_response = client.get(asset)
        assert asset_response.status_code == 200, asset
    assert not re.search(r"https?://(?!www\.w3\.org)", html), "the page reaches out to another host"
    # The page loads the schema from this server (Swagger UI through its set-up script, ?script).
    setup_scripts = [client.get(asset).content.decode() for asset in assets if asset.endswith("?script=")]
    assert "/api/schema/" in html + "".join(setup_scripts)


def test_every_method_a_path_does_not_document_is_the_405_the_description_promises(openapi, ctx):
    assert "405" in openapi["info"]["description"]
    for path, operations in openapi["paths"].items():
        url = (
            path.replace("{execution_id}", ctx.one.rsplit("/", 1)[1])
            .replace("{monitor_id}", ctx.monitor.rsplit("/", 1)[1])
            .replace("{endpoint_id}", ctx.endpoint.rsplit("/", 1)[1])
            .replace("{message_id}", ctx.delivery.rsplit("/", 1)[1])
        )
        for method in {"get", "post", "put", "patch", "delete"} - set(operations):
            response = getattr(ctx.owner, method)(url)
            assert response.status_code == 405, (method, path)
            assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"
            assert set(response["Allow"].lower().replace(" ", "").split(",")) >= set(operations)
