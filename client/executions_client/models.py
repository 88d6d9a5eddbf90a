"""The API's answers as dataclasses: what `ExecutionsClient` returns.

Fields follow the service's bodies (`executions/api/schemas.py`); times are timezone-aware
`datetime`s. Fields a newer service adds are ignored, so an old client keeps working.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True)
class Execution:
    """One run of a job or workflow."""

    id: str
    name: str
    status: str
    error_info: dict[str, Any] | None
    metadata: dict[str, Any]
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    last_heartbeat_at: datetime | None
    # How long it may run, and the moment that makes (created_at + max_runtime_seconds): the
    # service fails it if it is still running then. None: no limit (or a service without them).
    max_runtime_seconds: int | None = None
    deadline_at: datetime | None = None
    # The version from the ETag header, for `update_status(..., if_match=...)`; None in lists.
    etag: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any], etag: str | None = None) -> "Execution":
        return cls(
            id=body["id"],
            name=body["name"],
            status=body["status"],
            error_info=body["error_info"],
            metadata=body["metadata"],
            created_by=body["created_by"],
            created_at=_time(body["created_at"]),
            updated_at=_time(body["updated_at"]),
            finished_at=_time(body["finished_at"]),
            last_heartbeat_at=_time(body["last_heartbeat_at"]),
            max_runtime_seconds=body.get("max_runtime_seconds"),
            deadline_at=_time(body.get("deadline_at")),
            etag=etag,
        )


@dataclass(frozen=True)
class ExecutionPage:
    """One page of executions, newest first; `next_cursor` is None on the last page."""

    results: list[Execution]
    next_cursor: str | None


@dataclass(frozen=True)
class StatusUpdate:
    """The answer to a status change. `success` is False when the execution already had
    that status (nothing changed)."""

    success: bool
    execution_id: str
    previous_status: str
    current_status: str
    message: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "StatusUpdate":
        return cls(
            success=body["success"],
            execution_id=body["execution_id"],
            previous_status=body["previous_status"],
            current_status=body["current_status"],
            message=body["message"],
        )


@dataclass(frozen=True)
class Heartbeat:
    """A recorded heartbeat: the execution is running."""

    execution_id: str
    status: str
    last_heartbeat_at: datetime

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "Heartbeat":
        return cls(
            execution_id=body["execution_id"],
            status=body["status"],
            last_heartbeat_at=_time(body["last_heartbeat_at"]),
        )


@dataclass(frozen=True)
class StatusChange:
    """One audit record: an execution's status changed from what, to what, why, who, how
    and when. `execution_id` is set in the change feed and in `history()`."""

    execution_id: str
    previous_status: str
    new_status: str
    error_info: dict[str, Any] | None
    actor: str | None
    channel: str
    correlation_id: str
    created_at: datetime

    @classmethod
    def from_json(cls, body: dict[str, Any], execution_id: str | None = None) -> "StatusChange":
        return cls(
            execution_id=body.get("execution_id", execution_id),
            previous_status=body["previous_status"],
            new_status=body["new_status"],
            error_info=body["error_info"],
            actor=body["actor"],
            channel=body["channel"],
            correlation_id=body["correlation_id"],
            created_at=_time(body["created_at"]),
        )


@dataclass(frozen=True)
class StatusChangePage:
    """One page of the change feed, oldest first. Pass `next_cursor` as `after` to get what
    comes next (it is there on every page, an empty last one too); `has_more` says more
    changes are ready now."""

    results: list[StatusChange]
    next_cursor: str
    has_more: bool
