"""PATCH /api/v1/executions/{execution_id}: the contract in tests/fixtures/contract/."""

import json
import re
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from executions.api.error_codes import ErrorCode
from executions.models import Execution, ExecutionStatus, ExecutionStatusChange
from executions.signals import execution_status_changed

from .api import ERROR_RESPONSE_KEYS, UNKNOWN_EXECUTION_ID
from .factories import ExecutionFactory, UserFactory, api_key_for

CONTRACT_README = Path(__file__).parent / "fixtures" / "contract" / "README.md"
API_TARGETS = ["cancelled", "failed", "completed"]
ALL_STATUSES = [choice.value for choice in ExecutionStatus]
UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMESTAMP_PATTERN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def url(execution_id) -> str:
    return f"/api/v1/executions/{execution_id}"


def patch_raw(client, execution_id, body: str | bytes, content_type="application/json", **headers):
    return client.generic("PATCH", url(execution_id), body, content_type=content_type, **headers)


def assert_error_response(response, status_code: int, error_code: str):
    assert response.status_code == status_code
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == ERROR_RESPONSE_KEYS
    assert body["error_code"] == error_code
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["correlation_id"] == response["X-Request-ID"]
    assert TIMESTAMP_PATTERN.fullmatch(body["timestamp"])
    return body


def contract_validation_examples():
    """The 422 examples table of the contract, as (body, expected detail) pairs."""
    rows = re.findall(r"^\| `(.*?)`(?: \(truncated\))? \| `(\[.*\])` \|$", CONTRACT_README.read_text(), re.M)
    assert len(rows) == 6, "the contract's 422 table was not found"
    return [pytest.param(body, json.loads(detail), id=body) for body, detail in rows]


# --- The status rules table -------------------------------------------------------------


@pytest.mark.parametrize("target", API_TARGETS)
def test_running_execution_moves_to_each_target(owner_client, running_execution, target):
    response = owner_client.patch(url(running_execution.id), {"status": target}, format="json")

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "execution_id": str(running_execution.id),
        "previous_status": "running",
        "current_status": target,
        "message": {
            "cancelled": "Execution cancelled",
            "failed": "Execution marked as failed",
            "completed": "Execution marked as completed",
        }[target],
    }
    running_execution.refresh_from_db()
    assert running_execution.status == target
    assert running_execution.finished_at is not None
    assert running_execution.updated_at == running_execution.finished_at


@pytest.mark.parametrize("current", [s for s in ALL_STATUSES if s != "running"])
@pytest.mark.parametrize("target", API_TARGETS)
def test_finished_execution_does_not_change(owner, owner_client, current, target):
    execution = ExecutionFactory(created_by=owner, status=current)

    response = owner_client.patch(url(execution.id), {"status": target}, format="json")

    if current == target:
        assert response.status_code == 200
        assert response.json() == {
            "success": False,
            "execution_id": str(execution.id),
            "previous_status": current,
            "current_status": current,
            "message": f"Execution is already {current}; nothing changed",
        }
    else:
        body = assert_error_response(response, 400, ErrorCode.INVALID_STATUS_TRANSITION)
        assert body["detail"] == f"Cannot change status from '{current}' to '{target}'"
    execution.refresh_from_db()
    assert execution.status == current
    assert execution.finished_at is None  # the factory left it unset; nothing wrote it
    assert not ExecutionStatusChange.objects.exists()


def test_error_info_is_stored_with_failed(owner_client, running_execution):
    error_info = {"reason": "worker lost", "details": {"host": "w-3", "codes": [1, 2.5, None, True]}}

    response = owner_client.patch(
        url(running_execution.id), {"status": "failed", "error_info": error_info}, format="json"
    )

    assert response.status_code == 200
    running_execution.refresh_from_db()
    assert running_execution.error_info == error_info
    assert ExecutionStatusChange.objects.get().error_info == error_info


def test_null_error_info_is_accepted_with_any_target(owner_client, running_execution):
    response = owner_client.patch(
        url(running_execution.id), {"status": "cancelled", "error_info": None}, format="json"
    )
    assert response.status_code == 200
    running_execution.refresh_from_db()
    assert running_execution.error_info is None


