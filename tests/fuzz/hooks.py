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
  dropped. Negative cases are left alone.
"""

import hashlib
import json
import os
import zlib

import schemathesis

from executions.api.idempotency import IDEMPOTENCY_KEY_HEADER
from executions.api.limits import MAX_JSON_OBJECT_BYTES, json_size
from executions.api.pagination import decode_cursor, decode_feed_cursor

EXECUTION_IDS = os.environ.get("FUZZ_EXECUTION_IDS", "").split()


@schemathesis.hook
def map_case(context, case):
    path_parameters = case.path_parameters or {}
    if "execution_id" in path_parameters and EXECUTION_IDS:
        generated = json.dumps([path_parameters["execution_id"], case.body], sort_keys=True, default=str)
        number = zlib.crc32(generated.encode("utf-8", "surrogatepass"))
        if number % 4:
            path_parameters["execution_id"] = EXECUTION_IDS[number % len(EXECUTION_IDS)]

    if case.meta is not None and not case.meta.generation.mode.is_positive:
        return case
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
