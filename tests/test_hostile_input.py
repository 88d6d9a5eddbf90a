"""Hostile input: wrong types, nulls, huge and deeply nested JSON, strings the database cannot
store, invalid UTF-8, wrong content types, oversize bodies, absurd paths, query parameters
and headers. Every answer is a clear 4xx in one of the two documented shapes (ErrorResponse
or a 422 HTTPValidationError), JSON, and nothing is stored."""

import json
import logging

import pytest
from django.test import Client

from executions.api.error_codes import ErrorCode
from executions.api.filters import ExecutionFilter, StatusChangeFilter
from executions.api.limits import MAX_JSON_OBJECT_BYTES
from executions.api.pagination import FeedQuery, PageQuery
from executions.api.schemas import JSON_TOO_LARGE, MAX_JSON_DEPTH, ErrorResponse, HTTPValidationError
from executions.models import Execution, ExecutionStatus, ExecutionStatusChange

from .api import ERROR_RESPONSE_KEYS
from .factories import ExecutionFactory, api_key_for


@pytest.fixture
def http(owner):
    """A Django test client that turns server errors into responses, as a real server does,
    with the owner's token."""
    token = api_key_for(owner)
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def execution(owner):
    return ExecutionFactory(created_by=owner)


def snapshot():
    """Everything a request could have changed."""
    return (
        list(Execution.objects.order_by("pk").values()),
        ExecutionStatusChange.objects.count(),
    )


def assert_error(response, status, error_code):
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == ERROR_RESPONSE_KEYS, body
    ErrorResponse.model_validate(body)
    assert body["error_code"] == error_code
    assert body["correlation_id"] == response["X-Request-ID"]
    return body


def assert_validation_error(response, error_type, loc=None):
    assert response.status_code == 422, response.content[:500]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    HTTPValidationError.model_validate(body)
    assert body["detail"], body
    assert error_type in [item["type"] for item in body["detail"]], body
    if loc is not None:
        assert loc in [item["loc"] for item in body["detail"]], body
    return body


def patch(http, execution_id, body: bytes, content_type="application/json", **headers):
    return http.generic(
        "PATCH", f"/api/v1/executions/{execution_id}", body, content_type=content_type, **headers
    )


def nested(depth: int, leaf: str = "1") -> bytes:
    return ('{"a":' * depth + leaf + "}" * depth).encode()


