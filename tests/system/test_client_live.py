"""The Python client against a live server: every operation, with the typed results and
errors a caller gets (its retries: tests/test_client.py)."""

import pytest
from executions_client import (
    BadRequestError,
    ConflictError,
    Execution,
    ExecutionsClient,
    NotFoundError,
    PreconditionFailedError,
    UnprocessableEntityError,
)

from executions.api.error_codes import ErrorCode
from executions.models import ChangeChannel, ExecutionStatus
from executions.services import execution_change_status

from ..factories import ExecutionFactory, UserFactory, api_key_for

pytestmark = pytest.mark.slow


@pytest.fixture
def alice(transactional_db):
    return UserFactory(username="alice")


@pytest.fixture
def live_client(live_server, alice):
    token = api_key_for(alice)
    with ExecutionsClient(live_server.url, token, retry_for=0) as client:
        yield client


def test_create_get_heartbeat_and_complete(live_client):
    created = live_client.create("nightly-report", {"shard": 3})

    assert isinstance(created, Execution)
    assert (created.name, created.status, created.metadata, created.created_by) == (
        "nightly-report",
        "running",
        {"shard": 3},
        "alice",
    )
    assert created.created_at.tzinfo is not None
    assert created.etag

    beat = live_client.heartbeat(created.id)
    assert beat.status == "running"
    fetched = live_client.get(created.id)
    assert fetched.last_heartbeat_at == beat.last_heartbeat_at

    answer = live_client.complete(created.id)
    assert (answer.success, answer.previous_status, answer.current_status) == (True, "running", "completed")
    assert live_client.complete(created.id).success is False
    assert live_client.get(created.id).finished_at is not None


def test_fail_stores_error_info_and_history_tells_it(live_client):
    execution = live_client.create("nightly-report")

    live_client.fail(execution.id, {"exit_code": 3})

    assert live_client.get(execution.id).error_info == {"exit_code": 3}
    [change] = live_client.history(execution.id)
    assert (change.execution_id, change.previous_status, change.new_status) == (
        execution.id,
        "running",
        "failed",
    )
    assert (change.actor, change.channel, change.error_info) == ("alice", "api", {"exit_code": 3})


def test_errors_carry_code_correlation_id_and_current_status(live_client):
    execution = live_client.create("nightly-report")
    live_client.cancel(execution.id)

    with pytest.raises(ConflictError) as conflict:
        live_client.heartbeat(execution.id)
    assert conflict.value.error_code == ErrorCode.EXECUTION_NOT_RUNNING
    assert conflict.value.current_status == "cancelled"
    assert conflict.value.correlation_id

    with pytest.raises(BadRequestError) as refused:
        live_client.complete(execution.id)
    assert refused.value.error_code == ErrorCode.INVALID_STATUS_TRANSITION

    with pytest.raises(NotFoundError) as missing:
        live_client.get("00000000-0000-0000-0000-000000000000")
    assert missing.value.error_code == ErrorCode.EXECUTION_NOT_FOUND


def test_stale_if_match_is_a_precondition_failure(live_client):
    execution = live_client.create("nightly-report")
    live_client.heartbeat(execution.id)  # a new version

    with pytest.raises(PreconditionFailedError) as raised:
        live_client.update_status(execution.id, "cancelled", if_match=execution.etag)
    assert raised.value.error_code == ErrorCode.PRECONDITION_FAILED

    current = live_client.get(execution.id)
    assert live_client.update_status(execution.id, "cancelled", if_match=current.etag).success


def test_validation_errors_carry_their_items(live_client):
    with pytest.raises(UnprocessableEntityError) as raised:
        live_client.create("")

    [item] = raised.value.errors
    assert item["loc"] == ["body", "name"]
    assert raised.value.correlation_id
    assert "body.name" in str(raised.value)


def test_iter_executions_follows_the_cursor(live_client, alice):
    ExecutionFactory.create_batch(5, created_by=alice, name="batch")
    ExecutionFactory(created_by=alice, name="other")

    page = live_client.list_executions(name="batch", page_size=2)
    assert len(page.results) == 2
    assert page.next_cursor

    names = [execution.name for execution in live_client.iter_executions(name="batch", page_size=2)]
    assert names == ["batch"] * 5
    assert len(list(live_client.iter_executions(status=["running", "failed"], page_size=4))) == 6


def test_iter_status_changes_follows_the_feed_and_resumes_from_its_cursor(live_client, alice):
    executions = ExecutionFactory.create_batch(5, created_by=alice)
    for execution in executions[:3]:
        execution_change_status(
            execution_id=execution.id,
            status=ExecutionStatus.CANCELLED,
            actor=alice,
            channel=ChangeChannel.API,
        )

    stream = live_client.iter_status_changes(page_size=2)
    seen = [change.execution_id for change in stream]
    assert seen == [str(execution.id) for execution in executions[:3]]

    for execution in executions[3:]:
        execution_change_status(
            execution_id=execution.id, status=ExecutionStatus.FAILED, actor=alice, channel=ChangeChannel.API
        )
    resumed = list(live_client.iter_status_changes(stream.cursor))
    assert [(change.execution_id, change.new_status) for change in resumed] == [
        (str(execution.id), "failed") for execution in executions[3:]
    ]
    assert [change.new_status for change in live_client.iter_status_changes(new_status="failed")] == [
        "failed"
    ] * 2


def test_an_id_is_never_read_as_another_path(live_client):
    with pytest.raises(NotFoundError):
        live_client.get("../executions?page_size=1")
    with pytest.raises(NotFoundError):
        live_client.history("x/y")


def test_create_with_one_key_twice_creates_once(live_client, alice):
    first = live_client.create("nightly-report", {"shard": 3}, idempotency_key="nightly-2026-11-29")
    again = live_client.create("nightly-report", {"shard": 3}, idempotency_key="nightly-2026-11-29")

    assert again.id == first.id
    assert alice.executions.count() == 1
    with pytest.raises(UnprocessableEntityError) as raised:
        live_client.create("another-report", idempotency_key="nightly-2026-11-29")
    assert raised.value.error_code == ErrorCode.IDEMPOTENCY_KEY_REUSED
    assert raised.value.errors == []
    assert alice.executions.count() == 1


def test_a_max_runtime_is_sent_and_the_deadline_read_back(live_client):
    created = live_client.create("bounded", max_runtime_seconds=90)
    assert created.max_runtime_seconds == 90
    assert (created.deadline_at - created.created_at).total_seconds() == 90
    assert live_client.get(created.id).deadline_at == created.deadline_at
    unbounded = live_client.create("unbounded")
    assert (unbounded.max_runtime_seconds, unbounded.deadline_at) == (None, None)
