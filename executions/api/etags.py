"""ETags of executions, and the If-Match header.

The ETag is strong and is the execution's `updated_at` in microseconds since the epoch:
every write (status change, heartbeat) moves `updated_at`, and the compare-and-set UPDATE
can check that column in its WHERE clause, so a conditional PATCH is one statement. Weak
tags (W/"...") never match If-Match, as RFC 9110 asks (strong comparison). An If-Match that
is not "*" or a list of entity tags at all (empty, a quote left open) is no condition anyone
can mean: a 422 located in the header, as the schema's pattern says, not a 412.
"""

import re
from datetime import UTC, datetime, timedelta

from django.utils.http import parse_etags

from .validation import RequestValidationError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_OUR_ETAG = re.compile(r'"(\d{1,19})"')

ANY = "*"
IF_MATCH_HEADER = "If-Match"
# RFC 9110: "*", or one or more entity tags (W/ marks a weak one), separated by commas. A
# tag without its quotes is read too, as a tag of no version of ours (412).
_ENTITY_TAG = '(W/)?("[!#-~]*"|[!#-+\\--~]+)'
IF_MATCH_PATTERN = f"^(\\*|{_ENTITY_TAG}( *, *{_ENTITY_TAG})*)$"
IF_MATCH_INVALID = "if_match_invalid"


def etag_for(updated_at: datetime) -> str:
    return f'"{(updated_at - _EPOCH) // _MICROSECOND}"'


def expected_versions(if_match: str | None):
    """What an If-Match header allows: None when there is no header or it is `*` (any
    current version), else the list of `updated_at` values it names (empty when none of
    its tags is one of ours, so that nothing can match and the answer is 412). Raises
    RequestValidationError (422) for a value that is not If-Match's syntax."""
    if if_match is None:
        return None
    if not re.fullmatch(IF_MATCH_PATTERN, if_match):
        raise RequestValidationError(
            [
                {
                    "type": IF_MATCH_INVALID,
                    "loc": ["header", IF_MATCH_HEADER],
                    "msg": 'If-Match must be * or a list of entity tags ("..." or W/"...")',
                    "input": if_match,
                }
            ]
        )
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