@pytest.mark.parametrize("target", ["cancelled", "completed"])
def test_error_info_is_refused_with_cancelled_and_completed(owner_client, running_execution, target):
    response = owner_client.patch(
        url(running_execution.id), {"status": target, "error_info": {"a": 1}}, format="json"
    )

    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "error_info_not_allowed",
                "loc": ["body", "error_info"],
                "msg": f"error_info is only accepted with status 'failed', not '{target}'",
                "input": {"a": 1},
                "ctx": {"status": target},
            }
        ]
    }
    running_execution.refresh_from_db()
    assert running_execution.status == "running"


# --- Validation: the contract's examples and more ----------------------------------------


@pytest.mark.parametrize(("body", "expected_detail"), contract_validation_examples())
def test_contract_validation_examples(owner_client, running_execution, body, expected_detail):
    response = patch_raw(owner_client, running_execution.id, body)

    assert response.status_code == 422
    assert response.json() == {"detail": expected_detail}
    running_execution.refresh_from_db()
    assert running_execution.status == "running"


def test_every_problem_is_reported_at_once(owner_client, running_execution):
    response = patch_raw(
        owner_client, running_execution.id, '{"status": 5, "error_info": "x", "extra": true}'
    )

    assert response.status_code == 422
    assert [(item["type"], item["loc"]) for item in response.json()["detail"]] == [
        ("literal_error", ["body", "status"]),
        ("dict_type", ["body", "error_info"]),
        ("extra_forbidden", ["body", "extra"]),
    ]


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ("", "missing"),
        ("null", "missing"),
        ('"cancelled"', "model_attributes_type"),
        ('{"status": null}', "literal_error"),
        ('{"status": "CANCELLED"}', "literal_error"),
        ('{"status": ["cancelled"]}', "literal_error"),
        ('{"status": "failed", "error_info": {"a": "nul \\u0000 byte"}}', "string_unstorable"),
        ('{"status": "failed", "error_info": {"a": "\\ud800"}}', "string_unstorable"),
        ('{"status": "failed", "error_info": {"\\u0000": 1}}', "string_unstorable"),
        ('{"status": "failed", "error_info": {"a": NaN}}', "json_invalid"),
        ('{"status": "failed", "error_info": {"a": -Infinity}}', "json_invalid"),
        ('{"status": "failed", "error_info": {"a": 1e400}}', "json_invalid"),
        ('{"status": "failed", "error_info": {"a": ' + "9" * 5000 + "}}", "json_invalid"),
        ('{"status": "failed", "error_info": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}", "json_too_deep"),
        ('{"status": "failed", "error_info": ' + "[" * 100_000 + "]" * 100_000 + "}", "json_too_deep"),
        (b'{"status": "cancelled\xff"}', "json_invalid"),
    ],
    ids=lambda value: repr(value)[:40] if isinstance(value, (str, bytes)) else None,
)
def test_malformed_bodies_get_422_and_change_nothing(owner_client, running_execution, body, error_type):
    response = patch_raw(owner_client, running_execution.id, body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["type"] == error_type
    assert detail[0]["loc"][0] == "body"
    running_execution.refresh_from_db()
    assert running_execution.status == "running"
    assert running_execution.error_info is None
    assert not ExecutionStatusChange.objects.exists()


def test_body_over_the_size_limit_is_413(owner_client, running_execution, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"status": "failed", "error_info": {"blob": "x" * 2000}})

    response = patch_raw(owner_client, running_execution.id, body)

    assert_error_response(response, 413, ErrorCode.PAYLOAD_TOO_LARGE)
    running_execution.refresh_from_db()
    assert running_execution.status == "running"


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "application/xml"]
)
def test_wrong_content_type_is_415(owner_client, running_execution, content_type):
    response = patch_raw(owner_client, running_execution.id, '{"status": "cancelled"}', content_type)

    assert_error_response(response, 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    running_execution.refresh_from_db()
    assert running_execution.status == "running"


def test_json_with_charset_is_accepted(owner_client, running_execution):
    response = patch_raw(
        owner_client, running_execution.id, '{"status": "cancelled"}', "application/json; charset=utf-8"
    )
    assert response.status_code == 200


# --- Not found --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "execution_id",
    [uuid.UUID(UNKNOWN_EXECUTION_ID), "not-a-uuid", "1", "%00", "x" * 5000, "\u00e9t\u00e9", "' OR 1=1 --"],
)
def test_unknown_or_malformed_id_is_404(owner_client, execution_id):
    response = owner_client.patch(url(execution_id), {"status": "cancelled"}, format="json")

    body = assert_error_response(response, 404, ErrorCode.EXECUTION_NOT_FOUND)
    assert body["detail"] == "Execution not found"


