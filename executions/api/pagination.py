"""Keyset ("cursor") pagination over executions, newest first.

A page is `ORDER BY created_at DESC, id DESC LIMIT n` after the last row of the previous
page, so page 10,000 costs what page 1 costs (an index range scan, no OFFSET). The cursor
carries both fields of the last row: rows created in the same microsecond are ordered by
id, and none is skipped or repeated, whatever is inserted meanwhile.

A page also ends early, with a next_cursor, where the answer would pass MAX_PAGE_BYTES as
sent (its rows measured as the API renders them), so that one request costs a worker, and a
client, a bounded amount of memory whatever the rows hold; a page always has at least one
row. The change feed's pages are bounded the same way (page_within_budget).
"""

import base64
import binascii
import functools
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from django.conf import settings
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast, Coalesce, Length
from django.utils.crypto import salted_hmac
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from .limits import MAX_PAGE_BYTES, rendered_size

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
CURSOR_PARAMETER = "cursor"
# The schema's formats of the two cursors: valid when the API made one, which no pattern can
# say (tests/fuzz/hooks.py teaches them to the fuzzer).
PAGE_CURSOR_FORMAT = "executions-page-cursor"
FEED_CURSOR_FORMAT = "executions-feed-cursor"
ID_CURSOR_FORMAT = "executions-id-cursor"
PAGE_SIZE_PARAMETER = "page_size"
_MAX_BIGINT = 2**63 - 1


def encode_cursor(created_at: datetime, execution_id: uuid.UUID) -> str:
    text = f"{created_at.isoformat()}|{execution_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# The longest cursor encode_cursor makes (a time with microseconds), for a page's budget.
LONGEST_CURSOR = len(encode_cursor(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), uuid.UUID(int=0)))


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


def page_within_budget(
    ordered: QuerySet,
    *,
    page_size: int,
    position_fields: list[str],
    json_fields: list[str],
    item: Callable[[Any], dict],
    budget_bytes: int,
) -> tuple[list[dict], tuple | None, bool]:
    """`item(row)` of the first rows of `ordered`: at most `page_size`, fewer once their items
    as rendered (rendered_size, a comma each) would pass `budget_bytes`, never none while there
    is a row. Returns (items, the values of `position_fields` of the last row taken or None,
    whether more rows follow).

    Positions and the length of each row's stored `json_fields` are read first, in a query
    that carries no JSON to the process. Rows are then loaded a few at a time, as many as
    those lengths say fit in what is left of the budget (at least one), and measured as
    rendered: stored text tells little of what is sent (escapes, numbers spelt otherwise, the
    other fields), so a worker holds at most the budget's rows and one more."""
    stored_size = sum((_json_size(field) for field in json_fields[1:]), _json_size(json_fields[0]))
    candidates = list(
        ordered.prefetch_related(None)
        .annotate(stored_size=stored_size)
        .values_list("pk", *position_fields, "stored_size")[: page_size + 1]
    )
    taking = candidates[:page_size]
    items, last, used, start = [], None, 0, 0
    while start < len(taking):
        end, expected = start + 1, taking[start][-1]
        while end < len(taking) and used + expected + taking[end][-1] <= budget_bytes:
            expected += taking[end][-1]
            end += 1
        chunk = taking[start:end]
        rows = _rows_by_key(ordered, [pk for pk, *_ in chunk])
        for pk, *position, _ in chunk:
            row = rows.pop(pk, None)  # let go of each row once it is an item
            if row is not None:  # else deleted since it was counted: passed over
                rendered = item(row)
                size = rendered_size(rendered) + 1
                if items and used + size > budget_bytes:
                    return items, last, True
                items.append(rendered)
                used += size
            last = tuple(position)
        start = end
    return items, last, len(candidates) > page_size


def _rows_by_key(ordered: QuerySet, keys: list) -> dict:
    """The rows of `keys`, by primary key alone (they passed `ordered`'s conditions in the
    query that found them), with `ordered`'s related rows. Filtering `ordered` itself by the
    keys let PostgreSQL's planner walk the position's index from the position on and test
    each entry against the keys: 99,000 entries for a feed page in the middle of 200,000
    records written by one transaction (a bulk change), 65 ms instead of 0.1 (bench/scale.py)."""
    by_key = ordered.model._default_manager.filter(pk__in=keys)
    by_key.query.select_related = ordered.query.select_related
    return {row.pk: row for row in by_key.prefetch_related(*ordered._prefetch_related_lookups)}


