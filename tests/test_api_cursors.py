"""The change feed's cursor is opaque: it tells a plain user nothing of the system-wide
counters it holds (transaction id, record id), a changed one is the 422 cursor_invalid, and
it survives a SECRET_KEY rotation that keeps the old key in SECRET_KEY_FALLBACKS. The list's
cursor names the last row of the page the caller was just shown, nothing more (docs/api.md)."""

import base64

import pytest
from django.test import override_settings

from executions.api.pagination import FEED_CURSOR_LENGTH, decode_feed_cursor, encode_feed_cursor
from executions.models import ExecutionStatus, ExecutionStatusChange
from executions.services import execution_change_status

from .factories import ExecutionFactory, UserFactory

FEED = "/api/v1/status-changes"
pytestmark = pytest.mark.django_db(transaction=True)


def feed(client, **params):
    return client.get(FEED, params)


def cancel(execution):
    execution_change_status(execution_id=execution.id, status=ExecutionStatus.CANCELLED, channel="api")


def test_a_plain_users_cursor_reveals_no_counter(owner, owner_client):
    # Changes of someone else first, so that the owner's one record has large global numbers.
    for _ in range(3):
        cancel(ExecutionFactory(created_by=UserFactory()))
    cancel(ExecutionFactory(created_by=owner))
    mine = ExecutionStatusChange.objects.get(execution__created_by=owner)

    cursor = feed(owner_client).json()["next_cursor"]

    assert len(cursor) == FEED_CURSOR_LENGTH
    decoded = base64.urlsafe_b64decode(cursor + "=")
    for counter in (mine.transaction_id, mine.id):
        assert str(counter).encode() not in decoded
        assert counter.to_bytes(8, "big") not in decoded
    # Yet it is the owner's position: nothing more after it, and the same cursor back.
    assert feed(owner_client, after=cursor).json() == {
        "results": [],
        "next_cursor": cursor,
        "has_more": False,
    }


def test_every_changed_character_of_a_cursor_is_cursor_invalid(owner, owner_client):
    cancel(ExecutionFactory(created_by=owner))
    cursor = feed(owner_client).json()["next_cursor"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index in range(len(cursor)):
        replacement = alphabet[(alphabet.index(cursor[index]) + 1) % len(alphabet)]
        tampered = cursor[:index] + replacement + cursor[index + 1 :]
        response = feed(owner_client, after=tampered)
        assert response.status_code == 422, (index, response.content)
        assert [(item["type"], item["loc"]) for item in response.json()["detail"]] == [
            ("cursor_invalid", ["query", "after"])
        ]


@pytest.mark.parametrize(
    "cursor",
    [
        "MjE4MzguNjc0OTg",  # base64 of "21838.67498": the old, readable cursor
        "A" * FEED_CURSOR_LENGTH,
        "A" * (FEED_CURSOR_LENGTH - 1),
        "A" * (FEED_CURSOR_LENGTH + 1),
        "é" * FEED_CURSOR_LENGTH,
    ],
)
def test_a_cursor_the_service_did_not_make_is_cursor_invalid(owner_client, cursor):
    response = feed(owner_client, after=cursor)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "cursor_invalid"


def test_one_position_always_gives_the_same_cursor_and_decodes_back():
    position = (2**63 - 1, 12345)
    assert encode_feed_cursor(position) == encode_feed_cursor(position)
    assert decode_feed_cursor(encode_feed_cursor(position)) == position
    assert encode_feed_cursor((1, 2)) != encode_feed_cursor((1, 3))


def test_a_cursor_from_before_a_key_rotation_keeps_working_from_the_fallbacks(owner, owner_client):
    cancel(ExecutionFactory(created_by=owner))
    with override_settings(SECRET_KEY="old-" + "k" * 50):
        old_cursor = feed(owner_client).json()["next_cursor"]
    cancel(ExecutionFactory(created_by=owner))

    with override_settings(SECRET_KEY="new-" + "k" * 50, SECRET_KEY_FALLBACKS=["old-" + "k" * 50]):
        page = feed(owner_client, after=old_cursor).json()
        assert len(page["results"]) == 1
    # Without the old key in the fallbacks, the old cursor is refused, never misread.
    with override_settings(SECRET_KEY="new-" + "k" * 50):
        assert feed(owner_client, after=old_cursor).status_code == 422
