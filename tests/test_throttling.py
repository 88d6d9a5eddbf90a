"""Throttling: per-user and per-address rates from the settings, answered with a 429
ErrorResponse and Retry-After; the admin's login page locks a client out after failures."""

import logging

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from executions.api.error_codes import ErrorCode

from .api import ERROR_RESPONSE_KEYS, patch_status
from .factories import api_key_for


def rates(user, anon):
    return override_settings(
        REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": user, "anon": anon}}
    )


@pytest.fixture(autouse=True)
def empty_throttle_cache():
    cache.clear()
    yield
    cache.clear()


def assert_throttled(response):
    assert response.status_code == 429
    body = response.json()
    assert body["error_code"] == ErrorCode.THROTTLED
    assert body["correlation_id"] == response["X-Request-ID"]
    assert set(body) == ERROR_RESPONSE_KEYS
    assert 0 < int(response["Retry-After"]) <= 60


@rates(user="2/min", anon=None)
def test_a_user_over_the_rate_gets_429_and_others_are_not_affected(owner_client, other_user, client_for):
    assert patch_status(owner_client, "missing").status_code == 404
    assert patch_status(owner_client, "missing").status_code == 404
    assert_throttled(patch_status(owner_client, "missing"))

    assert patch_status(client_for(other_user), "missing").status_code == 404


@rates(user="1/min", anon=None)
def test_a_throttled_request_changes_nothing(owner_client, running_execution):
    patch_status(owner_client, "missing")
    assert_throttled(patch_status(owner_client, running_execution.id))
    running_execution.refresh_from_db()
    assert running_execution.status == "running"


@rates(user=None, anon="2/min")
@pytest.mark.parametrize("credentials", [{}, {"HTTP_AUTHORIZATION": "Token not-a-real-token"}])
def test_refused_authentication_counts_against_the_anonymous_rate(db, credentials):
    client = APIClient()
    assert patch_status(client, "missing", **credentials).status_code == 401
    assert patch_status(client, "missing", **credentials).status_code == 401
    assert_throttled(patch_status(client, "missing", **credentials))


@rates(user=None, anon="2/min")
@pytest.mark.parametrize("refused", [{"revoked_at": timezone.now()}, {"expires_at": timezone.now()}])
def test_a_revoked_or_expired_token_counts_against_the_anonymous_rate(owner, refused):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(owner, **refused)}")
    assert patch_status(client, "missing").status_code == 401
    assert patch_status(client, "missing").status_code == 401
    assert_throttled(patch_status(client, "missing"))


@rates(user=None, anon="2/min")
def test_a_client_cannot_escape_the_anonymous_rate_with_a_forged_forwarded_for(db):
    client = APIClient()
    for forged in ["10.0.0.1", "10.0.0.2"]:
        assert patch_status(client, "missing", HTTP_X_FORWARDED_FOR=forged).status_code == 401
    assert_throttled(patch_status(client, "missing", HTTP_X_FORWARDED_FOR="10.0.0.3"))
    # Another address is still served.
    assert patch_status(client, "missing", REMOTE_ADDR="192.0.2.7").status_code == 401


@rates(user="1/min", anon="1/min")
def test_the_anonymous_rate_does_not_hold_back_authenticated_users(owner_client):
    assert patch_status(APIClient(), "missing").status_code == 401
    assert patch_status(owner_client, "missing").status_code == 404


# --- The admin's login page ------------------------------------------------------------


def admin_login(client, username, password, address="198.51.100.1"):
    return client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}, REMOTE_ADDR=address
    )


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3)
def test_admin_login_locks_a_client_out_after_repeated_failures(client, superuser):
    for _ in range(2):
        response = admin_login(client, "root", "wrong")
        assert response.status_code == 200
        assert "Please enter the correct username and password" in response.content.decode()
    assert admin_login(client, "root", "wrong").status_code == 429

    # Locked out: even the right password is refused now.
    locked = admin_login(client, "root", "correct horse battery staple")
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=2)
def test_admin_lockout_holds_one_username_at_one_address_only(client, superuser):
    for _ in range(2):
        admin_login(client, "root", "wrong")
    assert admin_login(client, "root", "correct horse battery staple").status_code == 429

    elsewhere = admin_login(client, "root", "correct horse battery staple", address="203.0.113.9")
    assert elsewhere.status_code == 302
    assert elsewhere["Location"] == "/admin/"


@override_settings(
    AXES_ENABLED=True, AXES_FAILURE_LIMIT=2, REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
)
def test_behind_a_proxy_the_lockout_holds_the_forwarded_address_only(client, superuser):
    """Behind the production setup's nginx every request comes from 127.0.0.1; the client is
    the address nginx appends to X-Forwarded-For, and only that client is locked out."""

    def login_from(address, password):
        return client.post(
            "/admin/login/?next=/admin/",
            {"username": "root", "password": password},
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR=f"10.9.9.9, {address}",
        )

    for _ in range(2):
        login_from("198.51.100.7", "wrong")
    assert login_from("198.51.100.7", "correct horse battery staple").status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.7"}

    elsewhere = login_from("203.0.113.9", "correct horse battery staple")
    assert elsewhere.status_code == 302
    assert elsewhere["Location"] == "/admin/"


@rates(user="1/min", anon="1/min")
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_probes_are_never_throttled(client, db, path):
    for _ in range(3):
        assert client.get(path).status_code == 200


@rates(user=None, anon="1/min")
def test_the_public_schema_is_throttled_per_address(client, db):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/schema/").status_code == 429


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=2)
def test_failed_admin_logins_are_logged_without_the_password(client, superuser, caplog):
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        admin_login(client, "root", "guess-Tr0ub4dor&3")

    # The attempts are on record (in the database, shown in the admin)...
    attempt = AccessAttempt.objects.get(username="root")
    assert attempt.failures_since_start == 3
    assert "AXES: New login failure" in caplog.text
    # ...but not what was tried.
    assert "Tr0ub4dor" not in caplog.text
    assert "Tr0ub4dor" not in f"{attempt.get_data} {attempt.post_data}"