def newest_first_page(
    rows: QuerySet,
    *,
    page_size: int,
    cursor: str | None,
    item: Callable[[Any], dict],
    next_url: Callable[[str], str] | None = None,
    json_fields: tuple[str, ...] = ("metadata", "error_info"),
) -> dict:
    """One page of `rows` (executions, or any model with `created_at` and a UUID `id`), newest
    first, after `cursor`, as a list answers it: `results` (`item(row)` of each) and
    `next_cursor` (None on the last page), and with `next_url`, `next` (`next_url(next_cursor)`).
    At most `page_size` rows, fewer where the answer would pass MAX_PAGE_BYTES."""
    rows = rows.order_by("-created_at", "-id")
    if cursor is not None:
        created_at, row_id = decode_cursor(cursor)
        # The first condition is implied by the second; it is there for the planner, which
        # then scans the index from the cursor on instead of filtering from its start.
        rows = rows.filter(created_at__lte=created_at).filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=row_id)
        )
    longest = "A" * LONGEST_CURSOR
    envelope = {"results": [], "next_cursor": longest}
    if next_url is not None:
        envelope["next"] = next_url(longest)
    items, last, has_more = page_within_budget(
        rows,
        page_size=page_size,
        position_fields=["created_at", "id"],
        json_fields=list(json_fields),
        item=item,
        budget_bytes=MAX_PAGE_BYTES - rendered_size(envelope),
    )
    next_cursor = encode_cursor(*last) if has_more else None
    page = {"results": items, "next_cursor": next_cursor}
    if next_url is not None:
        page["next"] = None if next_cursor is None else next_url(next_cursor)
    return page


# --- Cursors over an integer id, newest (highest) first ---------------------------------


def encode_id_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(str(row_id).encode()).decode().rstrip("=")


def decode_id_cursor(cursor: str) -> int:
    """The id a cursor of encode_id_cursor names; ValueError for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not base64 text") from None
    if not (text.isascii() and text.isdigit()) or int(text) > _MAX_BIGINT:
        raise ValueError("not an id")
    return int(text)


class IdPageQuery(BaseModel):
    """The paging parameters of a list ordered by an integer id, newest first."""

    model_config = ConfigDict(extra="ignore")

    cursor: str | None = None
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)

    @field_validator("cursor")
    @classmethod
    def cursor_decodes(cls, cursor):
        return _checked_cursor(cursor, decode_id_cursor)


def newest_id_first_page(
    rows: QuerySet, *, page_size: int, cursor: str | None, item: Callable[[Any], dict], json_fields: list[str]
) -> dict:
    """One page of `rows`, highest id first, after `cursor`: `results` (`item(row)` of each)
    and `next_cursor` (None on the last page); at most `page_size` rows, fewer where the
    answer would pass MAX_PAGE_BYTES."""
    rows = rows.order_by("-id")
    if cursor is not None:
        rows = rows.filter(id__lt=decode_id_cursor(cursor))
    longest = encode_id_cursor(_MAX_BIGINT)
    around = rendered_size({"results": [], "next_cursor": longest})
    items, last, has_more = page_within_budget(
        rows,
        page_size=page_size,
        position_fields=["id"],
        json_fields=json_fields,
        item=item,
        budget_bytes=MAX_PAGE_BYTES - around,
    )
    return {"results": items, "next_cursor": encode_id_cursor(last[0]) if has_more else None}


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


def feed_page(
    changes: QuerySet, *, after: tuple[int, int], page_size: int, item: Callable[[Any], dict]
) -> dict:
    """One page of the change feed as it answers it: `results` (`item(change)` of the first of
    `changes`, those after the position `after`, in feed order), `next_cursor` (always) and
    `has_more`. At most `page_size` changes, fewer where the answer would pass MAX_PAGE_BYTES."""
    around = rendered_size({"results": [], "next_cursor": "A" * FEED_CURSOR_LENGTH, "has_more": False})
    items, last, has_more = page_within_budget(
        changes,
        page_size=page_size,
        position_fields=["transaction_id", "id"],
        json_fields=["error_info"],
        item=item,
        budget_bytes=MAX_PAGE_BYTES - around,
    )
    return {"results": items, "next_cursor": encode_feed_cursor(last or after), "has_more": has_more}
