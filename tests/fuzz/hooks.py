"""schemathesis hooks for tests/system/test_fuzz_schema.py (loaded through SCHEMATHESIS_HOOKS).

They filter and rewrite nothing: they teach the generator the two formats of the API's own
that the schema names and JSON Schema cannot describe, its opaque cursors (a position the API
encoded: the lists' `cursor`, the change feed's `after`, encrypted under SECRET_KEY, which
the fuzzer's process shares with the live server through tests.settings; the deliveries'
`cursor`, a message id). Any other value is
the 422 cursor_invalid, as the schema's description says.
"""

import os
from datetime import UTC, datetime

import schemathesis
from hypothesis import strategies as st

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from executions.api.pagination import (  # noqa: E402
    FEED_CURSOR_FORMAT,
    ID_CURSOR_FORMAT,
    PAGE_CURSOR_FORMAT,
    encode_cursor,
    encode_feed_cursor,
    encode_id_cursor,
)

_BIGINT = st.integers(min_value=0, max_value=2**63 - 1)
_TIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))

schemathesis.openapi.format(PAGE_CURSOR_FORMAT, st.builds(encode_cursor, _TIMES, st.uuids()))
schemathesis.openapi.format(FEED_CURSOR_FORMAT, st.tuples(_BIGINT, _BIGINT).map(encode_feed_cursor))
schemathesis.openapi.format(ID_CURSOR_FORMAT, _BIGINT.map(encode_id_cursor))
