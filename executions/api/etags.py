"""ETags of executions, and the If-Match header.

The ETag is strong and is the execution's `updated_at` in microseconds since the epoch:
every write (status change, heartbeat) moves `updated_at`, and the compare-and-set UPDATE
can check that column in its WHERE clause, so a conditional PATCH is one statement. Weak
tags (W/"...") never match If-Match, as RFC 9110 asks (strong comparison).
"""

import re
from datetime import UTC, datetime, timedelta

from django.utils.http import parse_etags

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_OUR_ETAG = re.compile(r'"(\d{1,19})"')

ANY = "*"


def etag_for(updated_at: datetime) -> str:
    return f'"{(updated_at - _EPOCH) // _MICROSECOND}"'


def expected_versions(if_match: str | None):
    """What an If-Match header allows: None when there is no header or it is `*` (any
    current version), else the list of `updated_at` values it names (empty when none of
    its tags is one of ours, so that nothing can match and the answer is 412)."""
    if if_match is None:
        return None
    tags = parse_etags(if_match)
    if tags == [ANY]:
        return None
    versions = []
    for tag in tags:
        match = _OUR_ETAG.fullmatch(tag)
        if match:
            try:
                versions.append(_EPOCH + int(match[1]) * _MICROSECOND)
            except OverflowError:
                pass
    return versions
