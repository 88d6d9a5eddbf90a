"""Keyset ("cursor") pagination over executions, newest first.

A page is `ORDER BY created_at DESC, id DESC LIMIT n` after the last row of the previous
page, so page 10,000 costs what page 1 costs (an index range scan, no OFFSET). The cursor
carries both fields of the last row: rows created in the same microsecond are ordered by
id, and none is skipped or repeated, whatever is inserted meanwhile.

A page also ends early, with a next_cursor, once its rows' `metadata` and `error_info` add
up to MAX_PAGE_JSON_BYTES (as the database measures their JSON text), so that one request
costs a worker a bounded amount of memory whatever the rows hold; a page always has at least
one row. The sizes are read first, in a query that carries no row's JSON to the process.
"""

import base64
import binascii
import uuid
from datetime import datetime, timezone

from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast, Coalesce, Length
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from .limits import MAX_PAGE_JSON_BYTES

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
CURSOR_PARAMETER = "cursor"
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
    return created_at.astimezone(timezone.utc), uuid.UUID(id_text)


class PageQuery(BaseModel):
    """The pagination query parameters (filters are the FilterSet's)."""

    model_config = ConfigDict(extra="ignore")

    cursor: str | None = None
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)

    @field_validator("cursor")
    @classmethod
    def cursor_decodes(cls, cursor):
        if cursor is not None:
            try:
                decode_cursor(cursor)
            except (ValueError, OverflowError):
                raise PydanticCustomError(
                    "cursor_invalid", "Invalid cursor: use a next_cursor the API returned"
                ) from None
        return cursor


def _json_size(field: str):
    return Coalesce(Length(Cast(field, TextField())), 0)


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
    candidates = (
        executions.prefetch_related(None)
        .annotate(json_size=_json_size("metadata") + _json_size("error_info"))
        .values_list("pk", "created_at", "json_size")[: page_size + 1]
    )
    page, page_bytes = [], 0
    for pk, created_at, json_size in candidates:
        if len(page) == page_size or (page and page_bytes + json_size > MAX_PAGE_JSON_BYTES):
            last_pk, last_created_at = page[-1]
            next_cursor = encode_cursor(last_created_at, last_pk)
            break
        page.append((pk, created_at))
        page_bytes += json_size
    else:
        next_cursor = None
    rows = list(executions.filter(pk__in=[pk for pk, _ in page]))
    return rows, next_cursor
