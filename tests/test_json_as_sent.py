"""`metadata` and `error_info` come back as the JSON values that were sent, on every path that
reads them (one execution, the list, its history, the change feed, an Idempotency-Key replay,
the admin, the purge's archive), on SQLite and PostgreSQL alike: the same numbers (`1e308`
stays a float, not a 309-digit integer; `-0.0` stays `-0.0`), the same key order, and so
never more bytes than the 16 KiB the API took."""

import gzip
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from executions.api.limits import MAX_JSON_OBJECT_BYTES, json_size
from executions.models import Execution
from executions.retention.archive import read_archive

from .api import execution_url
from .factories import UserFactory, api_key_for

# Numbers jsonb rewrote, keys it reordered (it sorts them by length, then bytes).
EXTREME = {
    "zeta": 1e308,
    "a": -0.0,
    "m": 1.5e300,
    "tiny": 5e-324,
    "lowest": -1.7976931348623157e308,
    "huge_integer": 10**40,
    "fraction": 0.1,
    "bb": [1e22, -0.0, {"y": 2.5e-300, "x": 1e100}],
}
# The case: 2,339 times 1e308, 14,041 bytes as sent, 725 KB as jsonb gave it back.
MANY_1E308 = {"a": [1e308] * 2339}


def spelt(value) -> str:
    """The JSON text of `value` as Python writes it: equal only for the same numbers (float or
    integer, sign of zero) and the same key order."""
    return json.dumps(value)


@pytest.fixture
def owner(db):
    return UserFactory(username="owner")


@pytest.fixture
def http(owner):
    return Client(HTTP_AUTHORIZATION=f"Token {api_key_for(owner)}")


def create(http, metadata, **headers):
    body = json.dumps({"name": "exact", "metadata": metadata})
    return http.post("/api/v1/executions", body, content_type="application/json", **headers)


def fail(http, execution_id, error_info):
    body = json.dumps({"status": "failed", "error_info": error_info})
    return http.patch(execution_url(execution_id), body, content_type="application/json")


# Committed for real: the change feed serves only what committed (PostgreSQL's transaction ids).
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("value", [EXTREME, MANY_1E308], ids=["extreme numbers", "2339 x 1e308"])
def test_what_the_api_took_it_gives_back_on_every_read(http, value):
    assert json_size(value) <= MAX_JSON_OBJECT_BYTES
    created = create(http, value)
    assert created.status_code == 201, created.content[:300]
    execution_id = created.json()["id"]
    assert fail(http, execution_id, value).status_code == 200

    one = http.get(execution_url(execution_id))
    [listed] = http.get("/api/v1/executions").json()["results"]
    [change] = http.get(f"{execution_url(execution_id)}/history").json()["results"]
    [fed] = http.get("/api/v1/status-changes").json()["results"]
    reads = {
        "created": created.json()["metadata"],
        "one's metadata": one.json()["metadata"],
        "one's error_info": one.json()["error_info"],
        "listed metadata": listed["metadata"],
        "listed error_info": listed["error_info"],
        "history": change["error_info"],
        "feed": fed["error_info"],
    }
    assert {path: spelt(read) for path, read in reads.items()} == dict.fromkeys(reads, spelt(value))
    # The 16 KiB limit holds on the way out too: the answer carries the two fields, each no
    # larger than it was sent (ASCII here, so as many bytes as the limit counts), and little else.
    assert len(one.content) < 2 * json_size(value) + 1024


def test_an_idempotent_replay_is_the_original_answer_byte_for_byte(http):
    first = create(http, EXTREME, HTTP_IDEMPOTENCY_KEY="exact-1")
    again = create(http, EXTREME, HTTP_IDEMPOTENCY_KEY="exact-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert spelt(again.json()["metadata"]) == spelt(EXTREME)


def test_the_admin_page_shows_the_numbers_as_sent(http, owner):
    execution_id = create(http, MANY_1E308).json()["id"]
    operator = UserFactory(username="operator", is_staff=True, is_superuser=True)
    admin = Client()
    admin.force_login(operator)
    page = admin.get(f"/admin/executions/execution/{execution_id}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count("1e+308") == 2339
    assert "0" * 300 not in text
    assert len(page.content) < 200_000  # jsonb's digits made it over 700 KB


def test_the_purge_archive_holds_the_values_as_sent(http, tmp_path):
    execution_id = create(http, EXTREME).json()["id"]
    assert fail(http, execution_id, EXTREME).status_code == 200
    Execution.objects.filter(pk=execution_id).update(finished_at=timezone.now() - timedelta(days=2))
    archive = tmp_path / "purged.jsonl.gz"
    call_command("purge_executions", "--finished-before", "1d", "--archive", str(archive), stdout=StringIO())

    [record] = read_archive(str(archive))
    assert record["id"] == execution_id
    assert spelt(record["metadata"]) == spelt(EXTREME)
    assert spelt(record["error_info"]) == spelt(EXTREME)
    assert spelt(record["status_changes"][0]["error_info"]) == spelt(EXTREME)
    assert b"0" * 300 not in gzip.decompress(archive.read_bytes())


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_postgresql_columns_keep_the_json_text_rather_than_jsonb():
    """jsonb is where the numbers and the key order were lost (migration 0012): every column
    that holds JSON a client sent, or a copy of it (a notification's data), is `json`. The
    jsonb ones hold lists the service checked itself (an endpoint's emails and events)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_name LIKE 'executions_%%' AND data_type LIKE 'json%%' ORDER BY 1, 2"
        )
        columns = cursor.fetchall()
    assert columns == [
        ("executions_execution", "error_info", "json"),
        ("executions_execution", "metadata", "json"),
        ("executions_executionstatuschange", "error_info", "json"),
        ("executions_idempotencykey", "response_body", "json"),
        ("executions_notificationendpoint", "emails", "jsonb"),
        ("executions_notificationendpoint", "events", "jsonb"),
        ("executions_notificationmessage", "payload", "json"),
    ]
