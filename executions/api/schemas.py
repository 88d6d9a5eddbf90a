"""The API's request and response bodies, as pydantic models.

pydantic does two jobs here: it validates request bodies with exactly the error items the
contract asks for (FastAPI's, which are pydantic's), and drf-spectacular renders these
classes into the OpenAPI components of the same names. Class docstrings become the schema
descriptions, so they are kept to the one sentence the contract shows.
"""

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ..models import (
    EXECUTION_NAME_MAX_LENGTH,
    MAX_RUNTIME_SECONDS_LIMIT,
    MONITOR_NAME_MAX_LENGTH,
    ChangeChannel,
    ExecutionStatus,
)
from ..text import has_control_characters
from .limits import MAX_JSON_OBJECT_BYTES, MAX_PAGE_BYTES, json_size

# Deeper JSON than this is refused: nobody needs it, and it is how recursion limits are hit.
MAX_JSON_DEPTH = 32
# The 422 item type of a `metadata` or `error_info` over that size.
JSON_TOO_LARGE = "json_too_large"

StatusValue = Literal["running", "completed", "failed", "cancelled", "interrupted"]
assert set(StatusValue.__args__) == set(ExecutionStatus.values)
ChannelValue = Literal["api", "admin", "command", "worker"]
assert set(ChannelValue.__args__) == set(ChangeChannel.values)


def _drop_property_defaults(schema: dict[str, Any]) -> None:
    # The reference documents optional fields without a "default"; pydantic adds one.
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


class _Body(BaseModel):
    model_config = ConfigDict(json_schema_extra=_drop_property_defaults)


def _status_update_request_schema(schema: dict[str, Any]) -> None:
    _drop_property_defaults(schema)
    # The contract's rule, which a client (and a fuzzer) can read: error_info only with
    # status failed; with cancelled or completed it is a 422 (error_info_not_allowed).
    schema["anyOf"] = [
        {"properties": {"status": {"const": "failed"}}},
        {"properties": {"error_info": {"type": "null"}}},
    ]


def _check_size(value: dict) -> None:
    size = json_size(value)
    if size > MAX_JSON_OBJECT_BYTES:
        raise PydanticCustomError(
            JSON_TOO_LARGE,
            "JSON object may take at most {max_bytes} bytes as compact JSON; this one takes {size}",
            {"max_bytes": MAX_JSON_OBJECT_BYTES, "size": size},
        )


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

    model_config = ConfigDict(extra="forbid", json_schema_extra=_status_update_request_schema)

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
        _check_size(error_info)
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
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC), description="Error timestamp")


class ValidationError(_Body):
    loc: list[str | int] = Field(title="Location")
    msg: str = Field(title="Message")
    type: str = Field(title="Error Type")
    input: Any = Field(default=None, title="Input")
    ctx: Annotated[dict, WithJsonSchema({"type": "object"})] = Field(default=None, title="Context")


class HTTPValidationError(_Body):
    detail: list[ValidationError] = Field(default_factory=list)


# --- The rest of the executions resource -----------------------------------------------

# The 422 item type of a name with a control character in it.
NAME_CONTROL_CHARACTERS = "string_control_characters"
NAME_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


class ExecutionCreateRequest(_Body):
    """Request to create a running execution owned by the caller."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=EXECUTION_NAME_MAX_LENGTH,
        description="What runs: the job or workflow name; no control characters",
        # In the schema only (so that clients and fuzzers know); the validator below refuses
        # with a 422 type of its own rather than pydantic's string_pattern_mismatch.
        json_schema_extra={"pattern": NAME_PATTERN},
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            f"Free-form JSON object kept with it; at most {MAX_JSON_OBJECT_BYTES} bytes as compact JSON"
        ),
    )

    max_runtime_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RUNTIME_SECONDS_LIMIT,
        description=(
            "How long it may run, in whole seconds: the worker fails it (error_info reason "
            "deadline_exceeded) if it is still running then; null or absent: no limit"
        ),
    )

    monitor: str | None = Field(
        default=None,
        min_length=1,
        max_length=MONITOR_NAME_MAX_LENGTH,
        description=(
            "Make it a run of this monitor (its creation is the run's start): the name of one of "
            "the caller's monitors; for managers also another owner's, by name if only one owner "
            "has it, or by id"
        ),
    )

    @field_validator("max_runtime_seconds", mode="before")
    @classmethod
    def a_number_not_text_or_bool(cls, value):
        """An integer as JSON Schema has it, a number with no fraction (60, 60.0, 6e1), never
        the text "60" or `true`, which pydantic's lax mode would read as 60 and 1."""
        if isinstance(value, bool | str):
            raise PydanticCustomError("int_type", "Input should be a valid integer")
        return value

    @field_validator("name", "metadata", "monitor")
    @classmethod
    def storable(cls, value):
        _check_storable(value)
        return value

    @field_validator("metadata")
    @classmethod
    def not_too_large(cls, metadata):
        _check_size(metadata)
        return metadata

    @field_validator("name")
    @classmethod
    def no_control_characters(cls, name):
        # Operators read names in terminals (the cleanup command's sample) and logs: an ESC
        # could clear or recolour the screen, a newline forge a line.
        if has_control_characters(name):
            raise PydanticCustomError(
                NAME_CONTROL_CHARACTERS,
                "Name may not contain control characters (U+0000-U+001F, U+007F-U+009F)",
            )
        return name


