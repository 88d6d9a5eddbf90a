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


# --- Notifications ------------------------------------------------------------------------


@dataclass(frozen=True)
class NotificationEndpoint:
    """Where the service tells someone about changes: a webhook, a Slack incoming webhook, or
    email addresses. `secret` (whsec_...) is set only in what create and rotate return: the
    one time the service shows it."""

    id: str
    kind: str
    description: str
    url: str | None
    emails: list[str] | None
    events: list[str]
    name_prefix: str | None
    monitor: str | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    previous_secret_valid_until: datetime | None
    owner: str
    created_at: datetime
    updated_at: datetime
    secret: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "NotificationEndpoint":
        return cls(
            id=body["id"],
            kind=body["kind"],
            description=body["description"],
            url=body["url"],
            emails=body["emails"],
            events=body["events"],
            name_prefix=body["name_prefix"],
            monitor=body["monitor"],
            enabled=body["enabled"],
            disabled_reason=body["disabled_reason"],
            disabled_at=_time(body["disabled_at"]),
            failing_since=_time(body["failing_since"]),
            previous_secret_valid_until=_time(body["previous_secret_valid_until"]),
            owner=body["owner"],
            created_at=_time(body["created_at"]),
            updated_at=_time(body["updated_at"]),
            secret=body.get("secret"),
        )


@dataclass(frozen=True)
class NotificationEndpointPage:
    """One page of endpoints, newest first; `next_cursor` is None on the last page."""

    results: list[NotificationEndpoint]
    next_cursor: str | None


@dataclass(frozen=True)
class NotificationDeliveryAttempt:
    """One try to deliver a message: `status_code` is None when no answer came."""

    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    succeeded: bool
    error: str | None
    response_body: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "NotificationDeliveryAttempt":
        return cls(
            attempted_at=_time(body["attempted_at"]),
            status_code=body["status_code"],
            latency_ms=body["latency_ms"],
            succeeded=body["succeeded"],
            error=body["error"],
            response_body=body["response_body"],
        )


@dataclass(frozen=True)
class NotificationDelivery:
    """One message to an endpoint (`id` is its webhook-id) and every try to deliver it,
    newest first. `state`: pending, delivered or failed."""

    id: str
    event_type: str
    subject_id: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    occurred_at: datetime
    created_at: datetime
    finished_at: datetime | None
    data: dict[str, Any]
    delivery_attempts: list[NotificationDeliveryAttempt]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "NotificationDelivery":
        return cls(
            id=body["id"],
            event_type=body["event_type"],
            subject_id=body["subject_id"],
            state=body["state"],
            attempts=body["attempts"],
            next_attempt_at=_time(body["next_attempt_at"]),
            occurred_at=_time(body["occurred_at"]),
            created_at=_time(body["created_at"]),
            finished_at=_time(body["finished_at"]),
            data=body["data"],
            delivery_attempts=[
                NotificationDeliveryAttempt.from_json(item) for item in body["delivery_attempts"]
            ],
        )


@dataclass(frozen=True)
class NotificationDeliveryPage:
    """One page of an endpoint's deliveries, newest first; `next_cursor` is None on the last."""

    results: list[NotificationDelivery]
    next_cursor: str | None
