"""Deadlines: an execution created with a max runtime carries its deadline (API, command),
and the worker's deadline task fails it once the deadline passes while it still runs, through
the one compare-and-set, with the `worker` channel and a reason of its own."""

import hashlib
import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from prometheus_client import REGISTRY

from executions.api.idempotency import request_fingerprint
from executions.api.schemas import ExecutionCreateRequest
from executions.models import (
    MAX_RUNTIME_SECONDS_LIMIT,
    ChangeChannel,
    Execution,
    ExecutionStatusChange,
    IdempotencyKey,
)
from executions.services import execution_change_status, execution_create
from executions.worker.deadlines import fail_executions_past_deadline
from executions.worker.identity import worker_identity

from .api import execution_url
from .factories import ExecutionFactory

URL = "/api/v1/executions"
TASK = "fail_executions_past_deadline"

pytestmark = pytest.mark.django_db


def with_deadline(seconds_from_now: float, max_runtime_seconds: int = 60, **fields) -> Execution:
    """A running execution whose deadline is `seconds_from_now` away (negative: passed)."""
    deadline_at = timezone.now() + timedelta(seconds=seconds_from_now)
    return ExecutionFactory(
        created_at=deadline_at - timedelta(seconds=max_runtime_seconds),
        max_runtime_seconds=max_runtime_seconds,
        deadline_at=deadline_at,
        **fields,
    )


# --- Given at creation ------------------------------------------------------------------


