import json

import pytest
from django.test import override_settings

from executions.api.limits import MAX_JSON_OBJECT_BYTES
from executions.api.schemas import JSON_TOO_LARGE, NAME_CONTROL_CHARACTERS
from executions.models import Execution

URL = "/api/v1/executions"


def test_create_returns_201_running_execution_owned_by_caller(owner_client, owner):
    response = owner_client.post(URL, {"name": "nightly-report", "metadata": {"shard": 3}}, format="json")

    assert response.status_code == 201
    body = response.json()
    execution = Execution.objects.get(pk=body["id"])
    assert execution.status == "running" and execution.created_by == owner
    assert execution.metadata == {"shard": 3}
    assert body["name"] == "nightly-report"
    assert body["status"] == "running"
    assert body["created_by"] == "owner"
    assert body["metadata"] == {"shard": 3}
    assert body["error_info"] is None and body["finished_at"] is None and body["last_heartbeat_at"] is None
    assert response["Location"] == f"http://testserver/api/v1/executions/{execution.id}"
    assert response["ETag"].startswith('"')
    # The Location answers with the same representation.
    assert owner_client.get(response["Location"]).json() == body


def test_create_without_metadata_stores_an_empty_object(owner_client):
    response = owner_client.post(URL, {"name": "x"}, format="json")
    assert response.status_code == 201
    assert response.json()["metadata"] == {}


def test_create_needs_authentication(client, db):
    response = client.post(URL, {"name": "x"}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error_code"] == "NOT_AUTHENTICATED"
    assert not Execution.objects.exists()


@pytest.mark.parametrize(
    "body, loc, error_type",
    [
        ({}, ["body", "name"], "missing"),
        ({"name": ""}, ["body", "name"], "string_too_short"),
        ({"name": "x" * 201}, ["body", "name"], "string_too_long"),
        ({"name": 12}, ["body", "name"], "string_type"),
        ({"name": None}, ["body", "name"], "string_type"),
        ({"name": "x", "metadata": [1]}, ["body", "metadata"], "dict_type"),
        ({"name": "x", "metadata": None}, ["body", "metadata"], "dict_type"),
        ({"name": "x", "metadata": "{}"}, ["body", "metadata"], "dict_type"),
        ({"name": "x", "status": "failed"}, ["body", "status"], "extra_forbidden"),
        ({"name": "nul\u0000byte"}, ["body", "name"], "string_unstorable"),
        # Control characters would reach operators' terminals (docs/api.md).
        (
            {"name": "evil\u001b[2J\u001b[31mRED\u001b]0;pwned\u0007\n  00000000-fake  fake-row"},
            ["body", "name"],
            NAME_CONTROL_CHARACTERS,
        ),
        ({"name": "bell\u0007"}, ["body", "name"], NAME_CONTROL_CHARACTERS),
        ({"name": "two\nlines"}, ["body", "name"], NAME_CONTROL_CHARACTERS),
        ({"name": "carriage\rreturn"}, ["body", "name"], NAME_CONTROL_CHARACTERS),
        ({"name": "tab\there"}, ["body", "name"], NAME_CONTROL_CHARACTERS),
        ({"name": "del\u007f"}, ["body", "name"], NAME_CONTROL_CHARACTERS),
        ({"name": "c1-csi\u009b2J"}, ["body", "name"], NAME_CONTROL_CHARACTERS),
        ({"name": "x", "metadata": {"k": "nul\u0000"}}, ["body", "metadata"], "string_unstorable"),
        ([{"name": "x"}], ["body"], "model_attributes_type"),
        ("x", ["body"], "model_attributes_type"),
    ],
)
def test_create_refuses_bad_bodies_with_422_items(owner_client, body, loc, error_type):
    response = owner_client.post(URL, body, format="json")

    assert response.status_code == 422
    assert {"loc": loc, "type": error_type} in [
        {"loc": item["loc"], "type": item["type"]} for item in response.json()["detail"]
    ]
    assert not Execution.objects.exists()


def test_create_refuses_deeply_nested_metadata(owner_client):
    metadata = {}
    for _ in range(40):
        metadata = {"a": metadata}
    response = owner_client.post(URL, {"name": "x", "metadata": metadata}, format="json")
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_too_deep"


@pytest.mark.parametrize("raw", [b'{"name": ', b"\xff\xfe", b'{"name": "x", "metadata": {"n": NaN}}'])
def test_create_refuses_what_is_not_json(owner_client, raw):
    response = owner_client.generic("POST", URL, raw, content_type="application/json")
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert not Execution.objects.exists()


def test_create_with_no_body_is_a_missing_body(owner_client):
    response = owner_client.generic("POST", URL, b"", content_type="application/json")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


def test_create_refuses_form_bodies_with_415(owner_client):
    response = owner_client.post(URL, "name=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["error_code"] == "UNSUPPORTED_MEDIA_TYPE"


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_create_refuses_bodies_over_the_limit_with_413(owner_client):
    response = owner_client.post(URL, {"name": "x", "metadata": {"blob": "y" * 2000}}, format="json")
    assert response.status_code == 413
    assert response.json()["error_code"] == "PAYLOAD_TOO_LARGE"
    assert not Execution.objects.exists()


def test_metadata_up_to_the_size_limit_is_stored_and_one_byte_more_is_refused(owner_client):
    envelope = len(json.dumps({"blob": ""}, separators=(",", ":")))
    at_the_limit = {"blob": "x" * (MAX_JSON_OBJECT_BYTES - envelope)}
    response = owner_client.post(URL, {"name": "x", "metadata": at_the_limit}, format="json")
    assert response.status_code == 201
    assert response.json()["metadata"] == at_the_limit

    over = {"blob": "x" * (MAX_JSON_OBJECT_BYTES - envelope + 1)}
    response = owner_client.post(URL, {"name": "y", "metadata": over}, format="json")
    assert response.status_code == 422
    [item] = response.json()["detail"]
    assert (item["type"], item["loc"]) == (JSON_TOO_LARGE, ["body", "metadata"])
    assert item["ctx"] == {"max_bytes": MAX_JSON_OBJECT_BYTES, "size": MAX_JSON_OBJECT_BYTES + 1}
    assert list(Execution.objects.values_list("name", flat=True)) == ["x"]
