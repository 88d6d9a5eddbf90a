"""Who may do what, as one table per surface: every role against every endpoint.

Roles: anonymous; the owner of the execution; another plain user; a user holding
`manage_all_executions` (not staff); staff without that permission (but with the admin's
view and change permissions on executions, so that the admin's own scoping is what is
tested); staff with it; a superuser.
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
from executions.models import Execution, ExecutionStatus

from .factories import ExecutionFactory, UserFactory

ROLES = ["anonymous", "owner", "other", "manager", "staff", "staff_manager", "superuser"]
ADMIN_PERMISSIONS = ["view_execution", "change_execution"]


@pytest.fixture
def users(owner, other_user, manager, superuser):
    return {
        "anonymous": None,
        "owner": owner,
        "other": other_user,
        "manager": manager,
        "staff": UserFactory(username="staff", is_staff=True, permissions=ADMIN_PERMISSIONS),
        "staff_manager": UserFactory(
            username="staff_manager", is_staff=True, permissions=[*ADMIN_PERMISSIONS, "manage_all_executions"]
        ),
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


URL = "/api/v1/executions"


def patch_status(client, execution_id):
    return client.patch(f"{URL}/{execution_id}", {"status": "cancelled"}, format="json")


def patch_invalid_transition(client, execution_id):
    # The execution is already completed: a caller who may see it is told the change is not
    # allowed; a caller who may not must not learn even that.
    return client.patch(f"{URL}/{execution_id}", {"status": "failed"}, format="json")


def patch_with_stale_etag(client, execution_id):
    # A version the execution no longer has: 412 for whoever may see it, 404 for the others.
    return client.patch(f"{URL}/{execution_id}", {"status": "cancelled"}, format="json", HTTP_IF_MATCH='"1"')


def get_one(client, execution_id):
    return client.get(f"{URL}/{execution_id}")


def heartbeat(client, execution_id):
    return client.post(f"{URL}/{execution_id}/heartbeat")


def history(client, execution_id):
    return client.get(f"{URL}/{execution_id}/history")


RUNNING, COMPLETED = ExecutionStatus.RUNNING, ExecutionStatus.COMPLETED


def expect(allowed, *, anonymous=401, hidden=404):
    """Owner, manager, staff_manager and superuser see the owner's execution; other and
    staff (without manage_all_executions) do not."""
    return {
        "anonymous": anonymous, "owner": allowed, "other": hidden, "manager": allowed,
        "staff": hidden, "staff_manager": allowed, "superuser": allowed,
    }


API_ENDPOINTS = {
    # name: (call, status of the owner's execution, {role: expected HTTP status}, changes it?)
    "GET one": (get_one, RUNNING, expect(200), False),
    "GET history": (history, COMPLETED, expect(200), False),
    "PATCH status": (patch_status, RUNNING, expect(200), True),
    "PATCH invalid transition": (patch_invalid_transition, COMPLETED, expect(400), False),
    "PATCH stale If-Match": (patch_with_stale_etag, RUNNING, expect(412), False),
    "POST heartbeat": (heartbeat, RUNNING, expect(200), True),
    "POST heartbeat, not running": (heartbeat, COMPLETED, expect(409), False),
}

API_CASES = [
    pytest.param(endpoint, role, id=f"{endpoint}-{role}") for endpoint in API_ENDPOINTS for role in ROLES
]
HIDDEN_CASES = [
    pytest.param(endpoint, role, id=f"{endpoint}-{role}")
    for endpoint, (_, _, expected, _) in API_ENDPOINTS.items()
    for role in ROLES
    if expected[role] == 404
]


def volatile_fields_removed(body: dict) -> dict:
    return {key: value for key, value in body.items() if key not in {"correlation_id", "timestamp"}}


def snapshot(execution):
    execution.refresh_from_db()
    changes = execution.status_changes.count()
    return execution.status, execution.updated_at, execution.last_heartbeat_at, changes


@pytest.mark.parametrize("endpoint,role", API_CASES)
def test_api_matrix(api_as, owner, endpoint, role):
    call, status, expected, writes = API_ENDPOINTS[endpoint]
    execution = ExecutionFactory(created_by=owner, status=status)
    before = snapshot(execution)

    response = call(api_as(role), execution.id)

    assert response.status_code == expected[role], response.content
    body = response.json()
    if expected[role] == 401:
        assert body["error_code"] == ErrorCode.NOT_AUTHENTICATED
    if expected[role] == 404:
        assert body["error_code"] == ErrorCode.EXECUTION_NOT_FOUND
    if expected[role] == 200 and "id" in body:
        assert body["id"] == str(execution.id)
    # Only a successful write writes.
    assert (snapshot(execution) != before) == (writes and expected[role] == 200)


@pytest.mark.parametrize("endpoint,role", HIDDEN_CASES)
def test_an_invisible_execution_looks_exactly_like_a_missing_one(api_as, owner, endpoint, role):
    call, status, _, _ = API_ENDPOINTS[endpoint]
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


# --- Create and list -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_create_matrix_everyone_signed_in_creates_their_own(api_as, users, role):
    response = api_as(role).post(URL, {"name": "nightly"}, format="json")

    if role == "anonymous":
        assert response.status_code == 401
        assert not Execution.objects.exists()
        return
    assert response.status_code == 201, response.content
    created = Execution.objects.get(pk=response.json()["id"])
    assert created.created_by == users[role]


# What each role lists of: the owner's execution, another user's, and a system one (no owner).
LISTED = {
    "owner": {"owners"},
    "other": {"others"},
    "manager": {"owners", "others", "system"},
    "staff": set(),
    "staff_manager": {"owners", "others", "system"},
    "superuser": {"owners", "others", "system"},
}


@pytest.fixture
def three_executions(owner, other_user):
    return {
        "owners": ExecutionFactory(created_by=owner, name="owners-job"),
        "others": ExecutionFactory(created_by=other_user, name="others-job"),
        "system": ExecutionFactory(created_by=None, name="system-job"),
    }


def listed(response, executions) -> set[str]:
    assert response.status_code == 200, response.content
    names = {str(execution.id): key for key, execution in executions.items()}
    return {names[item["id"]] for item in response.json()["results"]}


@pytest.mark.parametrize("role", ROLES)
def test_list_matrix(api_as, three_executions, role):
    response = api_as(role).get(URL)
    if role == "anonymous":
        assert response.status_code == 401
        return
    assert listed(response, three_executions) == LISTED[role]


@pytest.mark.parametrize(
    "query",
    [{"name": "owners-job"}, {"name_contains": "owners"}, {"status": "running"}, {"stale": "false"}],
    ids=lambda query: "&".join(f"{k}={v}" for k, v in query.items()),
)
@pytest.mark.parametrize("role", ["other", "staff"])
def test_filters_never_reach_invisible_executions(api_as, three_executions, role, query):
    client = api_as(role)
    response = client.get(URL, query)
    assert "owners" not in listed(response, three_executions)

    # Filtering for the invisible execution answers like filtering for nothing at all, with
    # the same statements.
    nothing = {key: "no-such-job" if key.startswith("name") else value for key, value in query.items()}
    with CaptureQueriesContext(connection) as invisible_queries:
        for_invisible = client.get(URL, {**query, "name": "owners-job"})
    with CaptureQueriesContext(connection) as nothing_queries:
        for_nothing = client.get(URL, {**nothing, "name": "no-such-job"})
    assert for_invisible.json() == for_nothing.json() == {"results": [], "next_cursor": None, "next": None}
    assert [shape(q["sql"]) for q in invisible_queries] == [shape(q["sql"]) for q in nothing_queries]

