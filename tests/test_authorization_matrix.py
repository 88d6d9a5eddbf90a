"""Who may do what, as one table per surface: every role against every endpoint.

Roles: anonymous; the owner of the execution; another plain user; a user holding
`manage_all_executions` (not staff); staff without that permission (but with the admin's
view and change permissions on executions, so that the admin's own scoping is what is
tested); staff with it; a superuser. In the API also the owner with an expired token and
with a revoked one: refused like an unknown token.
Whatever a caller may not see is a 404 EXECUTION_NOT_FOUND exactly like an id that does not
exist: same status, same body but for correlation_id and timestamp, same SQL statements.
"""

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from executions.api.error_codes import ErrorCode
from executions.models import Execution, ExecutionStatus

from .api import patch_status
from .factories import ExecutionFactory, UserFactory, api_key_for

ROLES = ["anonymous", "owner", "other", "manager", "staff", "staff_manager", "superuser"]
# The owner's own token, past its expiry or revoked: the API only.
REFUSED_TOKENS = {
    "expired_token": lambda: {"expires_at": timezone.now() - timedelta(seconds=1)},
    "revoked_token": lambda: {"revoked_at": timezone.now()},
}
API_ROLES = [*ROLES, *REFUSED_TOKENS]
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
        if role in REFUSED_TOKENS:
            client = APIClient()
            key = api_key_for(users["owner"], **REFUSED_TOKENS[role]())
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
            return client
        return APIClient() if users[role] is None else client_for(users[role])

    return make


# --- The API -----------------------------------------------------------------------------
# Each endpoint: how to call it for one execution id, and what each role gets for the
# owner's running execution. Endpoints from other issues join this table as they land.


URL = "/api/v1/executions"


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
NOT_SIGNED_IN = {"anonymous", *REFUSED_TOKENS}


def unauthenticated_error_code(role) -> str:
    """No credentials at all, or a token that is refused (as an unknown one would be)."""
    return ErrorCode.NOT_AUTHENTICATED if role == "anonymous" else ErrorCode.AUTHENTICATION_FAILED


