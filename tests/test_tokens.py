"""API tokens: stored hashed, shown once, several per user, named, expiring, revocable, recording
their last use at most once a minute; made and rotated by commands; DRF's old keys keep
working after the upgrade; never written to a log or an error body."""

import hashlib
import logging
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from executions.api import views
from executions.api.authentication import INVALID_TOKEN, HashedTokenAuthentication
from executions.api.error_codes import ErrorCode
from executions.models import ApiToken
from executions.tokens import LAST_USED_RESOLUTION, ROTATED_TOKEN_NAME

from .factories import ExecutionFactory, UserFactory, api_key_for


def command(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def patch_missing(client):
    return client.patch("/api/v1/executions/missing", {"status": "cancelled"}, format="json")


def token_client(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def authenticates(key) -> bool:
    """Whether `key` gets past authentication (404 for a missing execution, not 401)."""
    status = patch_missing(token_client(key)).status_code
    assert status in {401, 404}
    return status == 404


def stored_values(token: ApiToken) -> list[str]:
    return [str(getattr(token, field.attname)) for field in ApiToken._meta.concrete_fields]


# --- Made by a command, shown once, stored hashed --------------------------------------------


def test_create_token_prints_only_the_key_and_stores_only_its_hash(owner):
    output = command("create_token", "owner", "--name", "nightly-worker on host-3")

    key = output.removesuffix("\n")
    assert output == f"{key}\n" and "\n" not in key
    assert key.startswith("exe_") and len(key) == len("exe_") + 43
    token = ApiToken.objects.get()
    assert (token.user, token.name) == (owner, "nightly-worker on host-3")
    assert (token.expires_at, token.revoked_at) == (None, None)
    assert token.prefix == key[:12]
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert not any(key in value for value in stored_values(token))
    assert authenticates(key)


def test_create_token_with_an_expiry(owner):
    command("create_token", "owner", "--name", "quarterly", "--expires", "90d")
    token = ApiToken.objects.get()
    assert token.expires_at - token.created_at == timedelta(days=90)


def test_every_key_is_new(owner):
    keys = {command("create_token", "owner", "--name", "same name") for _ in range(3)}
    assert len(keys) == 3
    assert ApiToken.objects.filter(user=owner).count() == 3


@pytest.mark.parametrize(
    "args,message",
    [
        (["nobody", "--name", "x"], "No user named 'nobody'"),
        (["owner", "--name", "   "], "--name must be 1 to 100 characters"),
        (["owner", "--name", "x" * 101], "--name must be 1 to 100 characters"),
        (["owner", "--name", "x", "--expires", "soon"], "'soon' is not a duration"),
        (["owner", "--name", "x", "--expires", "0d"], "out of range"),
        (["owner"], "the following arguments are required: --name"),
        # A command line that is not UTF-8 arrives surrogate-escaped: it was a UnicodeEncodeError.
        (["\udced\udca0\udc80", "--name", "x"], "not valid UTF-8 text"),
        (["owner", "--name", "\udced\udca0\udc80"], "--name: not valid UTF-8 text"),
        (["owner", "--name", "a\x00b"], "--name: may not contain NUL"),
        (["owner", "--name", "evil\x1b[2J"], "--name may not contain control characters"),
    ],
)
def test_create_token_refuses_bad_arguments_and_makes_nothing(owner, args, message):
    with pytest.raises(CommandError, match=message):
        command("create_token", *args)
    assert not ApiToken.objects.exists()


# --- Several per user; revocation and expiry take effect at once ------------------------------


def test_a_user_has_several_tokens_and_revoking_one_leaves_the_others(owner):
    first, second = api_key_for(owner, name="first"), api_key_for(owner, name="second")
    assert authenticates(first) and authenticates(second)

    ApiToken.objects.filter(name="first").update(revoked_at=timezone.now())

    assert not authenticates(first)
    assert authenticates(second)


def test_a_revoked_or_expired_token_is_refused_on_its_very_next_request(owner):
    key = api_key_for(owner)
    client = token_client(key)
    assert patch_missing(client).status_code == 404

    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert patch_missing(client).status_code == 401

    ApiToken.objects.update(expires_at=None, revoked_at=timezone.now())
    assert patch_missing(client).status_code == 401


def volatile_fields_removed(body: dict) -> dict:
    return {key: value for key, value in body.items() if key not in {"correlation_id", "timestamp"}}


def test_unknown_expired_revoked_and_inactive_users_keys_get_one_and_the_same_401(owner):
    inactive = UserFactory(username="gone", is_active=False)
    keys = {
        "unknown": "exe_" + "A" * 43,
        "expired": api_key_for(owner, expires_at=timezone.now() - timedelta(days=1)),
        "revoked": api_key_for(owner, revoked_at=timezone.now()),
        "inactive user": api_key_for(inactive),
    }
    answers = {reason: patch_missing(token_client(key)) for reason, key in keys.items()}

    for reason, response in answers.items():
        assert response.status_code == 401, reason
        assert response["WWW-Authenticate"] == "Token"
        assert volatile_fields_removed(response.json()) == {
            "detail": INVALID_TOKEN,
            "error_code": ErrorCode.AUTHENTICATION_FAILED,
        }, reason
    assert len({tuple(response.headers) for response in answers.values()}) == 1


# --- Lean: one statement, a real User, last use recorded at most once a minute ------------------


def authenticate(key):
    request = RequestFactory().get("/api/v1/executions", HTTP_AUTHORIZATION=f"Token {key}")
    return HashedTokenAuthentication().authenticate(request)


def test_authentication_is_one_statement_and_gives_a_complete_user(owner):
    owner.email = "owner@example.com"
    owner.save()
    key = api_key_for(owner)

    with CaptureQueriesContext(connection) as queries:
        user, token_id = authenticate(key)
        seen = (user.pk, user.username, user.email, user.is_active, user.is_superuser, user.date_joined)

    assert len(queries) == 1, [query["sql"] for query in queries]
    assert type(user) is User
    assert seen == (owner.pk, "owner", "owner@example.com", True, False, owner.date_joined)
    assert token_id == ApiToken.objects.get().pk


def updates_of_tokens(queries) -> list[str]:
    table = ApiToken._meta.db_table
    return [query["sql"] for query in queries if query["sql"].startswith("UPDATE") and table in query["sql"]]


def test_last_use_is_recorded_at_most_once_a_minute(owner):
    key = api_key_for(owner, used_just_now=False)
    assert ApiToken.objects.get().last_used_at is None

    with CaptureQueriesContext(connection) as first:
        authenticate(key)
    first_use = ApiToken.objects.get().last_used_at
    assert first_use is not None
    assert len(updates_of_tokens(first)) == 1

    with CaptureQueriesContext(connection) as second:
        authenticate(key)
    assert updates_of_tokens(second) == []
    assert ApiToken.objects.get().last_used_at == first_use

    a_minute_ago = timezone.now() - LAST_USED_RESOLUTION - timedelta(seconds=1)
    ApiToken.objects.update(last_used_at=a_minute_ago)
    authenticate(key)
    assert ApiToken.objects.get().last_used_at > a_minute_ago


@pytest.mark.django_db(transaction=True)
def test_a_patch_that_records_the_last_use_costs_one_statement_more():
    """The other side of test_success_path_takes_at_most_three_sql_statements, whose token was
    used less than a minute before: once a minute per token, the PATCH takes one more (a
    fourth at most; on PostgreSQL, where the change and its audit record are one statement, a
    third)."""
    owner = UserFactory(username="counted")

    def patch_with(key):
        running_execution = ExecutionFactory(created_by=owner)
        with CaptureQueriesContext(connection) as queries:
            response = token_client(key).patch(
                f"/api/v1/executions/{running_execution.id}", {"status": "cancelled"}, format="json"
            )
        assert response.status_code == 200
        statements = [
            q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT"))
        ]
        return statements, queries.captured_queries

    recording, captured = patch_with(api_key_for(owner, used_just_now=False))
    not_recording, _ = patch_with(api_key_for(owner))
    assert len(recording) == len(not_recording) + 1 <= 4, recording
    assert len(updates_of_tokens(captured)) == 1


# --- rotate_token: revoke them all, make one -------------------------------------------------


def test_rotate_token_revokes_every_token_of_the_user_and_prints_only_the_new_key(owner, other_user):
    old_keys = [api_key_for(owner, name="a"), api_key_for(owner, name="b")]
    others_key = api_key_for(other_user)

    output = command("rotate_token", "owner")

    new_key = output.removesuffix("\n")
    assert output == f"{new_key}\n" and new_key.startswith("exe_")
    assert not any(authenticates(key) for key in old_keys)
    assert authenticates(new_key)
    assert authenticates(others_key)
    new = ApiToken.objects.get(user=owner, revoked_at__isnull=True)
    assert (new.name, new.expires_at) == (ROTATED_TOKEN_NAME, None)
    assert ApiToken.objects.filter(user=owner, revoked_at__isnull=False).count() == 2


def test_rotate_token_makes_a_first_token_and_takes_an_expiry(other_user):
    key = command("rotate_token", "other", "--expires", "12w").strip()
    token = ApiToken.objects.get(user=other_user)
    assert token.expires_at - token.created_at == timedelta(weeks=12)
    assert authenticates(key)


def test_rotate_token_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        command("rotate_token", "nobody")
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "username, message", [("\udced\udca0\udc80", "not valid UTF-8 text"), ("a\x00", "may not contain NUL")]
)
def test_rotate_token_refuses_a_username_no_database_can_take(username, message):
    # A command line that is not UTF-8 arrives surrogate-escaped: it was a UnicodeEncodeError.
    with pytest.raises(CommandError, match=message):
        command("rotate_token", username)
    assert not ApiToken.objects.exists()


# --- The upgrade: DRF's keys keep working, and leave the database in clear ---------------------

DRF_AUTHTOKEN = "rest_framework.authtoken"


@pytest.mark.django_db(transaction=True)
def test_a_drf_token_made_before_the_upgrade_keeps_working_after_it():
    """The database as it was before: executions' migrations up to the one before the API
    tokens, and DRF's authtoken installed, with a token made by DRF itself. Then the upgrade:
    the new code (authtoken no longer installed) migrates forward."""
    assert DRF_AUTHTOKEN not in settings.INSTALLED_APPS
    worker = UserFactory(username="old-worker")
    api_tokens_migration = MigrationExecutor(connection).loader.get_migration("executions", "0002_api_token")
    before_api_tokens = [node for node in api_tokens_migration.dependencies if node[0] == "executions"]
    # Without the admin, whose start-up would register DRF's token admin before this override
    # shows in the settings DRF reads (and fail); no migration here depends on it.
    apps_before = [app for app in settings.INSTALLED_APPS if app != "django.contrib.admin"]
    with_drf_authtoken = override_settings(INSTALLED_APPS=[*apps_before, DRF_AUTHTOKEN])
    try:
        with with_drf_authtoken:
            MigrationExecutor(connection).migrate(before_api_tokens)
            executor = MigrationExecutor(connection)
            drf_leaf = [node for node in executor.loader.graph.leaf_nodes() if node[0] == "authtoken"]
            state = executor.migrate(drf_leaf)
            # DRF's model as its migrations left it (the class itself is abstract here: DRF
            # decides that at import from the settings, which the override changes only
            # later), with a key from DRF's own generator.
            from rest_framework.authtoken.models import Token

            old_key = Token.generate_key()
            drf_token = state.apps.get_model("authtoken", "Token").objects.create(
                key=old_key, user_id=worker.pk
            )

        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

        migrated = ApiToken.objects.get()
        assert (migrated.user, migrated.prefix) == (worker, old_key[:8])
        assert (migrated.name, migrated.created_at) == ("DRF token (migrated)", drf_token.created)
        assert not any(old_key in value for value in stored_values(migrated))
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM authtoken_token")
            assert cursor.fetchone() == (0,)
        response = token_client(old_key).get("/api/v1/executions")
        assert response.status_code == 200, response.content
        assert response.json()["results"] == []
    finally:
        # Drop DRF's table again: on PostgreSQL its foreign key to the users would stop the
        # flush that follows a transactional test.
        with with_drf_authtoken:
            MigrationExecutor(connection).migrate([("authtoken", None)])


# --- Never in a log or an error body -------------------------------------------------------


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


def test_a_valid_token_is_not_logged(owner, every_log_record):
    key = api_key_for(owner, used_just_now=False)
    response = patch_missing(token_client(key))
    assert response.status_code == 404
    assert key not in response.content.decode()
    assert_not_logged(every_log_record, key)


@pytest.mark.parametrize("header", ["Token {key}", "Token {key} extra", "Bearer {key}", "Token"])
def test_a_refused_token_is_in_neither_the_body_nor_the_log(db, every_log_record, header):
    key = "exe_" + "f" * 42 + "e"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header.format(key=key))
    response = patch_missing(client)
    assert response.status_code == 401
    assert response.json()["error_code"] in {"AUTHENTICATION_FAILED", "NOT_AUTHENTICATED"}
    assert key not in response.content.decode()
    assert "Authorization" not in response.content.decode()
    if "{key}" in header:
        assert_not_logged(every_log_record, key)


