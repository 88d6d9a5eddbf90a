"""What one execution, and one answer, may carry, so that no request costs a worker more than
a bounded amount of memory (docs/api.md: limits; tests/system/test_memory.py)."""

import json

from rest_framework.renderers import JSONRenderer

# `metadata` and `error_info` each take at most this many bytes as compact JSON (UTF-8): a
# small JSON text can be ~20 times larger as Python objects.
MAX_JSON_OBJECT_BYTES = 16 * 1024
# One page of the list or of the change feed takes at most this many bytes as sent, unless its
# one row is larger. Counted as the API renders it: every field of a row, and non-ASCII escaped
# (an emoji is one character in the database, 4 bytes in UTF-8, 12 bytes sent as \ud83d\ude00).
MAX_PAGE_BYTES = 1024 * 1024


def json_size(value) -> int:
    """Bytes of `value` as compact JSON in UTF-8, as MAX_JSON_OBJECT_BYTES counts them."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


_RENDERER = JSONRenderer()


def rendered_size(value) -> int:
    """Bytes of `value` in an answer, as the API's renderer (REST_FRAMEWORK's JSONRenderer,
    non-ASCII escaped) writes it, as MAX_PAGE_BYTES counts them."""
    return len(_RENDERER.render(value))