def expect(allowed, *, anonymous=401, hidden=404):
    """Owner, manager, staff_manager and superuser see the owner's execution; other and
    staff (without manage_all_executions) do not."""
    return {
        "anonymous": anonymous,
        "owner": allowed,
        "other": hidden,
        "manager": allowed,
        "staff": hidden,
        "staff_manager": allowed,
        "superuser": allowed,
        "expired_token": anonymous,
        "revoked_token": anonymous,
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
    pytest.param(endpoint, role, id=f"{endpoint}-{role}") for endpoint in API_ENDPOINTS for role in API_ROLES
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
        assert body["error_code"] == unauthenticated_error_code(role)
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


@pytest.mark.parametrize("role", API_ROLES)
def test_create_matrix_everyone_signed_in_creates_their_own(api_as, users, role):
    response = api_as(role).post(URL, {"name": "nightly"}, format="json")

    if role in NOT_SIGNED_IN:
        assert response.status_code == 401
        assert response.json()["error_code"] == unauthenticated_error_code(role)
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


@pytest.mark.parametrize("role", API_ROLES)
def test_list_matrix(api_as, three_executions, role):
    response = api_as(role).get(URL)
    if role in NOT_SIGNED_IN:
        assert response.status_code == 401
        assert response.json()["error_code"] == unauthenticated_error_code(role)
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


# --- The admin site ------------------------------------------------------------------------
# Only staff reach it at all; among staff, `view_execution`/`change_execution` open the pages
# and actions, and `manage_all_executions` (or superuser) widens them from one's own
# executions to everyone's, exactly as in the API.

CHANGELIST = "/admin/executions/execution/"
LOGIN_REDIRECT = "/admin/login/?next="
SEES_IN_ADMIN = {"staff_manager", "superuser"}
NO_ADMIN = ["anonymous", "owner", "other", "manager"]


@pytest.fixture
def admin_as(users):
    def make(role):
        client = Client()
        if users[role] is not None:
            client.force_login(users[role])
        return client

    return make


def run_action(client, action, execution, **extra):
    return client.post(
        CHANGELIST, {"action": action, "index": 0, ACTION_CHECKBOX_NAME: [str(execution.id)], **extra}
    )


ADMIN_ACTIONS = {
    "cancel_selected": ({}, ExecutionStatus.CANCELLED),
    "mark_completed": ({}, ExecutionStatus.COMPLETED),
    "mark_failed": ({"apply": "1", "reason": "operator says so"}, ExecutionStatus.FAILED),
}


@pytest.mark.parametrize("role", ROLES)
def test_admin_changelist_matrix(admin_as, owner, role):
    execution = ExecutionFactory(created_by=owner, name="owners-job")
    response = admin_as(role).get(CHANGELIST)

    if role in NO_ADMIN:
        assert response.status_code == 302
        assert response["Location"].startswith(LOGIN_REDIRECT)
        return
    assert response.status_code == 200
    assert (execution in response.context["cl"].result_list) == (role in SEES_IN_ADMIN)
    assert ("owners-job" in response.content.decode()) == (role in SEES_IN_ADMIN)


# The pages of one execution, and what on each only someone who may see it would read.
OBJECT_PAGES = {
    "change": ("change/", "secret-detail"),  # its error_info
    "history": ("history/", "owners-job"),  # leads to the change page, which names it
}


def get_page(client, url):
    """The admin page at `url`. An execution's history URL leads, unchecked, to its change page
    (executions/admin/executions.py), where the checks are: the page that answers is that one."""
    response = client.get(url)
    change_page = url.removesuffix("history/") + "change/"
    if url.endswith("/history/") and response.status_code == 302 and response["Location"] == change_page:
        return client.get(change_page)
    return response


@pytest.mark.parametrize("page", OBJECT_PAGES)
@pytest.mark.parametrize("role", ROLES)
def test_admin_object_pages_matrix(admin_as, owner, role, page):
    suffix, visible_text = OBJECT_PAGES[page]
    execution = ExecutionFactory(created_by=owner, name="owners-job", error_info={"reason": "secret-detail"})
    client = admin_as(role)
    response = get_page(client, f"{CHANGELIST}{execution.id}/{suffix}")

    if role in NO_ADMIN:
        assert response.status_code == 302
        assert response["Location"].startswith(LOGIN_REDIRECT)
    elif role in SEES_IN_ADMIN:
        assert response.status_code == 200
        assert visible_text in response.content.decode()
    else:
        # Exactly what a missing id gets: a redirect to the index and "doesn't exist".
        missing_id = uuid.uuid4()
        missing = get_page(admin_as(role), f"{CHANGELIST}{missing_id}/{suffix}")
        assert response.status_code == missing.status_code == 302
        assert response["Location"] == missing["Location"] == "/admin/"
        said = [str(m).replace(str(execution.id), "<id>") for m in get_messages(response.wsgi_request)]
        said_missing = [str(m).replace(str(missing_id), "<id>") for m in get_messages(missing.wsgi_request)]
        assert said == said_missing
        assert "doesn’t exist" in said[0]


@pytest.mark.parametrize("action", ADMIN_ACTIONS)
@pytest.mark.parametrize("role", ROLES)
def test_admin_action_matrix(admin_as, owner, role, action):
    extra, target = ADMIN_ACTIONS[action]
    execution = ExecutionFactory(created_by=owner)

    response = run_action(admin_as(role), action, execution, **extra)

    execution.refresh_from_db()
    if role in NO_ADMIN:
        assert response.status_code == 302
        assert response["Location"].startswith(LOGIN_REDIRECT)
    assert execution.status == (target if role in SEES_IN_ADMIN else ExecutionStatus.RUNNING)
    changes = list(execution.status_changes.all())
    if role in SEES_IN_ADMIN:
        assert [(c.channel, c.actor_username) for c in changes] == [("admin", role_username(role))]
    else:
        assert changes == []


def role_username(role):
    return {"superuser": "root"}.get(role, role)


def test_staff_without_execution_permissions_gets_no_admin_pages(owner):
    execution = ExecutionFactory(created_by=owner)
    client = Client()
    client.force_login(UserFactory(username="bare-staff", is_staff=True))

    assert client.get(CHANGELIST).status_code == 403
    assert client.get(f"{CHANGELIST}{execution.id}/change/").status_code == 403
    run_action(client, "cancel_selected", execution)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.RUNNING


def test_view_only_staff_sees_but_cannot_act(owner):
    execution = ExecutionFactory(created_by=owner)
    viewer = UserFactory(
        username="viewer", is_staff=True, permissions=["view_execution", "manage_all_executions"]
    )
    client = Client()
    client.force_login(viewer)

    assert execution in client.get(CHANGELIST).context["cl"].result_list
    run_action(client, "cancel_selected", execution)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.RUNNING


def test_admin_select_all_acts_only_on_what_the_staff_user_may_see(admin_as, users, owner):
    owners = ExecutionFactory(created_by=owner)
    staffs = ExecutionFactory(created_by=users["staff"])

    admin_as("staff").post(
        CHANGELIST,
        {
            "action": "cancel_selected",
            "index": 0,
            "select_across": "1",
            ACTION_CHECKBOX_NAME: [str(staffs.id)],
        },
    )

    owners.refresh_from_db()
    staffs.refresh_from_db()
    assert staffs.status == ExecutionStatus.CANCELLED
    assert owners.status == ExecutionStatus.RUNNING
