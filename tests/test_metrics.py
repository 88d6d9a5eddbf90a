"""GET /metrics: its protection, and that each counter counts what happened, read the way
Prometheus reads it (a scrape over HTTP, parsed as the text format). The same under
several gunicorn worker processes: tests/system/test_metrics_multiprocess.py."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from executions import metrics
from executions.api.metrics import UNMATCHED_ROUTE
from executions.models import ChangeChannel, Execution
from executions.services import execution_change_status_bulk

from .api import patch_status
from .database_down import database_down  # noqa: F401
from .factories import ExecutionFactory

pytestmark = pytest.mark.django_db

TOKEN = "metrics-test-token-0123456789abcdef"
EXECUTION_ROUTE = "execution-detail"


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN


def scrape(client) -> dict:
    """Every sample of a scrape: {(name, (label pairs...)): value}."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def change(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


# --- Protection -------------------------------------------------------------------------


def test_without_a_token_configured_the_endpoint_does_not_exist(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [None, "", f"Token {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer", f"bearer{TOKEN}"],
)
def test_a_missing_or_wrong_bearer_token_is_401_and_shows_no_metric(client, authorization):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = client.get("/metrics", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"executions_" not in response.content


def test_an_api_token_of_a_superuser_does_not_open_it(client, client_for, superuser):
    response = client_for(superuser).get("/metrics")
    assert response.status_code == 401


def test_only_get(client):
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405


# --- What is counted --------------------------------------------------------------------


def test_status_changes_and_each_refusal_reason_through_the_api(
    client, owner_client, owner, django_capture_on_commit_callbacks
):
    cancelled, failed, stale_etag = (ExecutionFactory(created_by=owner) for _ in range(3))
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        assert patch_status(owner_client, cancelled.id, "cancelled").status_code == 200
        assert patch_status(owner_client, failed.id, "failed").status_code == 200
        assert patch_status(owner_client, cancelled.id, "cancelled").json()["success"] is False  # same status
        assert patch_status(owner_client, cancelled.id, "completed").status_code == 400  # invalid transition
        assert patch_status(owner_client, failed.id, "completed").status_code == 400
        assert patch_status(owner_client, "8a0f3c1e-0000-4000-8000-000000000000", "failed").status_code == 404
        etag = owner_client.get(f"/api/v1/executions/{stale_etag.id}")["ETag"]
        owner_client.post(f"/api/v1/executions/{stale_etag.id}/heartbeat")
        assert patch_status(owner_client, stale_etag.id, "cancelled", HTTP_IF_MATCH=etag).status_code == 412
    after = scrape(client)

    changes = "executions_status_changes_total"
    refused = "executions_status_changes_refused_total"
    api = ChangeChannel.API
    assert change(before, after, changes, previous_status="running", new_status="cancelled", channel=api) == 1
    assert change(before, after, changes, previous_status="running", new_status="failed", channel=api) == 1
    assert change(before, after, changes, previous_status="running", new_status="completed", channel=api) == 0
    assert change(before, after, refused, reason=metrics.REFUSED_SAME_STATUS, channel=api) == 1
    assert change(before, after, refused, reason=metrics.REFUSED_INVALID_TRANSITION, channel=api) == 2
    assert change(before, after, refused, reason=metrics.REFUSED_NOT_FOUND, channel=api) == 1
    assert change(before, after, refused, reason=metrics.REFUSED_PRECONDITION_FAILED, channel=api) == 1


def test_a_change_that_rolls_back_is_not_counted(client, running_execution):
    # Inside the test's transaction, which is rolled back: nothing commits, nothing counts.
    before = scrape(client)
    execution_change_status_bulk(
        executions=Execution.objects.filter(pk=running_execution.id),
        status="cancelled",
        channel=ChangeChannel.ADMIN,
    )
    after = scrape(client)
    assert (
        change(
            before,
            after,
            "executions_status_changes_total",
            previous_status="running",
            new_status="cancelled",
            channel=ChangeChannel.ADMIN,
        )
        == 0
    )


def test_bulk_changes_are_counted_on_both_paths(client, django_capture_on_commit_callbacks):
    old = timezone.now() - timedelta(days=2)
    by_admin = [ExecutionFactory().id for _ in range(3)]
    for _ in range(4):
        ExecutionFactory(created_at=old)
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        # One error_info for all (the admin's actions)...
        execution_change_status_bulk(
            executions=Execution.objects.filter(pk__in=by_admin),
            status="failed",
            channel=ChangeChannel.ADMIN,
            error_info={"reason": "operator"},
            batch_size=2,
        )
        # ...and one the database computes per row (the cleanup).
        call_command("cleanup_stale_executions", "--older-than", "1d", "--batch-size", "3", stdout=None)
    after = scrape(client)
    changes = "executions_status_changes_total"
    assert (
        change(before, after, changes, previous_status="running", new_status="failed", channel="admin") == 3
    )
    assert (
        change(before, after, changes, previous_status="running", new_status="interrupted", channel="command")
        == 4
    )


def test_heartbeats_by_result(client, owner_client, owner):
    running = ExecutionFactory(created_by=owner)
    finished = ExecutionFactory(created_by=owner, status="completed")
    before = scrape(client)
    for _ in range(3):
        assert owner_client.post(f"/api/v1/executions/{running.id}/heartbeat").status_code == 200
    assert owner_client.post(f"/api/v1/executions/{finished.id}/heartbeat").status_code == 409
    assert (
        owner_client.post("/api/v1/executions/8a0f3c1e-0000-4000-8000-000000000000/heartbeat").status_code
        == 404
    )
    after = scrape(client)
    assert change(before, after, "executions_heartbeats_total", result=metrics.HEARTBEAT_ACCEPTED) == 3
    assert change(before, after, "executions_heartbeats_total", result=metrics.HEARTBEAT_NOT_RUNNING) == 1
    assert change(before, after, "executions_heartbeats_total", result=metrics.HEARTBEAT_NOT_FOUND) == 1


def test_running_and_stale_are_counted_in_the_database(client, settings):
    settings.EXECUTIONS_STALE_AFTER = timedelta(minutes=30)
    long_ago = timezone.now() - timedelta(hours=1)
    for _ in range(2):
        ExecutionFactory(created_at=long_ago)  # stale
    ExecutionFactory(created_at=long_ago, last_heartbeat_at=timezone.now())  # reported: not stale
    ExecutionFactory()  # new
    ExecutionFactory(status="completed", created_at=long_ago)  # finished: neither
    samples = scrape(client)
    assert value(samples, "executions_running") == 4 == Execution.objects.filter(status="running").count()
    assert value(samples, "executions_stale") == 2


def test_request_durations_by_route_name_and_status_not_raw_path(client, owner_client, owner):
    executions = [ExecutionFactory(created_by=owner) for _ in range(2)]
    before = scrape(client)
    for execution in executions:
        assert owner_client.get(f"/api/v1/executions/{execution.id}").status_code == 200
    assert owner_client.get("/api/v1/executions/8a0f3c1e-0000-4000-8000-000000000000").status_code == 404
    client.get("/no-such-page-1")
    client.get("/no-such-page-2")
    client.generic("BREW", "/healthz")
    after = scrape(client)

    histogram = "executions_http_request_duration_seconds_count"
    assert change(before, after, histogram, route=EXECUTION_ROUTE, method="GET", status="200") == 2
    assert change(before, after, histogram, route=EXECUTION_ROUTE, method="GET", status="404") == 1
    assert change(before, after, histogram, route=UNMATCHED_ROUTE, method="GET", status="404") == 2
    assert change(before, after, histogram, route="healthz", method="other", status="405") == 1
    # No label value carries a raw path or a client's method.
    labels = {dict(key[1]).get("route") for key in after} | {dict(key[1]).get("method") for key in after}
    assert not any(
        label and ("no-such-page" in label or "8a0f3c1e" in label or label == "BREW") for label in labels
    )


def test_the_503s_of_a_database_outage_are_counted_and_metrics_still_answer(client, database_down):  # noqa: F811
    before = scrape(client)
    assert client.get("/api/v1/executions", HTTP_AUTHORIZATION="Token abc").status_code == 503
    assert client.get("/readyz").status_code == 503
    after = scrape(client)
    assert change(before, after, "executions_database_unavailable_total") == 2
    # The gauges need the database: left out, not wrong.
    assert ("executions_running", ()) not in after


def test_monitors_by_state_are_counted_in_the_database_and_transitions_by_reason(
    client, owner, django_capture_on_commit_callbacks
):
    from executions.monitors.services import monitors_mark_missed
    from executions.services import execution_create

    from .factories import monitor_for

    late = [
        monitor_for(owner, name=f"late-{number}", schedule="every 1m", grace_seconds=0) for number in range(2)
    ]
    running = monitor_for(owner, name="running")
    monitor_for(owner, name="resting", paused=True)
    monitor_for(owner, name="waiting", schedule="every 1h")
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        execution_create(name="running", created_by=owner, monitor=running, channel=ChangeChannel.API)
        monitors_mark_missed(now=max(monitor.late_after for monitor in late))
    after = scrape(client)

    by_state = {
        state: value(after, "executions_monitors", state=state) for state in ("new", "up", "down", "paused")
    }
    assert by_state == {"new": 1, "up": 1, "down": 2, "paused": 1}
    transitions = "executions_monitor_state_changes_total"
    assert change(before, after, transitions, new_state="down", reason="missed", channel="worker") == 2
    assert change(before, after, transitions, new_state="up", reason="", channel="api") == 1
