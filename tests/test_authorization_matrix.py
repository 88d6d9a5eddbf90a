"""Who may do what, as one table per surface: every role against every endpoint.

Roles: anonymous; the owner of the execution; another plain user; a user holding
`manage_all_executions` (not staff); staff without that permission; a superuser.
Whatever a caller may not see is a 404 EXECUTION_NOT_FOUND exactly like an id that does not
exist: same status, same body but for correlation_id and timestamp, same SQL statements.
"""

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from executions.errors import ErrorCode
from executions.models import ExecutionStatus

from .factories import ExecutionFactory, UserFactory

ROLES = ["anonymous", "owner", "other", "manager", "staff", "superuser"]
# The roles that may see and change the owner's execution through the API.
SEES_EVERYTHING = {"owner", "manager", "superuser"}


@pytest.fixture
def users(owner, other_user, manager, superuser):
    return {
        "anonymous": None,
        "owner": owner,
        "other": other_user,
        "manager": manager,
        "staff": UserFactory(username="staff", is_staff=True),
        "superuser": superuser,
    }


@pytest.fixture
def api_as(users, client_for):
    """A token-authenticated API client for a role (no credentials for anonymous)."""

    def make(role):
        return APIClient() if users[role] is None else client_for(users[role])

    return make


# --- The API -----------------------------------------------------------------------------
# Each endpoint: how to call it for one execution id, and what each role gets for the
# owner's running execution. Endpoints from other issues join this table as they land.


def patch_status(client, execution_id):
    return client.patch(f"/api/v1/executions/{execution_id}", {"status": "cancelled"}, format="json")


def patch_invalid_transition(client, execution_id):
    # The execution is already completed (see `target_status` below): a caller who may see it
    # is told the change is not allowed; a caller who may not must not learn even that.
    return client.patch(f"/api/v1/executions/{execution_id}", {"status": "failed"}, format="json")


API_ENDPOINTS = {
    # name: (call, status of the owner's execution, {role: expected HTTP status})
    "PATCH status": (
        patch_status,
        ExecutionStatus.RUNNING,
        {"anonymous": 401, "owner": 200, "other": 404, "manager": 200, "staff": 404, "superuser": 200},
    ),
    "PATCH invalid transition": (
        patch_invalid_transition,
        ExecutionStatus.COMPLETED,
        {"anonymous": 401, "owner": 400, "other": 404, "manager": 400, "staff": 404, "superuser": 400},
    ),
}

API_CASES = [
    pytest.param(endpoint, role, id=f"{endpoint}-{role}") for endpoint in API_ENDPOINTS for role in ROLES
]
HIDDEN_CASES = [
    pytest.param(endpoint, role, id=f"{endpoint}-{role}")
    for endpoint, (_, _, expected) in API_ENDPOINTS.items()
    for role in ROLES
    if expected[role] == 404
]


def volatile_fields_removed(body: dict) -> dict:
    return {key: value for key, value in body.items() if key not in {"correlation_id", "timestamp"}}


@pytest.mark.parametrize("endpoint,role", API_CASES)
def test_api_matrix(api_as, owner, endpoint, role):
    call, status, expected = API_ENDPOINTS[endpoint]
    execution = ExecutionFactory(created_by=owner, status=status)

    response = call(api_as(role), execution.id)

    assert response.status_code == expected[role], response.content
    body = response.json()
    if expected[role] == 401:
        assert body["error_code"] == ErrorCode.NOT_AUTHENTICATED
    if expected[role] == 404:
        assert body["error_code"] == ErrorCode.EXECUTION_NOT_FOUND
    execution.refresh_from_db()
    changed = expected[role] == 200
    assert (execution.status != status) == changed


@pytest.mark.parametrize("endpoint,role", HIDDEN_CASES)
def test_an_invisible_execution_looks_exactly_like_a_missing_one(api_as, owner, endpoint, role):
    call, status, _ = API_ENDPOINTS[endpoint]
    execution = ExecutionFactory(created_by=owner, status=status)
    client = api_as(role)

    with CaptureQueriesContext(connection) as invisible_queries:
        invisible = call(client, execution.id)
    with CaptureQueriesContext(connection) as missing_queries:
        missing = call(client, uuid.uuid4())

    assert invisible.status_code == missing.status_code == 404
    assert volatile_fields_removed(invisible.json()) == volatile_fields_removed(missing.json())
    assert set(invisible.json()) == set(missing.json())
    assert invisible.headers.keys() == missing.headers.keys()
    # Not a timing measurement, but its cause: both paths run the same statements.
    assert len(invisible_queries) == len(missing_queries)
    assert [shape(query["sql"]) for query in invisible_queries] == [
        shape(query["sql"]) for query in missing_queries
    ]


LITERAL_OR_SAVEPOINT = re.compile(r"'[^']*'|\"s\d+_x\d+\"")


def shape(sql: str) -> str:
    """A statement with its literals (ids, timestamps) and savepoint names blanked out."""
    return LITERAL_OR_SAVEPOINT.sub("?", sql)


def test_an_inactive_users_token_is_refused(owner, client_for, running_execution):
    client = client_for(owner)
    owner.is_active = False
    owner.save()
    response = patch_status(client, running_execution.id)
    assert response.status_code == 401
    assert response.json()["error_code"] == ErrorCode.AUTHENTICATION_FAILED
