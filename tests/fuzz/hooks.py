"""schemathesis hooks for tests/system/test_fuzz_schema.py (loaded through SCHEMATHESIS_HOOKS).

- Generated execution ids would almost never exist, so every case would end at 404. Three
  in four are replaced by an id from FUZZ_EXECUTION_IDS (executions the test created), so
  that schema-valid and schema-invalid requests reach real executions. The choice is a hash
  of the generated id and body, so that replaying a case picks the same execution.
- Schema-valid (positive) cases are kept within what the contract says and JSON Schema
  cannot: `error_info` only with status `failed` (422 otherwise), and a list `cursor` only
  as the API hands it out (an opaque token; anything else is 422 `cursor_invalid`): a
  generated one is dropped, one the stateful phase took from a `next_cursor` is kept (the
  same for the change feed's `after`). An `Idempotency-Key` is made a hash of the generated
  key and the body: a key reused with another body is the contract's 422
  IDEMPOTENCY_KEY_REUSED, which JSON Schema cannot foresee, while a repeated request still
  replays. A `metadata` or `error_info` over the API's byte limit (422 `json_too_large`) is
  dropped. Monitors likewise: three in four generated monitor ids are replaced by one from
  FUZZ_MONITOR_IDS; in positive cases a `schedule` or `timezone` that is not one (422
  `schedule_invalid`, `timezone_invalid`: cron's grammar and the zone database are beyond
  JSON Schema) is replaced by a valid one on create and dropped on update, and an execution's
  `monitor` is one of FUZZ_MONITOR_NAMES (any other is 422 `monitor_unknown`). Negative cases
  are left alone.
- Notification endpoints: an endpoint_id (and a message_id with it) is, three times in four,
  one of FUZZ_NOTIFICATION_IDS ("endpoint:webhook-id" pairs the test made). Positive creates
  get the target their kind takes (a URL for webhook and slack, addresses for email: which
  one, JSON Schema cannot say), positive updates change neither (the endpoint's kind is not
  in the request), and no positive body names a monitor (the monitors' names are the
  executions'). Negative cases are left alone.
"""

import hashlib
import json
import os
import zlib
from datetime import UTC, datetime

import schemathesis

from executions.api.idempotency import IDEMPOTENCY_KEY_HEADER
from executions.api.limits import MAX_JSON_OBJECT_BYTES, json_size
from executions.api.pagination import decode_cursor, decode_feed_cursor

EXECUTION_IDS = os.environ.get("FUZZ_EXECUTION_IDS", "").split()
NOTIFICATION_IDS = os.environ.get("FUZZ_NOTIFICATION_IDS", "").split()
ENDPOINTS_PATH = "/api/v1/notification-endpoints"
MONITOR_IDS = os.environ.get("FUZZ_MONITOR_IDS", "").split()
MONITOR_NAMES = os.environ.get("FUZZ_MONITOR_NAMES", "").split()


def _pick(generated, choices: list[str]) -> str | None:
    """One of `choices` for three in four cases, by a hash of `generated` (replays pick the same)."""
    number = zlib.crc32(json.dumps(generated, sort_keys=True, default=str).encode("utf-8", "surrogatepass"))
    return choices[number % len(choices)] if choices and number % 4 else None


