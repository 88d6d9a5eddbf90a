"""Keyset ("cursor") pagination over executions, newest first.

A page is `ORDER BY created_at DESC, id DESC LIMIT n` after the last row of the previous
page, so page 10,000 costs what page 1 costs (an index range scan, no OFFSET). The cursor
carries both fields of the last row: rows created in the same microsecond are ordered by
id, and none is skipped or repeated, whatever is inserted meanwhile.

A page also ends early, with a next_cursor, once its rows' `metadata` and `error_info` add
up to MAX_PAGE_JSON_BYTES (as the database measures their JSON text), so that one request
costs a worker a bounded amount of memory whatever the rows hold; a page always has at least
one row. The change feed's pages are bounded the same way (page_within_json_budget).
"""

import base64
import binascii
import functools
import struct
import uuid
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from django.conf import settings
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast, Coalesce, Length
from django.utils.crypto import salted_hmac
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from .limits import MAX_PAGE_JSON_BYTES

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
CURSOR_PARAMETER = "cursor"
# The schema's formats of the two cursors: valid when the API made one, which no pattern can
# say (tests/fuzz/hooks.py teaches them to the fuzzer).
PAGE_CURSOR_FORMAT = "executions-page-cursor"
FEED_CURSOR_FORMAT = "executions-feed-cursor"
PAGE_SIZE_PARAMETER = "page_size"


def encode_cursor(created_at: datetime, execution_id: uuid.UUID) -> str:
    text = f"{created_at.isoformat()}|{execution_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names. Raises ValueError for anything encode_cursor did not make."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not base64 text") from None
    created_at_text, _, id_text = text.partition("|")
    created_at = datetime.fromisoformat(created_at_text)
    if created_at.tzinfo is None:
        raise ValueError("no time zone")
    # In UTC, as encode_cursor writes it; may raise OverflowError near year 1 or 9999.
    return created_at.astimezone(UTC), uuid.UUID(id_text)


class PageQuery(BaseModel):
    """The pagination query parameters (filters are the FilterSet's)."""

    model_config = ConfigDict(extra="ignore")

    cursor: str | None = None
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)

    @field_validator("cursor")
    @classmethod
    def cursor_decodes(cls, cursor):
        return _checked_cursor(cursor, decode_cursor)


def _checked_cursor(cursor: str | None, decode) -> str | None:
    """`cursor` as given, if `decode` takes it (or it is absent); else the 422 item
    `cursor_invalid`, for the list's cursor and the feed's alike."""
    if cursor is not None:
        try:
            decode(cursor)
        except (ValueError, OverflowError):
            raise PydanticCustomError(
                "cursor_invalid", "Invalid cursor: use a next_cursor the API returned"
            ) from None
    return cursor


def _json_size(field: str):
    return Coalesce(Length(Cast(field, TextField())), 0)


def page_within_json_budget(
    ordered: QuerySet, *, page_size: int, position_fields: list[str], json_fields: list[str]
):
    """The first rows of `ordered`: at most `page_size`, fewer once their `json_fields` add up
    to MAX_PAGE_JSON_BYTES, never none while there is one. Returns (rows, the values of
    `position_fields` of the last row given or None, whether more rows follow).

    The sizes are read first, with the positions, in a query that carries no JSON to the
    process; then the rows that fit, by primary key."""
    json_size = sum((_json_size(field) for field in json_fields[1:]), _json_size(json_fields[0]))
    candidates = (
        ordered.prefetch_related(None)
        .annotate(json_size=json_size)
        .values_list("pk", *position_fields, "json_size")[: page_size + 1]
    )
    kept, page_bytes, has_more = [], 0, False
    for pk, *position, size in candidates:
        if len(kept) == page_size or (kept and page_bytes + size > MAX_PAGE_JSON_BYTES):
            has_more = True
            break
        kept.append((pk, tuple(position)))
        page_bytes += size
    rows = list(ordered.filter(pk__in=[pk for pk, _ in kept]))
    return rows, (kept[-1][1] if kept else None), has_more


