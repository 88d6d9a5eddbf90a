"""The Idempotency-Key header of POST /api/v1/executions, and what tells a retry from a reuse."""

import hashlib
import json
from typing import Annotated

import pydantic
from pydantic import BaseModel
from pydantic_core import PydanticCustomError

from .validation import RequestValidationError, validation_items

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# FastAPI's location for a header parameter: ["header", its name in lower case].
_LOCATION = ["header", IDEMPOTENCY_KEY_HEADER.lower()]


def _visible_ascii(key: str) -> str:
    # What any client can send unchanged in a header and any log can show: no spaces, no
    # control characters, nothing that HTTP libraries re-encode.
    if not all("\x21" <= char <= "\x7e" for char in key):
        raise PydanticCustomError(
            "idempotency_key_characters",
            "Use only visible ASCII characters (no spaces or control characters)",
        )
    return key


_IdempotencyKey = pydantic.TypeAdapter(
    Annotated[
        str,
        pydantic.StringConstraints(min_length=1, max_length=MAX_IDEMPOTENCY_KEY_LENGTH),
        pydantic.AfterValidator(_visible_ascii),
    ]
)


def parse_idempotency_key(headers) -> str | None:
    """The request's Idempotency-Key, None without one, or a 422 located in the header."""
    key = headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is None:
        return None
    try:
        return _IdempotencyKey.validate_python(key)
    except pydantic.ValidationError as exc:
        errors = validation_items(exc, "header")
        for error in errors:
            error["loc"] = _LOCATION
        raise RequestValidationError(errors) from None


def request_fingerprint(body: BaseModel) -> str:
    """SHA-256 of the validated body in a canonical form: the same request however its JSON
    is spelt (key order, spaces, an omitted field that has a default). An optional field left
    out or null is not part of it, so that a field added in a later version (max_runtime_seconds)
    leaves the fingerprints kept for earlier requests as they were."""
    canonical = json.dumps(
        body.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
