"""POST /api/v1/executions with an Idempotency-Key: a retry answers the original 201 and
creates nothing, a reused key with another body is a 422, keys are per user, and concurrent
requests with one key create exactly one execution (against a live server)."""

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from jsonschema import Draft202012Validator
from rest_framework.test import APIClient

from devtools.net import request
from executions.api.error_codes import ErrorCode
from executions.models import Execution, IdempotencyKey
from executions.retention.purge import idempotency_keys_expired

from .concurrency import run_together
from .factories import UserFactory, api_key_for

EXECUTIONS = "/api/v1/executions"


def create(client, body, key=None):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(EXECUTIONS, body, format="json", **headers)


def answer(response):
    """What a client sees of a 201: status, body, Location, ETag."""
    return response.status_code, response.json(), response["Location"], response["ETag"]


@pytest.mark.django_db
def test_a_retry_gets_the_original_201_and_creates_nothing(owner_client):
    first = create(owner_client, {"name": "nightly", "metadata": {"day": 1}}, key="retry-1")
    again = create(owner_client, {"name": "nightly", "metadata": {"day": 1}}, key="retry-1")

    assert first.status_code == 201
    assert answer(again) == answer(first)
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Execution.objects.count() == 1
    assert IdempotencyKey.objects.get().execution_id == Execution.objects.get().id


@pytest.mark.django_db
def test_the_same_body_spelt_differently_is_the_same_request(owner_client):
    first = create(owner_client, {"name": "n", "metadata": {"a": 1, "b": 2}}, key="k")
    reordered = owner_client.post(
        EXECUTIONS,
        b'{ "metadata": {"b": 2, "a": 1},  "name": "n" }',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert answer(reordered) == answer(first)
    plain = create(owner_client, {"name": "m"}, key="k2")
    with_default = create(owner_client, {"name": "m", "metadata": {}}, key="k2")
    assert answer(with_default) == answer(plain)
    assert Execution.objects.count() == 2


@pytest.mark.django_db
def test_the_replay_is_the_original_even_after_the_execution_changed(owner_client):
    first = create(owner_client, {"name": "n"}, key="k")
    execution_id = first.json()["id"]
    owner_client.post(f"{EXECUTIONS}/{execution_id}/heartbeat")
    owner_client.patch(f"{EXECUTIONS}/{execution_id}", {"status": "completed"}, format="json")

    again = create(owner_client, {"name": "n"}, key="k")

    assert answer(again) == answer(first)
    assert again.json()["status"] == "running"
    # A GET tells the truth of now, with its own ETag.
    now = owner_client.get(f"{EXECUTIONS}/{execution_id}")
    assert now.json()["status"] == "completed" and now["ETag"] != first["ETag"]


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_a_422_and_creates_nothing(owner_client, client):
    create(owner_client, {"name": "n"}, key="k")
    reused = create(owner_client, {"name": "other"}, key="k")

    assert reused.status_code == 422
    body = reused.json()
    assert body["error_code"] == ErrorCode.IDEMPOTENCY_KEY_REUSED
    assert body["correlation_id"] == reused["X-Request-ID"]
    assert "different request" in body["detail"]
    assert Execution.objects.count() == 1
    # The documented 422 schema takes it.
    openapi = client.get("/api/schema/", {"format": "json"}).json()
    schema = openapi["paths"][EXECUTIONS]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": openapi["components"]})
    assert list(validator.iter_errors(body)) == []


@pytest.mark.django_db
def test_keys_belong_to_their_user(owner_client, client_for, other_user):
    mine = create(owner_client, {"name": "n"}, key="shared")
    theirs = create(client_for(other_user), {"name": "n"}, key="shared")
    assert theirs.status_code == 201
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs.json()["created_by"] == "other"
    assert "Idempotent-Replayed" not in theirs


@pytest.mark.django_db
def test_without_a_key_every_post_creates(owner_client):
    assert (
        create(owner_client, {"name": "n"}).json()["id"] != create(owner_client, {"name": "n"}).json()["id"]
    )
    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "key, error_type",
    [
        ("", "string_too_short"),
        ("k" * 256, "string_too_long"),
        ("two words", "idempotency_key_characters"),
        ("caf\u00e9", "idempotency_key_characters"),
        ("tab\there", "idempotency_key_characters"),
    ],
)
def test_a_bad_key_is_a_422_located_in_the_header(owner_client, key, error_type):
    response = create(owner_client, {"name": "n"}, key=key)
    assert response.status_code == 422
    assert [(item["loc"], item["type"], item["input"]) for item in response.json()["detail"]] == [
        (["header", "idempotency-key"], error_type, key)
    ]
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_a_key_of_255_visible_characters_is_fine(owner_client):
    key = "".join(chr(33 + i % 94) for i in range(255))
    assert create(owner_client, {"name": "n"}, key=key).status_code == 201
    assert create(owner_client, {"name": "n"}, key=key)["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_a_bad_body_with_a_key_stores_no_key(owner_client):
    assert create(owner_client, {"name": ""}, key="k").status_code == 422
    assert create(owner_client, {"name": "n"}, key="k").status_code == 201
    assert "Idempotent-Replayed" not in create(owner_client, {"name": "x"}, key="k2")


@pytest.mark.django_db
def test_anonymous_callers_are_refused_before_the_key_is_looked_at():
    response = APIClient().post(EXECUTIONS, {"name": "n"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 401


@pytest.mark.django_db
def test_keys_older_than_a_day_are_the_expired_ones(owner_client):
    create(owner_client, {"name": "n"}, key="old")
    create(owner_client, {"name": "n"}, key="new")
    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(hours=24, seconds=1)
    )
    IdempotencyKey.objects.filter(key="new").update(
        created_at=timezone.now() - timedelta(hours=23, minutes=59)
    )
    assert list(idempotency_keys_expired().values_list("key", flat=True)) == ["old"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_exactly_one_execution(live_server):
    """16 requests with one key at the same moment, 12 with one body and 4 with another:
    one execution; every request with the winner's body gets its 201, the others 422.
    Three rounds, so that each body gets its chances to win."""
    port = urlsplit(live_server.url).port
    owner = UserFactory(username="worker")
    auth = {"Authorization": f"Token {api_key_for(owner)}"}
    bodies = [{"name": "a"} if i % 4 else {"name": "b", "metadata": {"x": 1}} for i in range(16)]
    for round_number in range(3):
        key = f"race-{round_number}"
        answers = run_together(
            16,
            lambda i, key=key: request(port, "POST", EXECUTIONS, bodies[i], {**auth, "Idempotency-Key": key}),
        )

        created = list(
            Execution.objects.filter(pk__in=IdempotencyKey.objects.filter(key=key).values("execution"))
        )
        assert len(created) == 1
        winner_body = {"name": created[0].name, "metadata": created[0].metadata}
        originals = [
            a for a, body in zip(answers, bodies, strict=True) if {"metadata": {}, **body} == winner_body
        ]
        others = [
            a for a, body in zip(answers, bodies, strict=True) if {"metadata": {}, **body} != winner_body
        ]
        assert {
            (code, body["id"], headers["Location"], headers["ETag"]) for code, headers, body in originals
        } == {
            (
                201,
                str(created[0].id),
                f"http://127.0.0.1:{port}{EXECUTIONS}/{created[0].id}",
                originals[0][1]["ETag"],
            )
        }
        assert sum("Idempotent-Replayed" not in headers for _, headers, _ in originals) == 1
        assert {(code, body["error_code"]) for code, _, body in others} == {
            (422, ErrorCode.IDEMPOTENCY_KEY_REUSED)
        }
    assert Execution.objects.count() == 3
