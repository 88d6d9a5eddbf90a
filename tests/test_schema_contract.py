"""The served OpenAPI schema describes PATCH /api/v1/executions/{execution_id} as the
contract's reference does (tests/fixtures/contract/reference-openapi.json), plus only the
additions the contract documents."""

import copy
import json
from pathlib import Path

import pytest

from executions.api.openapi.components import STORABLE_OBJECT

REFERENCE = json.loads(
    (Path(__file__).parent / "fixtures" / "contract" / "reference-openapi.json").read_text()
)
PATH = "/api/v1/executions/{execution_id}"
CONTRACT_COMPONENTS = [
    "ExecutionStatusUpdateRequest",
    "ExecutionStatusUpdateResponse",
    "ErrorResponse",
    "HTTPValidationError",
    "ValidationError",
]
ERROR_RESPONSE_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
# What the contract README adds to the page: the 400 and 401/403 answers, and a request
# schema that refuses unknown properties.
DOCUMENTED_ADDED_RESPONSES = {"400", "401", "403"}
# What the executions resource (issue #3) adds: the conditional PATCH (the optional If-Match
# header and its 412) and the errors every operation can give (406, 413, 415, 503), so that
# every operation declares its error responses; and the rate limit's 429 (issue #10), so that
# a generated client knows it. All are ErrorResponse.
RESOURCE_ADDED_RESPONSES = {"406", "412", "413", "415", "429", "503"}
RESOURCE_ADDED_HEADER_PARAMETERS = {"If-Match"}
# Operation metadata that does not change what is sent or received: the tag that groups the
# operation in the docs, and the authentication schemes that the 401 answer stands for.
ALLOWED_OPERATION_METADATA = {"tags", "security"}


@pytest.fixture(scope="module")
def served_schema(django_db_blocker):
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def differences(expected, actual, where="") -> list[str]:
    """Every place where `actual` differs from `expected`, as readable lines."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                found.append(f"{where}/{key}: missing")
            elif key not in expected:
                found.append(f"{where}/{key}: not in the reference: {actual[key]!r}")
            else:
                found += differences(expected[key], actual[key], f"{where}/{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in differences(e, a, f"{where}/{i}")
        ]
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


def test_schema_is_openapi_3_1(served_schema):
    assert served_schema["openapi"].startswith("3.1")


def test_patch_operation_matches_the_reference(served_schema):
    reference_operation = REFERENCE["paths"][PATH]["patch"]
    operation = copy.deepcopy(served_schema["paths"][PATH]["patch"])
    for key in ALLOWED_OPERATION_METADATA:
        operation.pop(key, None)
    added = {
        code: operation["responses"].pop(code)
        for code in DOCUMENTED_ADDED_RESPONSES | RESOURCE_ADDED_RESPONSES
    }
    headers = [p for p in operation["parameters"] if p["in"] == "header"]
    assert {p["name"] for p in headers} == RESOURCE_ADDED_HEADER_PARAMETERS
    assert all(not p.get("required", False) for p in headers)
    operation["parameters"] = [p for p in operation["parameters"] if p["in"] != "header"]

    assert differences(reference_operation, operation) == []
    for code, response in added.items():
        assert response["content"] == ERROR_RESPONSE_CONTENT, code


@pytest.mark.parametrize("name", CONTRACT_COMPONENTS)
def test_component_matches_the_reference(served_schema, name):
    expected = copy.deepcopy(REFERENCE["components"]["schemas"][name])
    if name == "ExecutionStatusUpdateRequest":
        expected["additionalProperties"] = False
        # The README's rules, stated so that clients and fuzzers can read them: error_info
        # only with failed (422 otherwise), and only what the database stores (no NUL).
        expected["anyOf"] = [
            {"properties": {"status": {"const": "failed"}}},
            {"properties": {"error_info": {"type": "null"}}},
        ]
        error_info_object = expected["properties"]["error_info"]["anyOf"][0]
        del error_info_object["additionalProperties"]
        error_info_object.update(STORABLE_OBJECT)

    assert differences(expected, served_schema["components"]["schemas"][name]) == []


def test_comparison_catches_a_difference():
    """The comparison itself must see a changed enum, a lost format and an extra property."""
    reference = REFERENCE["components"]["schemas"]["ExecutionStatusUpdateResponse"]
    changed = copy.deepcopy(reference)
    changed["properties"]["previous_status"]["enum"].remove("interrupted")
    del changed["properties"]["execution_id"]["format"]
    changed["properties"]["extra"] = {"type": "string"}

    assert len(differences(reference, changed)) == 3
