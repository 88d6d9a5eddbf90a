"""What one execution, and one answer, may carry, so that no request costs a worker more than
a bounded amount of memory (docs/api.md: limits; tests/system/test_memory.py)."""

import json

# `metadata` and `error_info` each take at most this many bytes as compact JSON (UTF-8): a
# small JSON text can be ~20 times larger as Python objects.
MAX_JSON_OBJECT_BYTES = 16 * 1024
# The JSON of `metadata` and `error_info` one list page carries at most.
MAX_PAGE_JSON_BYTES = 1024 * 1024


def json_size(value) -> int:
    """Bytes of `value` as compact JSON in UTF-8, as MAX_JSON_OBJECT_BYTES counts them."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