# (id, body, 422 error type, its loc or None)
MALFORMED_BODIES = [
    ("null", b"null", "missing", ["body"]),
    ("empty", b"", "missing", ["body"]),
    ("whitespace", b"   ", "json_invalid", None),
    ("truncated", b'{"status": ', "json_invalid", ["body", 11]),
    ("not an object", b"[1]", "model_attributes_type", ["body"]),
    ("a string", b'"cancelled"', "model_attributes_type", ["body"]),
    ("a number", b"1e5", "model_attributes_type", ["body"]),
    ("status missing", b"{}", "missing", ["body", "status"]),
    ("status null", b'{"status": null}', "literal_error", ["body", "status"]),
    ("status number", b'{"status": 1}', "literal_error", ["body", "status"]),
    ("status bool", b'{"status": true}', "literal_error", ["body", "status"]),
    ("status list", b'{"status": ["cancelled"]}', "literal_error", ["body", "status"]),
    ("status object", b'{"status": {"cancelled": 1}}', "literal_error", ["body", "status"]),
    ("status other case", b'{"status": "CANCELLED"}', "literal_error", ["body", "status"]),
    ("status with space", b'{"status": "cancelled "}', "literal_error", ["body", "status"]),
    ("status running", b'{"status": "running"}', "literal_error", ["body", "status"]),
    ("status interrupted", b'{"status": "interrupted"}', "literal_error", ["body", "status"]),
    ("status huge", json.dumps({"status": "x" * 200_000}).encode(), "literal_error", ["body", "status"]),
    ("status with NUL", b'{"status": "cancelled\\u0000"}', "literal_error", ["body", "status"]),
    ("extra field", b'{"status": "cancelled", "foo": 1}', "extra_forbidden", ["body", "foo"]),
    ("extra field, surrogate name", b'{"status": "cancelled", "\\ud800": 1}', "string_unicode", ["body"]),
    ("error_info a list", b'{"status": "failed", "error_info": [1, 2]}', "dict_type", ["body", "error_info"]),
    (
        "error_info a string",
        b'{"status": "failed", "error_info": "boom"}',
        "dict_type",
        ["body", "error_info"],
    ),
    (
        "error_info with cancelled",
        b'{"status": "cancelled", "error_info": {"a": 1}}',
        "error_info_not_allowed",
        None,
    ),
    ("error_info NUL", b'{"status": "failed", "error_info": {"a": "x\\u0000y"}}', "string_unstorable", None),
    ("error_info NUL key", b'{"status": "failed", "error_info": {"\\u0000": 1}}', "string_unstorable", None),
    (
        "error_info lone surrogate",
        b'{"status": "failed", "error_info": {"a": "\\ud800"}}',
        "string_unstorable",
        None,
    ),
    (
        "error_info surrogate key",
        b'{"status": "failed", "error_info": {"\\udfff": 1}}',
        "string_unstorable",
        None,
    ),
    (
        "error_info deep",
        b'{"status": "failed", "error_info": ' + nested(MAX_JSON_DEPTH + 5) + b"}",
        "json_too_deep",
        None,
    ),
    (
        "error_info very deep",
        b'{"status": "failed", "error_info": ' + nested(900) + b"}",
        "json_too_deep",
        None,
    ),
    # Nesting no body may have is refused before it is parsed, whatever the depth.
    ("nested 100k levels", b"[" * 100_000 + b"]" * 100_000, "json_too_deep", ["body"]),
    ("objects nested 40k levels", nested(40_000), "json_too_deep", ["body"]),
    ("NaN", b'{"status": "failed", "error_info": {"a": NaN}}', "json_invalid", None),
    ("Infinity", b'{"status": "failed", "error_info": {"a": -Infinity}}', "json_invalid", None),
    ("float overflow", b'{"status": "failed", "error_info": {"a": 1e400}}', "json_invalid", None),
    (
        "5000-digit integer",
        b'{"status": "failed", "error_info": {"a": ' + b"9" * 5000 + b"}}",
        "json_invalid",
        None,
    ),
    ("invalid UTF-8", b'{"status": "\xff\xfe"}', "json_invalid", None),
    ("overlong UTF-8", b'{"status": "\xc0\xaf"}', "json_invalid", None),
    # json.loads decodes bytes with "surrogatepass": the surrogate arrives, and is refused.
    (
        "UTF-8 encoded surrogate",
        b'{"status": "failed", "error_info": {"a": "\xed\xa0\x80"}}',
        "string_unstorable",
        None,
    ),
    ("invalid UTF-16", b"\xff\xfe{\x00\x00\xd8", "json_invalid", None),
    ("latin-1", '{"status": "failed", "error_info": {"a": "é"}}'.encode("latin-1"), "json_invalid", None),
    ("trailing garbage", b'{"status": "cancelled"} x', "json_invalid", None),
    ("two documents", b'{"status": "cancelled"}{"status": "failed"}', "json_invalid", None),
    ("single quotes", b"{'status': 'cancelled'}", "json_invalid", None),
    ("NUL byte outside strings", b'{"status": "cancelled"}\x00', "json_invalid", None),
]


@pytest.mark.parametrize(
    "body,error_type,loc", [case[1:] for case in MALFORMED_BODIES], ids=[case[0] for case in MALFORMED_BODIES]
)
def test_malformed_patch_bodies_get_422_and_change_nothing(http, execution, body, error_type, loc):
    before = snapshot()
    response = patch(http, execution.id, body)
    assert_validation_error(response, error_type, loc)
    assert snapshot() == before


def test_several_problems_are_reported_together(http, execution):
    response = patch(http, execution.id, b'{"status": 3, "error_info": [], "x": null}')
    body = assert_validation_error(response, "literal_error")
    assert {item["type"] for item in body["detail"]} == {"literal_error", "dict_type", "extra_forbidden"}