@pytest.mark.parametrize("refusal", ["revoked", "expired"])
def test_a_refused_real_token_is_in_neither_the_body_nor_the_log(owner, every_log_record, refusal):
    refused = {"revoked_at": timezone.now()} if refusal == "revoked" else {"expires_at": timezone.now()}
    key = api_key_for(owner, **refused)
    response = patch_missing(token_client(key))
    assert response.status_code == 401
    assert key not in response.content.decode()
    assert_not_logged(every_log_record, key)


def test_a_token_is_not_logged_with_an_internal_error(owner, every_log_record, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "execution_change_status", broken)
    key = api_key_for(owner)
    response = patch_missing(token_client(key))
    assert response.status_code == 500
    assert key not in response.content.decode()
    assert any(record.exc_info for record in every_log_record.records)
    assert_not_logged(every_log_record, key)


# --- The admin: lists and revokes, never shows a key; superusers make tokens, seen once ---------

TOKENS_ADMIN = "/admin/executions/apitoken/"


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def token_staff(db):
    """Staff with every permission on tokens, but not a superuser."""
    return UserFactory(
        username="token-staff",
        is_staff=True,
        permissions=["view_apitoken", "change_apitoken", "add_apitoken"],
    )


def test_the_admin_lists_tokens_without_their_keys(superuser):
    UserFactory(username="host3-runner")
    key = command("create_token", "host3-runner", "--name", "nightly job", "--expires", "30d").strip()
    token = ApiToken.objects.get()
    client = admin_client(superuser)

    listing = client.get(TOKENS_ADMIN)
    page = client.get(f"{TOKENS_ADMIN}{token.pk}/change/")

    assert listing.status_code == page.status_code == 200
    for response in (listing, page):
        text = response.content.decode()
        for shown in (token.prefix, "nightly job", "host3-runner", "active"):
            assert shown in text
        assert key not in text
        assert key[len(token.prefix) :][:8] not in text
        assert token.key_hash not in text
    assert list(listing.context["cl"].result_list) == [token]
    assert 'name="_save"' not in page.content.decode()


