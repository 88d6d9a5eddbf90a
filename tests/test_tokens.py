"""API tokens: rotated by a command, and never written to a log or an error body."""

import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from executions.api import views


def rotate(username) -> str:
    out = StringIO()
    call_command("rotate_token", username, stdout=out)
    return out.getvalue()


def patch_missing(client):
    return client.patch("/api/v1/executions/missing", {"status": "cancelled"}, format="json")


def token_client(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_rotate_token_prints_only_the_new_key_and_the_old_one_stops_working(owner, client_for):
    old_client = client_for(owner)
    old_key = Token.objects.get(user=owner).key

    output = rotate("owner")

    new_key = Token.objects.get(user=owner).key
    assert output == f"{new_key}\n"
    assert new_key != old_key
    assert patch_missing(old_client).status_code == 401
    assert patch_missing(token_client(new_key)).status_code == 404


def test_rotate_token_creates_a_token_for_a_user_without_one(other_user):
    key = rotate("other").strip()
    assert Token.objects.get(user=other_user).key == key


def test_rotate_token_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        rotate("nobody")
    assert not Token.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("username, message", [("\udced\udca0\udc80", "not valid UTF-8 text"), ("a\x00", "may not contain NUL")])
def test_rotate_token_refuses_a_username_no_database_can_take(username, message):
    # A command line that is not UTF-8 arrives surrogate-escaped: it was a UnicodeEncodeError.
    with pytest.raises(CommandError, match=message):
        rotate(username)
    assert not Token.objects.exists()


@pytest.fixture
def every_log_record(caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("django.request", "django.server", "executions.api", "executions.request"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_not_logged(caplog, secret):
    assert caplog.records, "the request was expected to be logged"
    assert secret not in caplog.text
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in str(record.__dict__)


def test_a_valid_token_is_not_logged(owner, client_for, every_log_record):
    key = Token.objects.create(user=owner).key
    response = patch_missing(token_client(key))
    assert response.status_code == 404
    assert key not in response.content.decode()
    assert_not_logged(every_log_record, key)


@pytest.mark.parametrize("header", ["Token {key}", "Token {key} extra", "Bearer {key}", "Token"])
def test_a_refused_token_is_in_neither_the_body_nor_the_log(db, every_log_record, header):
    key = "f" * 39 + "e"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header.format(key=key))
    response = patch_missing(client)
    assert response.status_code == 401
    assert response.json()["error_code"] in {"AUTHENTICATION_FAILED", "NOT_AUTHENTICATED"}
    assert key not in response.content.decode()
    assert "Authorization" not in response.content.decode()
    if "{key}" in header:
        assert_not_logged(every_log_record, key)


def test_a_token_is_not_logged_with_an_internal_error(owner, every_log_record, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "execution_change_status", broken)
    key = Token.objects.create(user=owner).key
    response = patch_missing(token_client(key))
    assert response.status_code == 500
    assert key not in response.content.decode()
    assert any(record.exc_info for record in every_log_record.records)
    assert_not_logged(every_log_record, key)
