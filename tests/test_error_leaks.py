"""With DEBUG off, a failure tells the client only that it failed (and the correlation id);
the log has the whole story, under the same correlation id."""

import logging

import pytest
from django.conf import settings
from django.db import ProgrammingError
from django.test import Client

from executions.api import views
from executions.api.error_codes import ErrorCode
from executions.api.middleware import CorrelationIdLogFilter

from .api import ERROR_RESPONSE_KEYS
from .database_down import database_down  # noqa: F401
from .urls_errors import fail_with_secrets

# What an internal error's message or traceback holds and a response must not.
LEAKS = [
    "Traceback",
    "SELECT",
    "auth_user",
    settings.SECRET_KEY,
    str(settings.BASE_DIR),
    ".py",
    "RuntimeError",
]


@pytest.fixture
def log(caplog):
    """The log as the service writes it: every record with its correlation id."""
    caplog.handler.addFilter(CorrelationIdLogFilter())
    caplog.set_level(logging.INFO)
    return caplog


def assert_generic_internal_error(response):
    assert settings.DEBUG is False
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == ERROR_RESPONSE_KEYS
    assert body["detail"] == "Internal server error"
    assert body["error_code"] == ErrorCode.INTERNAL_ERROR
    assert body["correlation_id"] == response["X-Request-ID"]
    text = response.content.decode()
    for leak in LEAKS:
        assert leak not in text


def assert_logged_with_traceback(log, correlation_id):
    failures = [record for record in log.records if record.exc_info]
    assert failures, "the internal error was not logged"
    for record in failures:
        assert record.correlation_id == correlation_id
    assert "Traceback (most recent call last)" in log.text
    assert "auth_user" in log.text  # the message itself is there, for whoever reads the log


@pytest.mark.parametrize(
    "error",
    [RuntimeError, lambda message: ProgrammingError(f"relation does not exist\nLINE 1: {message}")],
    ids=["python-error", "sql-error"],
)
def test_an_internal_error_in_an_api_view_is_a_bare_500(owner_client, log, monkeypatch, error):
    def broken_service(**kwargs):
        raise error(f'SELECT "password" FROM "auth_user"; {settings.SECRET_KEY}; {settings.BASE_DIR}/x.py')

    monkeypatch.setattr(views, "execution_change_status", broken_service)
    response = owner_client.patch(
        "/api/v1/executions/5f0e4a52-95a4-4d9b-8f4a-9e4e9d1c2a11",
        {"status": "cancelled"},
        format="json",
        HTTP_X_REQUEST_ID="leak-test-1",
    )

    assert_generic_internal_error(response)
    assert response["X-Request-ID"] == "leak-test-1"
    assert_logged_with_traceback(log, "leak-test-1")


@pytest.mark.urls("tests.urls_errors")
def test_an_internal_error_outside_drf_under_api_is_a_bare_json_500(db, log):
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/plain-django-failure", HTTP_X_REQUEST_ID="leak-test-2")

    assert_generic_internal_error(response)
    assert_logged_with_traceback(log, "leak-test-2")


@pytest.mark.urls("tests.urls_errors")
def test_an_internal_error_outside_the_api_is_django_plain_500_page(db, log):
    response = Client(raise_request_exception=False).get("/plain-django-failure")

    assert response.status_code == 500
    text = response.content.decode()
    assert "Server Error (500)" in text
    for leak in LEAKS:
        assert leak not in text
    assert "Traceback (most recent call last)" in log.text


def test_a_request_for_a_host_not_allowed_does_not_echo_it(db):
    response = Client().get("/api/v1/executions/x", HTTP_HOST="attacker.example")
    assert response.status_code == 400
    assert response.json()["error_code"] == ErrorCode.BAD_REQUEST
    assert "attacker.example" not in response.content.decode()


def test_the_failing_view_really_fails():
    """The views above fail because of this, not because of a missing route."""
    with pytest.raises(RuntimeError, match="auth_user"):
        fail_with_secrets(None)


@pytest.mark.parametrize("url", ["/api/v1/executions", "/readyz"])
def test_database_unavailable_log_lines_carry_the_request_correlation_id(owner_client, log, request, url):
    # Django's own "Service Unavailable" line (django.request) is written after the request's
    # middleware has returned: it carried "-" instead of the request's id.
    request.getfixturevalue("database_down")
    owner_client.raise_request_exception = False

    response = owner_client.get(url, HTTP_X_REQUEST_ID="req-503")

    assert response.status_code == 503
    assert response.json()["correlation_id"] == "req-503"
    django_lines = [record for record in log.records if record.name == "django.request"]
    assert django_lines, "Django logged no line for the 503"
    assert {record.correlation_id for record in log.records} == {"req-503"}
