"""schemathesis hooks for tests/test_fuzz_schema.py (loaded through SCHEMATHESIS_HOOKS).

- Generated execution ids would almost never exist, so every case would end at 404. Three
  in four are replaced by an id from FUZZ_EXECUTION_IDS (executions the test created), so
  that schema-valid and schema-invalid bodies reach real executions. The choice is a hash
  of the generated id and body, so that replaying a case picks the same execution.
- The contract accepts `error_info` only with status `failed` (422 otherwise), which the
  request schema, the reference's, does not say. Schema-valid (positive) cases drop it for
  the other statuses; negative cases are left as they are.
"""

import json
import os
import zlib

import schemathesis

EXECUTION_IDS = os.environ.get("FUZZ_EXECUTION_IDS", "").split()


@schemathesis.hook
def map_case(context, case):
    path_parameters = case.path_parameters or {}
    if "execution_id" in path_parameters and EXECUTION_IDS:
        generated = json.dumps([path_parameters["execution_id"], case.body], sort_keys=True, default=str)
        number = zlib.crc32(generated.encode("utf-8", "surrogatepass"))
        if number % 4:
            path_parameters["execution_id"] = EXECUTION_IDS[number % len(EXECUTION_IDS)]
    positive = case.meta is None or case.meta.generation.mode.is_positive
    if positive and isinstance(case.body, dict) and case.body.get("status") != "failed":
        if case.body.get("error_info") is not None:
            del case.body["error_info"]
    return case
