"""The Python client (client/executions_client) against a mock transport: retries, the
idempotency key, typed errors, configuration; and pieces of executions-run. Against a live
server: tests/system/test_client_live.py."""

import email.utils
import json
import signal
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from executions_client import (
    BadRequestError,
    ConfigurationError,
    ConflictError,
    Execution,
    ExecutionsClient,
    NotFoundError,
    PreconditionFailedError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from executions_client import client as client_module
from executions_client.run import Heartbeats, Outcome

from executions.api.error_codes import ErrorCode

# Never contacted: a mock transport answers instead.
MOCK_URL = "http://127.0.0.1:9"
EXECUTION_ID = "b7a499a9-5a6b-4ff8-a2e2-2afdb88c4769"
EXECUTION_BODY = {
    "id": EXECUTION_ID,
    "name": "nightly-report",
    "status": "running",
    "error_info": None,
    "metadata": {},
    "created_by": "alice",
    "created_at": "2026-11-29T10:00:00.123456Z",
    "updated_at": "2026-11-29T10:00:00.123456Z",
    "finished_at": None,
    "last_heartbeat_at": None,
}


class FakeClock:
    """Stands in for the client module's `time`: sleeping records the wait and moves the clock."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(client_module, "time", fake)
    return fake


def mock_client(answers, retry_for=60.0):
    """A client whose requests get `answers` in turn: a Response, or an exception to raise.
    The requests it made are in `client.requests`."""
    answers = list(answers)
    requests: list[httpx.Request] = []

    def handler(request):
        requests.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = ExecutionsClient(
        MOCK_URL, "secret-token", retry_for=retry_for, transport=httpx.MockTransport(handler)
    )
    client.requests = requests
    return client


def error_answer(status, error_code, headers=None, **extra):
    body = {
        "detail": "no",
        "error_code": error_code,
        "correlation_id": "corr-1",
        "timestamp": "2026-11-29T10:00:00Z",
    }
    return httpx.Response(status, json={**body, **extra}, headers=headers)


def created():
    return httpx.Response(201, json=EXECUTION_BODY, headers={"ETag": '"1"'})


# --- retries ----------------------------------------------------------------------------


def test_503_waits_what_retry_after_says_then_succeeds(clock):
    client = mock_client([error_answer(503, ErrorCode.SERVICE_UNAVAILABLE, {"Retry-After": "5"}), created()])

    execution = client.create("nightly-report")

    assert execution.id == EXECUTION_ID
    assert clock.sleeps == [5.0]
    assert len(client.requests) == 2


def test_429_with_an_http_date_in_retry_after(clock):
    when = datetime.now(UTC) + timedelta(seconds=20)
    answer = error_answer(
        429, ErrorCode.THROTTLED, {"Retry-After": email.utils.format_datetime(when, usegmt=True)}
    )
    client = mock_client([answer, httpx.Response(200, json=EXECUTION_BODY)])

    assert client.get(EXECUTION_ID).name == "nightly-report"
    [wait] = clock.sleeps
    assert 15 < wait <= 20


def test_retry_after_is_capped(clock):
    client = mock_client(
        [error_answer(503, ErrorCode.SERVICE_UNAVAILABLE, {"Retry-After": "3600"}), created()]
    )

    client.create("nightly-report")

    assert clock.sleeps == [client_module.MAX_RETRY_WAIT]


def test_connection_errors_are_retried_with_growing_backoff(clock):
    refused = httpx.ConnectError("Connection refused")
    client = mock_client(
        [refused, refused, httpx.ReadTimeout("timed out"), httpx.Response(200, json=EXECUTION_BODY)]
    )

    assert client.get(EXECUTION_ID).id == EXECUTION_ID
    first, second, third = clock.sleeps
    assert 0.5 <= first <= 0.75
    assert 1.0 <= second <= 1.5
    assert 2.0 <= third <= 3.0


def test_create_sends_one_idempotency_key_on_every_try(clock):
    # The first answer is lost on the way back: the retry must name the same creation.
    client = mock_client(
        [httpx.ReadTimeout("timed out"), error_answer(503, ErrorCode.SERVICE_UNAVAILABLE), created()]
    )

    client.create("nightly-report", {"shard": 3})

    keys = [request.headers["Idempotency-Key"] for request in client.requests]
    assert len(keys) == 3
    assert len(set(keys)) == 1
    assert [json.loads(request.content) for request in client.requests] == [
        {"name": "nightly-report", "metadata": {"shard": 3}}
    ] * 3


def test_each_create_has_its_own_key_unless_given_one(clock):
    client = mock_client([created(), created(), created()])

    client.create("a")
    client.create("a")
    client.create("a", idempotency_key="order-42")

    first, second, given = (request.headers["Idempotency-Key"] for request in client.requests)
    assert first != second
    assert given == "order-42"


def test_gives_up_when_the_time_to_retry_is_spent(clock):
    client = mock_client(
        [error_answer(503, ErrorCode.SERVICE_UNAVAILABLE, {"Retry-After": "4"})] * 10, retry_for=10
    )

    with pytest.raises(ServiceUnavailableError) as raised:
        client.heartbeat(EXECUTION_ID)

    assert raised.value.status_code == 503
    assert clock.sleeps == [4.0, 4.0]  # a third wait would end after 10 s
    assert len(client.requests) == 3
    assert "gave up after 3 tries" in str(raised.value)


def test_no_retry_at_all_with_retry_for_zero(clock):
    client = mock_client([httpx.ConnectError("Connection refused")], retry_for=0)

    with pytest.raises(ServiceUnavailableError) as raised:
        client.heartbeat(EXECUTION_ID)

    assert raised.value.status_code is None
    assert isinstance(raised.value.__cause__, httpx.ConnectError)
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "status, error_code, error_class",
    [
        (400, ErrorCode.INVALID_STATUS_TRANSITION, BadRequestError),
        (404, ErrorCode.EXECUTION_NOT_FOUND, NotFoundError),
        (409, ErrorCode.EXECUTION_NOT_RUNNING, ConflictError),
        (412, ErrorCode.PRECONDITION_FAILED, PreconditionFailedError),
        (422, ErrorCode.IDEMPOTENCY_KEY_REUSED, UnprocessableEntityError),
    ],
)
def test_client_errors_are_typed_and_never_retried(clock, status, error_code, error_class):
    client = mock_client([error_answer(status, error_code, current_status="cancelled")])

    with pytest.raises(error_class) as raised:
        client.update_status(EXECUTION_ID, "completed")

    assert raised.value.status_code == status
    assert raised.value.error_code == error_code
    assert raised.value.correlation_id == "corr-1"
    assert len(client.requests) == 1
    assert clock.sleeps == []


# --- executions-run's heartbeats (end to end: tests/system/test_executions_run.py) ----------------


class JobStub:
    def __init__(self):
        self.signals = []

    def stop(self, signum):
        self.signals.append(signum)


def test_heartbeats_go_on_through_an_outage_and_stop_the_job_on_409(capsys):
    beat = httpx.Response(
        200,
        json={"execution_id": EXECUTION_ID, "status": "running", "last_heartbeat_at": "2026-11-29T10:00:00Z"},
    )
    cancelled = error_answer(409, ErrorCode.EXECUTION_NOT_RUNNING, current_status="cancelled")
    refused = httpx.ConnectError("Connection refused")
    client = mock_client([beat, refused, refused, beat, beat, cancelled], retry_for=0)
    job = JobStub()

    heartbeats = Heartbeats(client, Execution.from_json(EXECUTION_BODY), job, interval=0.01)
    heartbeats._thread.join(timeout=30)
    heartbeats.finish()

    assert job.signals == [signal.SIGTERM]
    assert heartbeats.stopped_as == "cancelled"
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 3, notes  # one line per change of state, not one per missed heartbeat
    assert notes[0].startswith("executions-run: heartbeat failed (POST /api/v1/executions/")
    assert "the command keeps running" in notes[0]
    assert notes[1].startswith("executions-run: the service answers again after")
    assert notes[1].endswith("heartbeats resumed")
    assert notes[2] == f"executions-run: execution {EXECUTION_ID} is cancelled: stopping the command"


def test_the_stderr_tail_is_text_the_service_stores():
    # NUL is refused by the service (no database column takes it); invalid UTF-8 cannot be JSON.
    outcome = Outcome(returncode=-9, stderr_tail=b"half \xe2\x82 done\x00")

    assert outcome.error_info() == {
        "exit_code": None,
        "signal": "SIGKILL",
        "stderr_tail": "half \ufffd done\ufffd",
    }
    assert outcome.wrapper_exit_code == 137
    assert Outcome(returncode=-40, stderr_tail=b"").signal == "signal 40"


# --- configuration ----------------------------------------------------------------------


def test_url_and_token_from_the_environment(monkeypatch):
    monkeypatch.setenv("EXECUTIONS_URL", "http://127.0.0.1:8000/")
    monkeypatch.setenv("EXECUTIONS_TOKEN", "from-env")
    with ExecutionsClient() as client:
        assert client.url == "http://127.0.0.1:8000"
        assert client._http.headers["Authorization"] == "Token from-env"


@pytest.mark.parametrize("missing", ["EXECUTIONS_URL", "EXECUTIONS_TOKEN"])
def test_missing_configuration_is_named(monkeypatch, missing):
    monkeypatch.setenv("EXECUTIONS_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("EXECUTIONS_TOKEN", "from-env")
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigurationError, match=missing):
        ExecutionsClient()


def test_create_names_the_monitor_when_given_one(clock):
    client = mock_client([created()])

    client.create("nightly", monitor="nightly")

    assert json.loads(client.requests[0].content) == {"name": "nightly", "monitor": "nightly"}