def test_body_at_the_limit_is_accepted(http, execution, settings):
    # error_info as large as it may be, the rest of the body JSON whitespace.
    envelope = json.dumps({"log": ""}, separators=(",", ":"))
    filler = "x" * (MAX_JSON_OBJECT_BYTES - len(envelope))
    body = json.dumps({"status": "failed", "error_info": {"log": filler}}).encode()
    body = body[:-1] + b" " * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE - len(body)) + b"}"
    assert len(body) == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = patch(http, execution.id, body)
    assert response.status_code == 200
    execution.refresh_from_db()
    assert execution.error_info == {"log": filler}


@pytest.mark.parametrize(
    "error_info",
    [
        {"log": "x" * MAX_JSON_OBJECT_BYTES},
        # Multi-byte characters count as the bytes they take in UTF-8.
        {"log": "\u00e9" * (MAX_JSON_OBJECT_BYTES // 2)},
        # The case: thousands of small keys, just under the body limit.
        {f"k{number}": number for number in range(15_000)},
    ],
    ids=["one long string", "multi-byte", "many small keys"],
)
def test_error_info_over_the_size_limit_is_refused_with_json_too_large(http, execution, error_info):
    response = patch(http, execution.id, json.dumps({"status": "failed", "error_info": error_info}).encode())
    body = assert_validation_error(response, JSON_TOO_LARGE)
    assert body["detail"][0]["loc"] == ["body", "error_info"]
    assert body["detail"][0]["ctx"]["max_bytes"] == MAX_JSON_OBJECT_BYTES
    execution.refresh_from_db()
    assert execution.status == "running" and execution.error_info is None


@pytest.mark.parametrize(
    "error_info",
    [
        {"big": 10**30, "small": -(10**30), "tiny": 1e-300, "zero": -0.0},
        {"text": "line\u2028separator \U0001f680 \u202eright-to-left \ufeff", "empty": ""},
        {"deepest": json.loads(nested(MAX_JSON_DEPTH - 1))},
        {str(number): number for number in range(1000)},
    ],
    ids=["extreme numbers", "unusual unicode", "deepest allowed", "many keys"],
)
def test_unusual_but_valid_error_info_is_stored_as_sent(http, execution, error_info):
    body = json.dumps({"status": "failed", "error_info": error_info}).encode()
    response = patch(http, execution.id, body)
    assert response.status_code == 200, response.content[:500]
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_info == error_info
    assert ExecutionStatusChange.objects.get(execution=execution).error_info == error_info


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_json_in_other_unicode_encodings_is_read_as_fastapi_reads_it(http, execution, encoding):
    """json.loads detects UTF-16 and UTF-32 and skips a UTF-8 byte order mark, as it does
    under FastAPI; such a body means what it says, never something else."""
    body = '{"status": "failed", "error_info": {"why": "é"}}'.encode(encoding)
    response = patch(http, execution.id, body)
    assert response.status_code == 200
    execution.refresh_from_db()
    assert (execution.status, execution.error_info) == (ExecutionStatus.FAILED, {"why": "é"})


def test_duplicate_keys_take_the_last_value_as_json_does(http, execution):
    response = patch(http, execution.id, b'{"status": "failed", "status": "cancelled"}')
    assert response.status_code == 200
    assert response.json()["current_status"] == ExecutionStatus.CANCELLED


@pytest.mark.parametrize(
    "path",
    [
        "/api/",
        "/api/v1/",
        "/api/v1/executions/{execution_id}/",
        "/api/v1/executions/{execution_id}/%2e%2e/%2e%2e",
        "/api/v1/executions/{execution_id}/nothing/here",
        "/api/v2/executions/{execution_id}",
        "/api/%FF",
        "/api/" + "x/" * 2000,
    ],
)
def test_unknown_api_routes_get_json_404(http, execution, path):
    before = snapshot()
    response = http.generic(
        "PATCH",
        path.format(execution_id=execution.id),
        b'{"status": "cancelled"}',
        content_type="application/json",
    )
    assert_error(response, 404, ErrorCode.NOT_FOUND)
    assert snapshot() == before


@pytest.mark.parametrize("method", ["PUT", "DELETE", "TRACE", "BREW", "PROPFIND"])
def test_methods_the_resource_does_not_have_get_json_405(http, execution, method):
    before = snapshot()
    response = http.generic(
        method,
        f"/api/v1/executions/{execution.id}",
        b'{"status": "cancelled"}',
        content_type="application/json",
    )
    assert_error(response, 405, ErrorCode.METHOD_NOT_ALLOWED)
    assert snapshot() == before


@pytest.mark.parametrize(
    "query",
    [
        "x=" + "a" * 100_000,
        "&".join(f"p{number}=1" for number in range(2000)),
        "status=failed&status=completed",
        "%FF%FE=%00",
        "format=xml",
        "format=" + "a" * 1000,
    ],
    ids=["one huge", "too many", "repeated", "invalid UTF-8 and NUL", "unknown format", "huge format"],
)
def test_absurd_query_parameters_are_refused_or_ignored(http, execution, query):
    before = snapshot()
    response = patch(http, f"{execution.id}?{query}", b'{"status": "cancelled"}')
    if response.status_code == 200:
        # Ignored: the body alone decided, as if there were no query string.
        assert response.json()["current_status"] == ExecutionStatus.CANCELLED
        execution.refresh_from_db()
        assert execution.status == ExecutionStatus.CANCELLED
        return
    assert response.status_code in (400, 404), response.content[:300]
    assert_error(
        response,
        response.status_code,
        ErrorCode.BAD_REQUEST if response.status_code == 400 else ErrorCode.NOT_FOUND,
    )
    assert snapshot() == before


@pytest.mark.parametrize(
    "request_id",
    ["a\nb", "x" * 10_000, "evil\r\nX-Injected: 1", "\x00", "ünï", "", " padded "],
)
def test_hostile_request_ids_are_replaced_and_never_logged(http, execution, request_id, caplog):
    caplog.set_level(logging.INFO)
    response = patch(http, "nope", b'{"status": "cancelled"}', HTTP_X_REQUEST_ID=request_id)
    body = assert_error(response, 404, ErrorCode.EXECUTION_NOT_FOUND)
    assert body["correlation_id"] != request_id
    assert len(body["correlation_id"]) == 36
    assert caplog.records
    for record in caplog.records:
        assert record.correlation_id == body["correlation_id"]
        if request_id.strip():
            assert request_id not in record.getMessage()


def test_control_characters_in_the_path_are_escaped_in_the_request_log_line(http, caplog):
    caplog.set_level(logging.INFO)
    response = http.get("/api/v1/executions/x%0A2026-01-01 INFO forged line%1B[2J")
    assert_error(response, 404, ErrorCode.EXECUTION_NOT_FOUND)
    [line] = [record.getMessage() for record in caplog.records if record.name == "executions.request"]
    assert "\n" not in line and "\x1b" not in line
    assert "/api/v1/executions/x\\x0a2026-01-01 INFO forged line\\x1b[2J 404" in line


def test_a_plain_request_id_is_kept(http, execution):
    response = patch(http, "nope", b'{"status": "cancelled"}', HTTP_X_REQUEST_ID="job-42.retry:3")
    assert assert_error(response, 404, ErrorCode.EXECUTION_NOT_FOUND)["correlation_id"] == "job-42.retry:3"


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "image/png;q=1"])
def test_answers_are_json_whatever_the_client_accepts(http, execution, accept):
    before = snapshot()
    response = patch(http, execution.id, b'{"status": 1}', HTTP_ACCEPT=accept)
    assert response["Content-Type"] == "application/json"
    assert response.status_code in (406, 422)
    if response.status_code == 406:
        assert_error(response, 406, ErrorCode.NOT_ACCEPTABLE)
    assert snapshot() == before