@pytest.mark.parametrize(
    "fields,state",
    [
        ({}, "active"),
        ({"revoked_at": timezone.now()}, "revoked"),
        ({"expires_at": timezone.now()}, "expired"),
    ],
)
def test_the_admin_says_which_tokens_are_refused_and_why(superuser, owner, fields, state):
    api_key_for(owner, **fields)
    listing = admin_client(superuser).get(TOKENS_ADMIN)
    assert f'<td class="field-state">{state}</td>' in listing.content.decode()


def test_a_superuser_makes_a_token_in_the_admin_and_sees_its_key_once(superuser, owner):
    client = admin_client(superuser)
    assert client.get(f"{TOKENS_ADMIN}add/").status_code == 200

    response = client.post(f"{TOKENS_ADMIN}add/", {"user": owner.pk, "name": "host-3", "expires_in": "30d"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [key] = re.findall(r'<code class="api-token-key"[^>]*>([^<]+)</code>', response.content.decode())
    token = ApiToken.objects.get()
    assert (token.user, token.name) == (owner, "host-3")
    assert token.expires_at - token.created_at == timedelta(days=30)
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert authenticates(key)
    assert key not in client.get(TOKENS_ADMIN).content.decode()
    assert key not in client.get(f"{TOKENS_ADMIN}{token.pk}/change/").content.decode()


def test_the_admin_refuses_a_bad_expiry_and_makes_nothing(superuser, owner):
    form = {"user": owner.pk, "name": "x", "expires_in": "soon"}
    response = admin_client(superuser).post(f"{TOKENS_ADMIN}add/", form)
    assert response.status_code == 200
    assert "is not a duration" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_staff_who_are_not_superusers_cannot_make_tokens(token_staff, owner):
    client = admin_client(token_staff)
    assert client.get(f"{TOKENS_ADMIN}add/").status_code == 403
    assert client.post(f"{TOKENS_ADMIN}add/", {"user": token_staff.pk, "name": "mine"}).status_code == 403
    assert not ApiToken.objects.exists()


def revoke_in_admin(client, *tokens):
    return client.post(
        TOKENS_ADMIN, {"action": "revoke_selected", "index": 0, ACTION_CHECKBOX_NAME: [t.pk for t in tokens]}
    )


def test_the_admin_revokes_tokens_and_their_keys_are_refused_at_once(token_staff, owner):
    revoked_key, kept_key = api_key_for(owner, name="leaked"), api_key_for(owner, name="kept")
    leaked = ApiToken.objects.get(name="leaked")

    response = revoke_in_admin(admin_client(token_staff), leaked)

    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "1 token revoked; their keys are refused from now on."
    ]
    leaked.refresh_from_db()
    assert leaked.revoked_at is not None
    assert not authenticates(revoked_key)
    assert authenticates(kept_key)


def test_staff_who_may_only_view_tokens_cannot_revoke_them(owner):
    viewer = UserFactory(username="token-viewer", is_staff=True, permissions=["view_apitoken"])
    key = api_key_for(owner)
    client = admin_client(viewer)

    assert client.get(TOKENS_ADMIN).status_code == 200
    revoke_in_admin(client, ApiToken.objects.get())

    assert ApiToken.objects.get().revoked_at is None
    assert authenticates(key)
