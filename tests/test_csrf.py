"""A browser's session may write only with a CSRF token; a worker's API token needs none
(a cross-site page cannot make a browser send an Authorization header)."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from rest_framework.test import APIClient

from executions.api.error_codes import ErrorCode
from executions.models import Execution

from .api import assert_unchanged, patch_status
from .factories import api_key_for

CSRF_SECRET = "a" * 16 + "B" * 16  # the form of Django's cookie secret: 32 letters and digits


@pytest.fixture
def session_client(owner):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(owner)
    return client


def test_session_write_without_csrf_token_is_refused(session_client, running_execution):
    response = patch_status(session_client, running_execution)

    assert response.status_code == 403
    body = response.json()
    assert body["error_code"] == ErrorCode.PERMISSION_DENIED
    assert body["detail"].startswith("CSRF Failed")
    assert_unchanged(running_execution)


def test_session_write_with_a_wrong_csrf_token_is_refused(session_client, running_execution):
    session_client.cookies["csrftoken"] = CSRF_SECRET
    response = patch_status(session_client, running_execution, HTTP_X_CSRFTOKEN="c" * 32)

    assert response.status_code == 403
    assert response.json()["error_code"] == ErrorCode.PERMISSION_DENIED
    assert_unchanged(running_execution)


def test_session_write_with_the_csrf_token_succeeds(session_client, running_execution):
    session_client.cookies["csrftoken"] = CSRF_SECRET
    response = patch_status(session_client, running_execution, HTTP_X_CSRFTOKEN=CSRF_SECRET)

    assert response.status_code == 200
    assert response.json()["current_status"] == "cancelled"


def test_token_write_needs_no_csrf_token(owner, running_execution):
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(owner)}")

    response = patch_status(client, running_execution)

    assert response.status_code == 200
    assert response.json()["current_status"] == "cancelled"


def test_session_create_and_heartbeat_need_the_csrf_token_too(session_client, running_execution):
    assert session_client.post("/api/v1/executions", {"name": "x"}, format="json").status_code == 403
    assert session_client.post(f"/api/v1/executions/{running_execution.id}/heartbeat").status_code == 403
    assert Execution.objects.count() == 1
    running_execution.refresh_from_db()
    assert running_execution.last_heartbeat_at is None

    session_client.cookies["csrftoken"] = CSRF_SECRET
    created = session_client.post(
        "/api/v1/executions", {"name": "x"}, format="json", HTTP_X_CSRFTOKEN=CSRF_SECRET
    )
    assert created.status_code == 201


def test_session_reads_need_no_csrf_token(session_client, running_execution):
    assert session_client.get(f"/api/v1/executions/{running_execution.id}").status_code == 200
    assert session_client.get("/api/v1/executions").status_code == 200


def test_admin_actions_need_the_csrf_token(superuser, running_execution):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    response = client.post(
        "/admin/executions/execution/",
        {"action": "cancel_selected", "index": 0, ACTION_CHECKBOX_NAME: [str(running_execution.id)]},
    )
    assert response.status_code == 403
    assert_unchanged(running_execution)


UNKNOWN_API_URLS = ["/api/v1/nope", "/api/v1/executions/{id}/", "/api/nothing/here/"]


@pytest.mark.parametrize("method", ["post", "patch", "put", "delete"])
@pytest.mark.parametrize("url", UNKNOWN_API_URLS)
@pytest.mark.parametrize("credentials", ["session", "token", "session with csrf cookie", "none"])
def test_unsafe_method_on_an_unknown_api_url_is_a_json_404_with_csrf_enforced(
    owner, running_execution, method, url, credentials
):
    # Django's test client skips CSRF checks unless told otherwise: enforce them, as browsers
    # and real clients meet them.
    client = APIClient(enforce_csrf_checks=True)
    if credentials.startswith("session"):
        client.force_login(owner)
    if credentials == "session with csrf cookie":
        client.cookies["csrftoken"] = CSRF_SECRET
    if credentials == "token":
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(owner)}")

    url = url.format(id=running_execution.id)
    response = getattr(client, method)(url, {"status": "cancelled"}, format="json")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error_code"] == ErrorCode.NOT_FOUND
    assert_unchanged(running_execution)