# --- Every endpoint of the resource ---------------------------------------------------------

# (method, path with {execution_id} or not, a valid body or None)
ENDPOINTS = [
    ("PATCH", "/api/v1/executions/{execution_id}", b'{"status": "cancelled"}'),
    ("POST", "/api/v1/executions", b'{"name": "nightly"}'),
    ("POST", "/api/v1/executions/{execution_id}/heartbeat", None),
    ("GET", "/api/v1/executions/{execution_id}", None),
    ("GET", "/api/v1/executions/{execution_id}/history", None),
    ("GET", "/api/v1/executions", None),
]
ENDPOINT_IDS = [f"{method} {path}" for method, path, _ in ENDPOINTS]
WITH_ID = [endpoint for endpoint in ENDPOINTS if "{execution_id}" in endpoint[1]]
WITH_BODY = [endpoint for endpoint in ENDPOINTS if endpoint[2] is not None]


def call(
    client, endpoint, execution_id, body=None, content_type="application/json", path_suffix="", **headers
):
    method, path, valid_body = endpoint
    url = path.format(execution_id=execution_id) + path_suffix
    payload = valid_body if body is None else body
    return client.generic(method, url, payload or b"", content_type=content_type, **headers)


@pytest.mark.parametrize("endpoint", WITH_ID, ids=[f"{m} {p}" for m, p, _ in WITH_ID])
@pytest.mark.parametrize(
    "execution_id",
    [
        "a" * 10_000,
        "%00",
        "%FF%FE",
        "%ED%A0%80",
        "%C3%BC%C3%B1%C3%AF",
        "00000000-0000-0000-0000-000000000000",
        "{execution_id}%20",
        "{execution_id}%00",
        "'%20OR%201=1--",
        "-1",
        "1e400",
    ],
)
def test_absurd_ids_on_every_endpoint_are_not_found(http, execution, endpoint, execution_id):
    before = snapshot()
    response = call(http, endpoint, execution_id.format(execution_id=execution.id))
    assert_error(response, 404, ErrorCode.EXECUTION_NOT_FOUND)
    assert snapshot() == before