def newest_first_page(executions: QuerySet, *, page_size: int, cursor: str | None):
    """One page of `executions`, newest first, after `cursor`: (rows, next_cursor or None).
    At most `page_size` rows, fewer when their JSON passes MAX_PAGE_JSON_BYTES."""
    executions = executions.order_by("-created_at", "-id")
    if cursor is not None:
        created_at, execution_id = decode_cursor(cursor)
        # The first condition is implied by the second; it is there for the planner, which
        # then scans the index from the cursor on instead of filtering from its start.
        executions = executions.filter(created_at__lte=created_at).filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=execution_id)
        )
    rows, last, has_more = page_within_json_budget(
        executions,
        page_size=page_size,
        position_fields=["created_at", "id"],
        json_fields=["metadata", "error_info"],
    )
    return rows, (encode_cursor(*last) if has_more else None)


# --- The change feed's cursor ----------------------------------------------------------
#
# A feed position is (transaction_id, id): two counters of the whole system (how many
# transactions and status changes there have been), which a plain user has no business
# learning. Its cursor is that position encrypted, with AES-SIV (RFC 5297: deterministic
# authenticated encryption) under a key derived from SECRET_KEY: it tells nothing of what it
# holds, a changed cursor never decodes (422 cursor_invalid), and one position always gives
# the same cursor, so an idle poller is handed back the very cursor it sent. Cursors made
# under a key in SECRET_KEY_FALLBACKS keep working while the key rotates.

AFTER_PARAMETER = "after"
_MAX_BIGINT = 2**63 - 1
_FEED_POSITION = struct.Struct(">QQ")
_FEED_CURSOR_KEY_SALT = "executions.api.pagination.feed-cursor"
# 16 bytes of position and 16 of SIV tag, in base64url without padding.
FEED_CURSOR_LENGTH = 43


@functools.lru_cache(maxsize=8)
def _feed_cursor_cipher(secret: str) -> AESSIV:
    # 64 bytes: AES-256-SIV. A key of its own, so no other use of SECRET_KEY shares it.
    key = salted_hmac(_FEED_CURSOR_KEY_SALT, "feed cursor", secret=secret, algorithm="sha512").digest()
    return AESSIV(key)


def encode_feed_cursor(position: tuple[int, int]) -> str:
    """The opaque cursor of a feed position (transaction_id, id)."""
    sealed = _feed_cursor_cipher(settings.SECRET_KEY).encrypt(_FEED_POSITION.pack(*position), None)
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def decode_feed_cursor(cursor: str) -> tuple[int, int]:
    """The position a feed cursor names. Raises ValueError for anything encode_feed_cursor
    did not make with SECRET_KEY or one of SECRET_KEY_FALLBACKS."""
    if len(cursor) != FEED_CURSOR_LENGTH or not cursor.isascii():
        raise ValueError("not a feed cursor")
    try:
        sealed = base64.urlsafe_b64decode(cursor + "=")
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    # The last character carries two bits that decoding ignores: one cursor, one spelling.
    if base64.urlsafe_b64encode(sealed).decode().rstrip("=") != cursor:
        raise ValueError("not the cursor's own spelling")
    for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS):
        try:
            position = _FEED_POSITION.unpack(_feed_cursor_cipher(secret).decrypt(sealed, None))
        except InvalidTag:
            continue
        if max(position) > _MAX_BIGINT:
            raise ValueError("out of range")
        return position
    raise ValueError("not made by this service")


class FeedQuery(BaseModel):
    """The change feed's paging parameters (filters are the FilterSet's)."""

    model_config = ConfigDict(extra="ignore")

    after: str | None = None
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)

    @field_validator("after")
    @classmethod
    def cursor_decodes(cls, cursor):
        return _checked_cursor(cursor, decode_feed_cursor)