def test_body_is_validated_before_the_execution_is_looked_up(owner_client):
    response = owner_client.patch(url(uuid.uuid4()), {"status": "running"}, format="json")
    assert response.status_code == 422


# --- The audit record --------------------------------------------------------------------


def test_success_writes_one_audit_record(owner, owner_client, running_execution):
    response = owner_client.patch(
        url(running_execution.id),
        {"status": "failed", "error_info": {"reason": "oom"}},
        format="json",
        HTTP_X_REQUEST_ID="req-42",
    )

    assert response.status_code == 200
    record = ExecutionStatusChange.objects.get()
    assert record.execution_id == running_execution.id
    assert (record.previous_status, record.new_status) == ("running", "failed")
    assert record.error_info == {"reason": "oom"}
    assert record.actor == owner
    assert record.actor_username == "owner"
    assert record.channel == "api"
    assert record.correlation_id == "req-42"
    running_execution.refresh_from_db()
    assert record.created_at == running_execution.finished_at


def test_no_audit_record_for_no_op_or_errors(owner, owner_client):
    cancelled = ExecutionFactory(created_by=owner, status="cancelled")
    owner_client.patch(url(cancelled.id), {"status": "cancelled"}, format="json")  # success: false
    owner_client.patch(url(cancelled.id), {"status": "failed"}, format="json")  # 400
    owner_client.patch(url(uuid.uuid4()), {"status": "failed"}, format="json")  # 404
    owner_client.patch(url(cancelled.id), {"status": "nope"}, format="json")  # 422

    assert not ExecutionStatusChange.objects.exists()


def test_signal_is_sent_after_commit_for_changes_only(
    owner, owner_client, running_execution, django_capture_on_commit_callbacks
):
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    execution_status_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            owner_client.patch(url(running_execution.id), {"status": "cancelled"}, format="json")
            owner_client.patch(url(running_execution.id), {"status": "cancelled"}, format="json")
    finally:
        execution_status_changed.disconnect(receiver)

    assert len(received) == 1
    assert received[0]["execution_id"] == running_execution.id
    assert (received[0]["previous_status"], received[0]["new_status"]) == ("running", "cancelled")
    assert received[0]["actor"] == owner
    assert received[0]["channel"] == "api"


# --- Authentication and visibility --------------------------------------------------------


def test_anonymous_request_is_401(running_execution):
    response = APIClient().patch(url(running_execution.id), {"status": "cancelled"}, format="json")

    assert_error_response(response, 401, ErrorCode.NOT_AUTHENTICATED)
    assert response["WWW-Authenticate"] == "Token"
    running_execution.refresh_from_db()
    assert running_execution.status == "running"


def test_wrong_token_is_401(running_execution):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)

    response = client.patch(url(running_execution.id), {"status": "cancelled"}, format="json")

    body = assert_error_response(response, 401, ErrorCode.AUTHENTICATION_FAILED)
    assert "0" * 40 not in json.dumps(body)


def test_inactive_user_is_401(owner, owner_client, running_execution):
    owner.is_active = False
    owner.save()

    response = owner_client.patch(url(running_execution.id), {"status": "cancelled"}, format="json")

    assert response.status_code == 401


def test_another_users_execution_is_404_like_a_missing_one(client_for, other_user, running_execution):
    client = client_for(other_user)

    hidden = client.patch(url(running_execution.id), {"status": "cancelled"}, format="json")
    missing = client.patch(url(uuid.uuid4()), {"status": "cancelled"}, format="json")

    assert_error_response(hidden, 404, ErrorCode.EXECUTION_NOT_FOUND)
    assert hidden.json()["detail"] == missing.json()["detail"]
    running_execution.refresh_from_db()
    assert running_execution.status == "running"


def test_system_execution_is_invisible_to_plain_users(owner_client):
    system_execution = ExecutionFactory(created_by=None)
    response = owner_client.patch(url(system_execution.id), {"status": "cancelled"}, format="json")
    assert response.status_code == 404