@pytest.mark.parametrize("endpoint", WITH_ID, ids=[f"{m} {p}" for m, p, _ in WITH_ID])
def test_someone_elses_execution_is_not_found_on_every_endpoint(http, endpoint, other_user):
    theirs = ExecutionFactory(created_by=other_user)
    before = snapshot()
    response = call(http, endpoint, theirs.id)
    assert_error(response, 404, ErrorCode.EXECUTION_NOT_FOUND)
    assert snapshot() == before


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=[f"{m} {p}" for m, p, _ in WITH_BODY])
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "",
        "json",
    ],
)
def test_wrong_content_types_on_every_body_get_415(http, execution, endpoint, content_type):
    before = snapshot()
    response = call(http, endpoint, execution.id, content_type=content_type)
    assert_error(response, 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    assert snapshot() == before


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=[f"{m} {p}" for m, p, _ in WITH_BODY])
def test_oversize_bodies_get_413_everywhere(http, execution, endpoint, settings):
    before = snapshot()
    body = b'{"x": "' + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"}'
    response = call(http, endpoint, execution.id, body=body)
    assert_error(response, 413, ErrorCode.PAYLOAD_TOO_LARGE)
    assert snapshot() == before


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=[f"{m} {p}" for m, p, _ in WITH_BODY])
@pytest.mark.parametrize(
    "body,error_type",
    [
        (b"null", "missing"),
        (b"[1]", "model_attributes_type"),
        (b'{"status": ', "json_invalid"),
        (b"\xff\xfe\xfd", "json_invalid"),
        (b"[" * 100_000 + b"]" * 100_000, "json_too_deep"),
        (b'{"a": NaN}', "json_invalid"),
        (b'{"a": 1e400}', "json_invalid"),
    ],
    ids=["null", "not an object", "truncated", "invalid UTF-8", "100k levels", "NaN", "float overflow"],
)
def test_malformed_bodies_get_422_everywhere(http, execution, endpoint, body, error_type):
    before = snapshot()
    response = call(http, endpoint, execution.id, body=body)
    assert_validation_error(response, error_type)
    assert snapshot() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ENDPOINT_IDS)