class ExecutionCreateUnprocessable(RootModel[HTTPValidationError | ErrorResponse]):
    """A body or Idempotency-Key header the operation does not take (HTTPValidationError), or
    an Idempotency-Key already used with a different body (ErrorResponse IDEMPOTENCY_KEY_REUSED)."""


class Execution(_Body):
    """An execution: one run of a job or workflow."""

    id: UUID = Field(description="Execution UUID")
    name: str
    status: StatusValue
    error_info: dict[str, Any] | None = Field(
        description=f"Why it failed or was stopped; at most {MAX_JSON_OBJECT_BYTES} bytes as compact JSON"
    )
    metadata: dict[str, Any] = Field(
        description=f"What its creator attached; at most {MAX_JSON_OBJECT_BYTES} bytes as compact JSON"
    )
    created_by: str | None = Field(
        description="Username of the owner; null for executions the system created"
    )
    created_at: datetime
    updated_at: datetime = Field(
        description="Last change of any field, heartbeats included; the ETag follows it"
    )
    finished_at: datetime | None = Field(description="When it left running")
    last_heartbeat_at: datetime | None = Field(description="Last sign of life from a worker")
    # Defaults only so that a create's answer kept before these fields existed (an
    # Idempotency-Key's) is still read back; every answer made now carries both.
    max_runtime_seconds: int | None = Field(
        default=None, description="How long it may run, as given at creation; null: no limit"
    )
    deadline_at: datetime | None = Field(
        default=None,
        description="created_at + max_runtime_seconds: if it is still running then, the worker fails it",
    )

    @classmethod
    def from_model(cls, execution) -> "Execution":
        owner = execution.created_by
        return cls(
            id=execution.id,
            name=execution.name,
            status=execution.status,
            error_info=execution.error_info,
            metadata=execution.metadata,
            created_by=owner.get_username() if owner is not None else None,
            created_at=execution.created_at,
            updated_at=execution.updated_at,
            finished_at=execution.finished_at,
            last_heartbeat_at=execution.last_heartbeat_at,
            max_runtime_seconds=execution.max_runtime_seconds,
            deadline_at=execution.deadline_at,
        )


class ExecutionList(_Body):
    """One page of executions, newest first."""

    results: list[Execution]
    next_cursor: str | None = Field(
        description=(
            "Pass as `cursor` to get the next page; null on the last page. A page may hold fewer "
            "than page_size rows and still have a next one: it ends where the answer would pass "
            f"{MAX_PAGE_BYTES} bytes (unless its one row is larger)"
        )
    )
    next: str | None = Field(description="URL of the next page, with the same filters; null on the last page")


class ExecutionHeartbeatResponse(_Body):
    """The heartbeat was recorded: the execution is running."""

    execution_id: UUID
    status: Literal["running"]
    last_heartbeat_at: datetime


class ExecutionNotRunningResponse(ErrorResponse):
    """Error response for a heartbeat on an execution that is no longer running."""

    current_status: StatusValue = Field(description="The execution's status now: the worker should stop")


class ExecutionStatusChange(_Body):
    """One change of an execution's status: from what, to what, why, who, how and when."""

    previous_status: StatusValue
    new_status: StatusValue
    error_info: dict[str, Any] | None
    actor: str | None = Field(description="Username of who asked for it; null when the system did")
    channel: ChannelValue = Field(
        description="Through what: the API, the admin site, a management command, or the worker (the system)"
    )
    correlation_id: str = Field(description="The request's X-Request-ID (empty when there was none)")
    created_at: datetime

    @classmethod
    def from_model(cls, change) -> "ExecutionStatusChange":
        return cls(
            previous_status=change.previous_status,
            new_status=change.new_status,
            error_info=change.error_info,
            actor=change.actor_username or None,
            channel=change.channel,
            correlation_id=change.correlation_id,
            created_at=change.created_at,
        )


class ExecutionHistory(_Body):
    """An execution's status changes, oldest first."""

    execution_id: UUID
    results: list[ExecutionStatusChange]


class StatusChangeFeedItem(ExecutionStatusChange):
    """One change of an execution's status, in the change feed."""

    execution_id: UUID

    @classmethod
    def from_model(cls, change) -> "StatusChangeFeedItem":
        return cls(execution_id=change.execution_id, **ExecutionStatusChange.from_model(change).model_dump())


class StatusChangeFeed(_Body):
    """One page of the change feed, oldest first."""

    results: list[StatusChangeFeedItem]
    next_cursor: str = Field(
        description="Pass as `after` to get what comes next; always present, also on an empty page"
    )
    has_more: bool = Field(
        description=(
            "More changes are ready now: ask again without waiting. A page may hold fewer than "
            "page_size changes and still have more: it ends where the answer would pass "
            f"{MAX_PAGE_BYTES} bytes (unless its one change is larger)"
        )
    )


class HealthStatus(_Body):
    """The process answers."""

    status: Literal["ok"]


class ReadinessStatus(_Body):
    """The process and its database answer."""

    status: Literal["ok"]
    database: Literal["ok"]