@schemathesis.hook
def map_case(context, case):
    path_parameters = case.path_parameters or {}
    if "execution_id" in path_parameters and EXECUTION_IDS:
        generated = json.dumps([path_parameters["execution_id"], case.body], sort_keys=True, default=str)
        number = zlib.crc32(generated.encode("utf-8", "surrogatepass"))
        if number % 4:
            path_parameters["execution_id"] = EXECUTION_IDS[number % len(EXECUTION_IDS)]

    if "endpoint_id" in path_parameters:
        chosen = _pick([path_parameters, case.body], NOTIFICATION_IDS)
        if chosen is not None:
            endpoint_id, message_id = chosen.split(":")
            path_parameters["endpoint_id"] = endpoint_id
            if "message_id" in path_parameters:
                path_parameters["message_id"] = message_id

    if "monitor_id" in path_parameters:
        chosen = _pick([path_parameters["monitor_id"], case.body], MONITOR_IDS)
        if chosen is not None:
            path_parameters["monitor_id"] = chosen

    if case.meta is not None and not case.meta.generation.mode.is_positive:
        return case
    if isinstance(case.body, dict):
        _keep_monitor_fields_valid(case)
    _notification_body(case)
    if isinstance(case.body, dict) and case.body.get("status") != "failed":
        if case.body.get("error_info") is not None:
            del case.body["error_info"]
    if isinstance(case.body, dict):
        for field in ("metadata", "error_info"):
            if isinstance(case.body.get(field), dict) and json_size(case.body[field]) > MAX_JSON_OBJECT_BYTES:
                del case.body[field]
    if case.query and "cursor" in case.query and not _is_api_cursor(case.query["cursor"]):
        del case.query["cursor"]
    if case.query and "after" in case.query and not _is_api_cursor(case.query["after"], decode_feed_cursor):
        del case.query["after"]
    if case.headers and IDEMPOTENCY_KEY_HEADER in case.headers:
        generated = json.dumps([case.headers[IDEMPOTENCY_KEY_HEADER], case.body], sort_keys=True, default=str)
        case.headers[IDEMPOTENCY_KEY_HEADER] = hashlib.sha256(
            generated.encode("utf-8", "surrogatepass")
        ).hexdigest()
    return case


def _is_api_cursor(value, decode=decode_cursor) -> bool:
    try:
        decode(str(value))
    except (ValueError, OverflowError):
        return False
    return True


def _notification_body(case) -> None:
    path, body = case.operation.path, case.body
    if not isinstance(body, dict):
        return
    if path == ENDPOINTS_PATH and case.method.upper() == "POST":
        body.pop("monitor", None)
        if body.get("kind") == "email":
            body.pop("url", None)
            body["emails"] = ["fuzz@example.com"]
        elif body.get("kind") in ("webhook", "slack"):
            body.pop("emails", None)
            body["url"] = "https://hooks.example.com/fuzz"
    elif path == ENDPOINTS_PATH + "/{endpoint_id}" and case.method.upper() == "PATCH":
        for field in ("url", "emails", "monitor"):
            body.pop(field, None)
    elif path == ENDPOINTS_PATH + "/{endpoint_id}/replay" and "since" in body:
        # A time the API can compare in UTC (an offset that takes year 1 before year 1 is not).
        try:
            datetime.fromisoformat(str(body["since"])).astimezone(UTC)
        except (ValueError, OverflowError):
            body["since"] = "2026-01-01T00:00:00Z"


def _keep_monitor_fields_valid(case) -> None:
    from executions.monitors.schedules import ScheduleError, check_timezone, parse_schedule

    creating = case.method.upper() == "POST"
    if case.path.endswith("/monitors"):
        for field, check, valid in (
            ("schedule", parse_schedule, "every 1h"),
            ("timezone", check_timezone, "UTC"),
        ):
            if field not in case.body:
                continue
            try:
                check(case.body[field])
            except (ScheduleError, TypeError):
                if creating:
                    case.body[field] = valid
                else:
                    del case.body[field]
    elif case.path.endswith("/monitors/{monitor_id}"):
        for field, check in (("schedule", parse_schedule), ("timezone", check_timezone)):
            if field in case.body:
                try:
                    check(case.body[field])
                except (ScheduleError, TypeError):
                    del case.body[field]
    elif case.path.endswith("/executions") and case.body.get("monitor") is not None:
        chosen = _pick([case.body["monitor"], case.body.get("name")], MONITOR_NAMES)
        if chosen is None:
            del case.body["monitor"]
        else:
            case.body["monitor"] = chosen