def test_more_query_parameters_than_django_takes_is_400_everywhere(http, execution, endpoint, settings):
    query = "?" + "&".join(f"p{number}=1" for number in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    before = snapshot()
    response = call(http, endpoint, execution.id, path_suffix=query)
    assert_error(response, 400, ErrorCode.BAD_REQUEST)
    assert snapshot() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ENDPOINT_IDS)
@pytest.mark.parametrize(
    "authorization",
    [
        "Token",
        "Token " + "x" * 10_000,
        "Token a b",
        "Token \x00\xff",
        "Bearer abc",
        "Basic Og==",
        "Token ' OR 1=1",
    ],
)
def test_absurd_credentials_get_401_everywhere(execution, endpoint, authorization):
    before = snapshot()
    response = call(
        Client(raise_request_exception=False), endpoint, execution.id, HTTP_AUTHORIZATION=authorization
    )
    assert response.status_code == 401
    assert response.json()["error_code"] in (ErrorCode.NOT_AUTHENTICATED, ErrorCode.AUTHENTICATION_FAILED)
    assert_error(response, 401, response.json()["error_code"])
    assert snapshot() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ENDPOINT_IDS)
def test_hostile_request_ids_are_replaced_everywhere(http, execution, endpoint):
    response = call(http, endpoint, "nope", HTTP_X_REQUEST_ID="evil\r\nX-Injected: 1")
    assert response["X-Request-ID"] != "evil\r\nX-Injected: 1"
    assert len(response["X-Request-ID"]) == 36


@pytest.mark.parametrize(
    "path,methods",
    [
        ("/api/v1/executions", ["PUT", "PATCH", "DELETE", "TRACE"]),
        ("/api/v1/executions/{execution_id}", ["PUT", "POST", "DELETE"]),
        ("/api/v1/executions/{execution_id}/heartbeat", ["GET", "PUT", "PATCH", "DELETE"]),
        ("/api/v1/executions/{execution_id}/history", ["POST", "PUT", "PATCH", "DELETE"]),
    ],
)
def test_methods_no_route_has_get_json_405(http, execution, path, methods):
    before = snapshot()
    for method in methods:
        response = http.generic(
            method, path.format(execution_id=execution.id), b"{}", content_type="application/json"
        )
        assert_error(response, 405, ErrorCode.METHOD_NOT_ALLOWED)
    assert snapshot() == before


# (id, body, 422 error type, its loc or None)
MALFORMED_CREATE_BODIES = [
    ("empty object", b"{}", "missing", ["body", "name"]),
    ("name null", b'{"name": null}', "string_type", ["body", "name"]),
    ("name number", b'{"name": 7}', "string_type", ["body", "name"]),
    ("name list", b'{"name": ["a"]}', "string_type", ["body", "name"]),
    ("name empty", b'{"name": ""}', "string_too_short", ["body", "name"]),
    ("name too long", json.dumps({"name": "x" * 201}).encode(), "string_too_long", ["body", "name"]),
    ("name NUL", b'{"name": "a\\u0000b"}', "string_unstorable", None),
    ("name lone surrogate", b'{"name": "\\udc00"}', "string_unicode", ["body", "name"]),
    ("metadata list", b'{"name": "a", "metadata": [1]}', "dict_type", ["body", "metadata"]),
    ("metadata null", b'{"name": "a", "metadata": null}', "dict_type", ["body", "metadata"]),
    ("metadata NUL key", b'{"name": "a", "metadata": {"\\u0000": 1}}', "string_unstorable", None),
    (
        "metadata deep",
        b'{"name": "a", "metadata": ' + nested(MAX_JSON_DEPTH + 5) + b"}",
        "json_too_deep",
        None,
    ),
    (
        "client sets the status",
        b'{"name": "a", "status": "completed"}',
        "extra_forbidden",
        ["body", "status"],
    ),
    (
        "client sets the id",
        b'{"name": "a", "id": "00000000-0000-0000-0000-000000000000"}',
        "extra_forbidden",
        ["body", "id"],
    ),
    (
        "client sets the owner",
        b'{"name": "a", "created_by": "root"}',
        "extra_forbidden",
        ["body", "created_by"],
    ),
]