@pytest.mark.parametrize("who", ["manager", "superuser", "group_manager"])
def test_managers_act_on_every_execution(client_for, running_execution, who, manager, superuser):
    if who == "group_manager":
        group = Group.objects.create(name="operators")
        group.permissions.add(Permission.objects.get(codename="manage_all_executions"))
        user = UserFactory(username="via-group")
        user.groups.add(group)
    else:
        user = {"manager": manager, "superuser": superuser}[who]

    response = client_for(user).patch(url(running_execution.id), {"status": "cancelled"}, format="json")

    assert response.status_code == 200
    assert ExecutionStatusChange.objects.get().actor == user


def test_session_authentication_works(owner, running_execution):
    client = APIClient()
    client.force_login(owner)

    response = client.patch(url(running_execution.id), {"status": "cancelled"}, format="json")

    assert response.status_code == 200


# --- Cost ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_success_path_takes_at_most_three_sql_statements():
    owner = UserFactory(username="counted")
    execution = ExecutionFactory(created_by=owner)
    client = APIClient()
    # A token used less than a minute ago: its last use is not recorded again (at most once a
    # minute, one more statement then: tests/test_tokens.py).
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(owner, used_just_now=True)}")

    with CaptureQueriesContext(connection) as queries:
        response = client.patch(url(execution.id), {"status": "cancelled"}, format="json")

    assert response.status_code == 200
    # Transaction control (SQLite's explicit BEGIN) is not a statement about data.
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT"))]
    assert len(statements) <= 3, statements
    assert Execution.objects.get().status == "cancelled"


# --- Correlation ids and the error contract outside the view ------------------------------


def test_request_id_is_echoed_and_logged(owner_client, running_execution, caplog):
    caplog.set_level("INFO", logger="executions.request")

    response = owner_client.patch(
        url(uuid.uuid4()), {"status": "cancelled"}, format="json", HTTP_X_REQUEST_ID="abc-123"
    )

    assert response["X-Request-ID"] == "abc-123"
    assert response.json()["correlation_id"] == "abc-123"
    [record] = [r for r in caplog.records if r.name == "executions.request"]
    assert record.correlation_id == "abc-123"
    assert "PATCH" in record.getMessage() and "404" in record.getMessage()


@pytest.mark.parametrize("sent", [None, "", "x" * 200, "evil\nInjected log line", "a b"])
def test_missing_or_unfit_request_id_is_replaced_by_a_new_one(owner_client, sent):
    headers = {} if sent is None else {"HTTP_X_REQUEST_ID": sent}

    response = owner_client.patch(url(uuid.uuid4()), {"status": "cancelled"}, format="json", **headers)

    assert UUID_PATTERN.fullmatch(response["X-Request-ID"])
    assert response.json()["correlation_id"] == response["X-Request-ID"]


@pytest.mark.parametrize("debug", [False, True])
def test_unknown_api_url_is_json_404(owner_client, settings, debug):
    settings.DEBUG = debug
    response = owner_client.get("/api/v1/nothing-here")
    assert_error_response(response, 404, ErrorCode.NOT_FOUND)


def test_wrong_method_is_json_405(owner_client, running_execution):
    response = owner_client.put(url(running_execution.id), {"status": "cancelled"}, format="json")
    assert_error_response(response, 405, ErrorCode.METHOD_NOT_ALLOWED)


def test_unexpected_error_is_json_500_and_logged(owner_client, running_execution, monkeypatch, caplog):
    def explode(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("executions.api.views.execution_change_status", explode)

    response = owner_client.patch(url(running_execution.id), {"status": "cancelled"}, format="json")

    body = assert_error_response(response, 500, ErrorCode.INTERNAL_ERROR)
    assert "secret internals" not in json.dumps(body)
    assert any("secret internals" in r.exc_text for r in caplog.records if r.exc_text)


def test_database_outage_is_json_503(owner_client, running_execution, monkeypatch):
    from django.db import OperationalError

    def database_gone(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("executions.api.views.execution_change_status", database_gone)

    response = owner_client.patch(url(running_execution.id), {"status": "cancelled"}, format="json")

    assert_error_response(response, 503, ErrorCode.SERVICE_UNAVAILABLE)
    assert response["Retry-After"] == "5"