def test_the_api_stores_the_max_runtime_and_answers_the_deadline(owner_client):
    response = owner_client.post(URL, {"name": "nightly", "max_runtime_seconds": 90}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["max_runtime_seconds"] == 90
    created_at, deadline_at = parse_datetime(body["created_at"]), parse_datetime(body["deadline_at"])
    assert deadline_at - created_at == timedelta(seconds=90)
    execution = Execution.objects.get(pk=body["id"])
    assert (execution.max_runtime_seconds, execution.deadline_at) == (90, deadline_at)
    assert owner_client.get(execution_url(execution)).json() == body
    listed = owner_client.get(URL).json()["results"]
    assert [(row["max_runtime_seconds"], row["deadline_at"]) for row in listed] == [(90, body["deadline_at"])]


@pytest.mark.parametrize("body", [{"name": "x"}, {"name": "x", "max_runtime_seconds": None}])
def test_without_a_max_runtime_there_is_no_deadline(owner_client, body):
    response = owner_client.post(URL, body, format="json")
    assert response.status_code == 201
    assert (response.json()["max_runtime_seconds"], response.json()["deadline_at"]) == (None, None)


@pytest.mark.parametrize(
    "value, error_type",
    [
        (0, "greater_than_equal"),
        (-5, "greater_than_equal"),
        (MAX_RUNTIME_SECONDS_LIMIT + 1, "less_than_equal"),
        (10**30, "less_than_equal"),
        (1.5, "int_from_float"),
        (0.0, "greater_than_equal"),
        ("60", "int_type"),
        ("", "int_type"),
        (True, "int_type"),
        ([60], "int_type"),
        ({"seconds": 60}, "int_type"),
    ],
)
def test_a_bad_max_runtime_is_a_422_and_creates_nothing(owner_client, value, error_type):
    response = owner_client.post(URL, {"name": "x", "max_runtime_seconds": value}, format="json")
    assert response.status_code == 422
    [item] = response.json()["detail"]
    assert (item["loc"], item["type"]) == (["body", "max_runtime_seconds"], error_type)
    assert not Execution.objects.exists()


def test_a_whole_number_written_with_a_fraction_is_taken(owner_client):
    """JSON Schema's integer (the schema's type) is any number without a fraction: 60.0 too."""
    response = owner_client.post(URL, {"name": "x", "max_runtime_seconds": 60.0}, format="json")
    assert response.status_code == 201
    assert response.json()["max_runtime_seconds"] == 60


def test_the_longest_max_runtime_is_accepted(owner_client):
    response = owner_client.post(
        URL, {"name": "x", "max_runtime_seconds": MAX_RUNTIME_SECONDS_LIMIT}, format="json"
    )
    assert response.status_code == 201


def test_an_idempotent_retry_must_ask_for_the_same_max_runtime(owner_client):
    first = owner_client.post(
        URL, {"name": "x", "max_runtime_seconds": 60}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    again = owner_client.post(
        URL, {"name": "x", "max_runtime_seconds": 60}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    other = owner_client.post(
        URL, {"name": "x", "max_runtime_seconds": 61}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 422)
    assert again.json() == first.json() and first.json()["max_runtime_seconds"] == 60
    assert other.json()["error_code"] == "IDEMPOTENCY_KEY_REUSED"
    assert Execution.objects.count() == 1


def test_a_key_kept_from_before_max_runtime_existed_is_still_replayed(owner_client, owner):
    """A create's answer stored before this version (no max_runtime_seconds nor deadline_at
    in it) is answered again to its retry, not refused as a different request."""
    execution = ExecutionFactory(created_by=owner, name="x")
    old_body = {
        "id": str(execution.id),
        "name": "x",
        "status": "running",
        "error_info": None,
        "metadata": {},
        "created_by": "owner",
        "created_at": execution.created_at.isoformat(),
        "updated_at": execution.updated_at.isoformat(),
        "finished_at": None,
        "last_heartbeat_at": None,
    }
    # What the fingerprint of {"name": "x"} was before the field existed.
    old_fingerprint = hashlib.sha256(b'{"metadata":{},"name":"x"}').hexdigest()
    assert request_fingerprint(ExecutionCreateRequest(name="x")) == old_fingerprint
    IdempotencyKey.objects.create(
        user=owner,
        key="old",
        request_fingerprint=old_fingerprint,
        execution=execution,
        response_body=old_body,
    )
    response = owner_client.post(URL, {"name": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    assert response.status_code == 201
    assert response.json() == old_body
    assert response["Idempotent-Replayed"] == "true"


def test_the_command_takes_a_max_runtime(owner):
    out = StringIO()
    call_command("create_execution", "--name", "nightly", "--max-runtime", "90m", stdout=out)
    execution = Execution.objects.get(pk=out.getvalue().strip())
    assert execution.max_runtime_seconds == 5400
    assert execution.deadline_at - execution.created_at == timedelta(minutes=90)


@pytest.mark.parametrize("value", ["0s", "90", "-5m", "1.5h", "99999999d", ""])
def test_the_command_refuses_a_bad_max_runtime(value):
    with pytest.raises(CommandError, match="--max-runtime"):
        call_command("create_execution", "--name", "x", "--max-runtime", value)
    assert not Execution.objects.exists()


# --- The worker's deadline task ---------------------------------------------------------


def test_an_execution_past_its_deadline_is_failed_with_the_reason(owner):
    overdue = with_deadline(-5, max_runtime_seconds=30, created_by=owner)
    fail_executions_past_deadline(timezone.now())

    overdue.refresh_from_db()
    assert overdue.status == "failed"
    assert overdue.finished_at is not None
    assert overdue.error_info == {
        "reason": "deadline_exceeded",
        "deadline_at": overdue.deadline_at.isoformat(),
        "max_runtime_seconds": 30,
        "detected_by": "run_worker",
    }
    [record] = ExecutionStatusChange.objects.filter(execution=overdue)
    assert (record.previous_status, record.new_status, record.channel) == ("running", "failed", "worker")
    assert (record.actor, record.actor_username) == (None, "")
    assert record.correlation_id == worker_identity() and record.error_info == overdue.error_info


# Committed for real: on PostgreSQL the feed shows only what committed before the oldest
# transaction still running, and a test's own transaction would be that.
@pytest.mark.django_db(transaction=True)
def test_the_history_and_the_feed_show_the_worker_channel(owner, owner_client):
    overdue = with_deadline(-1, created_by=owner)
    fail_executions_past_deadline(timezone.now())

    [change] = owner_client.get(f"{execution_url(overdue)}/history").json()["results"]
    assert (change["channel"], change["actor"], change["new_status"]) == ("worker", None, "failed")
    assert change["error_info"]["reason"] == "deadline_exceeded"
    feed = owner_client.get("/api/v1/status-changes", {"channel": "worker"}).json()["results"]
    assert [item["execution_id"] for item in feed] == [str(overdue.id)]


def test_the_next_heartbeat_is_told_to_stop(owner, owner_client):
    overdue = with_deadline(-1, created_by=owner)
    assert owner_client.post(f"{execution_url(overdue)}/heartbeat").status_code == 200
    fail_executions_past_deadline(timezone.now())

    response = owner_client.post(f"{execution_url(overdue)}/heartbeat")
    assert response.status_code == 409
    assert (response.json()["error_code"], response.json()["current_status"]) == (
        "EXECUTION_NOT_RUNNING",
        "failed",
    )


def test_executions_not_yet_due_finished_or_without_deadline_are_left_alone():
    soon = with_deadline(30)
    finished = with_deadline(-30)
    execution_change_status(execution_id=finished.id, status="completed", channel=ChangeChannel.API)
    unlimited = ExecutionFactory()

    assert 29 < fail_executions_past_deadline(timezone.now()) <= 30  # until `soon` is due
    statuses = dict(Execution.objects.values_list("pk", "status"))
    assert statuses == {soon.pk: "running", finished.pk: "completed", unlimited.pk: "running"}
    assert ExecutionStatusChange.objects.filter(channel="worker").count() == 0


def test_with_no_deadline_anywhere_the_task_knows_of_nothing():
    ExecutionFactory()
    assert fail_executions_past_deadline(timezone.now()) is None


def test_a_deadline_is_acted_on_at_the_moment_it_is_due_not_before():
    execution = with_deadline(10)
    fail_executions_past_deadline(execution.deadline_at - timedelta(microseconds=1))
    execution.refresh_from_db()
    assert execution.status == "running"
    fail_executions_past_deadline(execution.deadline_at)
    execution.refresh_from_db()
    assert execution.status == "failed"


def test_one_call_does_one_bounded_batch_and_says_more_is_due(settings):
    settings.WORKER_BATCH_SIZE = 3
    overdue = [with_deadline(-100 + index) for index in range(7)]
    now = timezone.now()
    answers = [fail_executions_past_deadline(now) for _ in range(3)]
    assert answers == [0, 0, 0]
    assert Execution.objects.filter(status="failed").count() == 7
    # Soonest deadline first.
    order = list(
        ExecutionStatusChange.objects.filter(channel="worker")
        .order_by("id")
        .values_list("execution", flat=True)
    )
    assert order == [execution.pk for execution in overdue]
    assert fail_executions_past_deadline(now) is None


def test_done_twice_it_fails_each_execution_once():
    with_deadline(-1)
    now = timezone.now()
    fail_executions_past_deadline(now)
    fail_executions_past_deadline(now)
    assert ExecutionStatusChange.objects.count() == 1


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_transitions_and_the_lag_are_counted():
    transitions_before = sample("executions_watch_transitions_total", reason="deadline_exceeded")
    lags_before = sample("executions_worker_lag_seconds_count", task=TASK)
    late_before = sample("executions_worker_lag_seconds_bucket", task=TASK, le="30.0")
    with_deadline(-2)
    with_deadline(-100)
    fail_executions_past_deadline(timezone.now())
    assert sample("executions_watch_transitions_total", reason="deadline_exceeded") - transitions_before == 2
    assert sample("executions_worker_lag_seconds_count", task=TASK) - lags_before == 2
    # One within 30 s of its deadline, one 100 s late.
    assert sample("executions_worker_lag_seconds_bucket", task=TASK, le="30.0") - late_before == 1


def test_the_log_says_what_it_did_and_how_far_behind_it_was(caplog):
    with_deadline(-3600)
    with_deadline(-3000)
    with caplog.at_level(logging.INFO, logger="executions.worker"):
        fail_executions_past_deadline(timezone.now())
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith(f"{TASK}: 2 execution(s) failed past their deadline, 0 skipped")
    assert "catching up: 3600 s behind" in message


def test_the_create_service_takes_the_max_runtime():
    """What the monitors pass for their runs."""
    execution = execution_create(name="x", max_runtime_seconds=5)
    assert execution.deadline_at - execution.created_at == timedelta(seconds=5)