@pytest.mark.parametrize(
    "body,error_type,loc",
    [case[1:] for case in MALFORMED_CREATE_BODIES],
    ids=[case[0] for case in MALFORMED_CREATE_BODIES],
)
def test_malformed_create_bodies_get_422_and_create_nothing(http, owner, body, error_type, loc):
    before = snapshot()
    response = http.generic("POST", "/api/v1/executions", body, content_type="application/json")
    assert_validation_error(response, error_type, loc)
    assert snapshot() == before


def test_create_stores_unusual_but_valid_values_as_sent(http, owner):
    name = "\u202eright-to-left \U0001f680 " + "x" * 180
    metadata = {"big": 10**30, "deepest": json.loads(nested(MAX_JSON_DEPTH - 2)), "sep": "\u2028"}
    response = http.generic(
        "POST",
        "/api/v1/executions",
        json.dumps({"name": name, "metadata": metadata}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content[:300]
    execution = Execution.objects.get(pk=response.json()["id"])
    assert (execution.name, execution.metadata, execution.created_by) == (name, metadata, owner)
    assert execution.status == ExecutionStatus.RUNNING


def test_a_heartbeat_ignores_any_body(http, execution):
    response = http.generic(
        "POST",
        f"/api/v1/executions/{execution.id}/heartbeat",
        b'{"status": "completed", "last_heartbeat_at": "1999-01-01T00:00:00Z"}',
        content_type="application/json",
    )
    assert response.status_code == 200
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.RUNNING
    assert execution.last_heartbeat_at.year > 2000


@pytest.mark.parametrize("page_size", ["0", "-1", "501", "99999999999999999999999", "NaN", "1e3", ""])
def test_absurd_page_sizes_get_422(http, execution, page_size):
    response = http.get(f"/api/v1/executions?page_size={page_size}")
    assert_validation_error(response, response.json()["detail"][0]["type"], None)
    assert response.json()["detail"][0]["loc"] == ["query", "page_size"]


LIST_PARAMETERS = [*ExecutionFilter.base_filters, *PageQuery.model_fields]
FEED_PARAMETERS = [*StatusChangeFilter.base_filters, *FeedQuery.model_fields]


@pytest.mark.parametrize(
    "url",
    [f"/api/v1/executions?{name}=" for name in LIST_PARAMETERS]
    + [f"/api/v1/status-changes?{name}=" for name in FEED_PARAMETERS],
)
def test_every_query_parameter_given_empty_gets_422(http, execution, url):
    """One rule: a parameter given with no value is a 422 `empty`, never a filter ignored
    (so "?name=" never returns everything) and never a type error of its own."""
    parameter = url.split("?")[1].rstrip("=")
    response = http.get(url)
    body = assert_validation_error(response, "empty", ["query", parameter])
    assert body["detail"] == [
        {
            "type": "empty",
            "loc": ["query", parameter],
            "msg": "Give a value, or leave the parameter out",
            "input": "",
        }
    ]


def test_an_empty_parameter_beside_valid_ones_is_still_422(http, execution):
    response = http.get("/api/v1/executions?status=running&name=&name_contains=job&name=x")
    body = assert_validation_error(response, "empty", ["query", "name"])
    assert [item["loc"] for item in body["detail"]] == [["query", "name"]]


def test_the_schema_allows_no_empty_text_in_query_parameters(http):
    """What the API refuses as empty the schema refuses too: every text query parameter has
    a minLength, a format or an enum that "" does not meet."""
    schema = http.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    checked = []
    for path in ("/api/v1/executions", "/api/v1/status-changes"):
        for parameter in schema["paths"][path]["get"]["parameters"]:
            value_schema = parameter["schema"]
            if value_schema.get("type") == "array":
                value_schema = value_schema["items"]
            if value_schema.get("type") != "string":
                continue
            checked.append(parameter["name"])
            assert (
                value_schema.get("minLength", 0) >= 1 or "enum" in value_schema or "format" in value_schema
            ), (path, parameter)
    assert {"name", "name_contains", "cursor", "after"} <= set(checked)
