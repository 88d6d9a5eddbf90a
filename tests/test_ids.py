"""Time-ordered execution ids (UUIDv7, RFC 9562): their bits, their order, and that ids
stored before them (v4) still work everywhere."""

import time
import uuid

import pytest

from executions import ids
from executions.ids import uuid7, uuid7_time_ms
from executions.models import Execution
from tests.api import execution_url, patch_status


def test_version_and_variant_bits_are_rfc_9562s():
    for value in (uuid7() for _ in range(1000)):
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert (value.int >> 76) & 0xF == 7
        assert (value.int >> 62) & 0b11 == 0b10


def test_the_first_48_bits_are_the_creation_millisecond():
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= uuid7_time_ms(value) <= after
    assert uuid7_time_ms(uuid.uuid4()) is None


def test_ids_of_one_process_are_in_creation_order_and_unique():
    made = [uuid7() for _ in range(20_000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    # As text too: the order an index of uuid or of text keeps.
    assert [str(value) for value in made] == sorted(str(value) for value in made)


def test_order_holds_when_the_clock_stands_still_or_steps_back(monkeypatch):
    clock = iter([5_000_000_000_000, 5_000_000_000_000, 4_000_000_000_000, 5_000_000_000_001])
    monkeypatch.setattr(ids.time, "time_ns", lambda: next(clock))
    made = [uuid7() for _ in range(4)]
    assert made == sorted(made) and len(set(made)) == 4


def test_the_random_part_differs_between_ids_of_one_instant(monkeypatch):
    monkeypatch.setattr(ids.time, "time_ns", lambda: 6_000_000_000_000)
    random_parts = {uuid7().int & ((1 << 62) - 1) for _ in range(1000)}
    assert len(random_parts) == 1000


@pytest.mark.django_db
def test_the_api_creates_executions_with_time_ordered_ids(owner_client):
    created = [
        owner_client.post("/api/v1/executions", {"name": f"job-{i}"}, format="json").json()["id"]
        for i in range(5)
    ]
    assert [uuid.UUID(value).version for value in created] == [7] * 5
    assert created == sorted(created)
    stored = Execution.objects.order_by("pk").values_list("pk", flat=True)
    assert list(stored) == [uuid.UUID(value) for value in created]


@pytest.mark.django_db
def test_an_execution_stored_with_a_random_v4_id_is_read_and_changed_as_before(owner, owner_client):
    old = Execution.objects.create(id=uuid.uuid4(), name="from-before-v7", created_by=owner)
    assert owner_client.get(execution_url(old)).json()["id"] == str(old.id)
    answer = patch_status(owner_client, old, "cancelled")
    assert answer.status_code == 200, answer.content
    assert answer.json()["current_status"] == "cancelled"
