"""The API's request and response bodies, as pydantic models.

pydantic does two jobs here: it validates request bodies with exactly the error items the
contract asks for (FastAPI's, which are pydantic's), and drf-spectacular renders these
classes into the OpenAPI components of the same names. Class docstrings become the schema
descriptions, so they are kept to the one sentence the contract shows.
"""

import math
from datetime import datetime, timezone
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError

from ..models import ExecutionStatus

# Deeper JSON than this is refused: nobody needs it, and it is how recursion limits are hit.
MAX_JSON_DEPTH = 32

StatusValue = Literal["running", "completed", "failed", "cancelled", "interrupted"]
assert set(StatusValue.__args__) == set(ExecutionStatus.values)


def _drop_property_defaults(schema: dict[str, Any]) -> None:
    # The reference documents optional fields without a "default"; pydantic adds one.
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


class _Body(BaseModel):
    model_config = ConfigDict(json_schema_extra=_drop_property_defaults)


def _check_storable(value: Any, depth: int = 0) -> None:
    """Refuse JSON that a database column cannot hold the same on SQLite and PostgreSQL."""
    if depth > MAX_JSON_DEPTH:
        raise PydanticCustomError(
            "json_too_deep", "JSON may nest at most {max_depth} levels", {"max_depth": MAX_JSON_DEPTH}
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, depth + 1)
            _check_storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item, depth + 1)
    elif isinstance(value, str):
        if "\x00" in value or any("\ud800" <= char <= "\udfff" for char in value):
            raise PydanticCustomError(
                "string_unstorable",
                "Strings may not contain NUL (\\u0000) or unpaired surrogate characters",
            )
    elif isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "Input should be a finite number")


class ExecutionStatusUpdateRequest(_Body):
    """Request to update execution status."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_drop_property_defaults)

    status: Literal["cancelled", "failed", "completed"] = Field(
        description="Target status ('cancelled', 'failed', or 'completed')"
    )
    error_info: dict[str, Any] | None = None

    @field_validator("error_info")
    @classmethod
    def error_info_only_with_failed(cls, error_info, info: ValidationInfo):
        if error_info is None:
            return None
        status = info.data.get("status")
        if status is not None and status != ExecutionStatus.FAILED:
            # Refused rather than dropped, so that no client believes it was saved.
            raise PydanticCustomError(
                "error_info_not_allowed",
                "error_info is only accepted with status 'failed', not '{status}'",
                {"status": status},
            )
        _check_storable(error_info)
        return error_info


STATUS_MESSAGES = {
    ExecutionStatus.CANCELLED: "Execution cancelled",
    ExecutionStatus.FAILED: "Execution marked as failed",
    ExecutionStatus.COMPLETED: "Execution marked as completed",
    ExecutionStatus.INTERRUPTED: "Execution marked as interrupted",
}


class ExecutionStatusUpdateResponse(_Body):
    """Response from updating execution status."""

    success: bool = Field(description="Whether update succeeded")
    execution_id: UUID = Field(description="Execution UUID")
    previous_status: StatusValue = Field(description="Status before update")
    current_status: StatusValue = Field(description="Status after update")
    message: str = Field(description="Status message")

    @classmethod
    def from_result(cls, result) -> "ExecutionStatusUpdateResponse":
        if result.success:
            message = STATUS_MESSAGES[result.current_status]
        else:
            message = f"Execution is already {result.current_status}; nothing changed"
        return cls(
            success=result.success,
            execution_id=result.execution_id,
            previous_status=result.previous_status,
            current_status=result.current_status,
            message=message,
        )


class ErrorResponse(_Body):
    """Standard error response matching FastAPI HTTPException format."""

    detail: str = Field(description="Error message (matches FastAPI HTTPException)")
    error_code: str | None = None
    correlation_id: str | None = None
    timestamp: datetime = Field(
        default_factory=lambda: datetime.now(timezone.utc), description="Error timestamp"
    )


class ValidationError(_Body):
    loc: list[str | int] = Field(title="Location")
    msg: str = Field(title="Message")
    type: str = Field(title="Error Type")
    input: Any = Field(default=None, title="Input")
    ctx: Annotated[dict, WithJsonSchema({"type": "object"})] = Field(default=None, title="Context")


class HTTPValidationError(_Body):
    detail: list[ValidationError] = Field(default_factory=list)
