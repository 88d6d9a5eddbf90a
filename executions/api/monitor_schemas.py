"""The monitors' request and response bodies, as pydantic models (like api/schemas.py for the
executions: pydantic gives the contract's 422 items, drf-spectacular the schema components)."""

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from ..models import MONITOR_NAME_MAX_LENGTH, MonitorChangeChannel, MonitorState, MonitorStateReason
from ..monitors.schedules import (
    MAX_SCHEDULE_LENGTH,
    MAX_TIMEZONE_LENGTH,
    ScheduleError,
    check_timezone,
    parse_schedule,
)
from ..text import has_control_characters
from .schemas import NAME_CONTROL_CHARACTERS, NAME_PATTERN, StatusValue, _Body, _check_storable

# The 422 item types of a schedule or a time zone that cannot be used.
SCHEDULE_INVALID = "schedule_invalid"
TIMEZONE_INVALID = "timezone_invalid"
# Bounds that catch typos: a grace or a run of more than a year is surely one.
MAX_GRACE_SECONDS = 365 * 86400
MAX_RUNTIME_SECONDS = 365 * 86400

StateValue = Literal["new", "up", "down", "paused"]
ReasonValue = Literal["missed", "failed"]
ChannelValue = Literal["api", "admin", "command", "worker"]
assert set(StateValue.__args__) == set(MonitorState.values)
assert set(ReasonValue.__args__) == set(MonitorStateReason.values)
assert set(ChannelValue.__args__) == set(MonitorChangeChannel.values)

_NAME = {
    "min_length": 1,
    "max_length": MONITOR_NAME_MAX_LENGTH,
    "description": "Unique per owner; no control characters. Runs name it in `monitor`",
    "json_schema_extra": {"pattern": NAME_PATTERN},
}
_SCHEDULE = {
    "min_length": 1,
    "max_length": MAX_SCHEDULE_LENGTH,
    "description": '"every 90s", "every 1h" (s, m, h, d, w), or a 5-field cron line read in `timezone`',
}
_TIMEZONE = {"max_length": MAX_TIMEZONE_LENGTH, "description": "IANA time zone name, e.g. Europe/Berlin"}
_GRACE = {
    "ge": 0,
    "le": MAX_GRACE_SECONDS,
    "description": "How late a start may be before the monitor is down",
}
_MAX_RUNTIME = {
    "ge": 1,
    "le": MAX_RUNTIME_SECONDS,
    "description": "How long one run may take (each run's deadline); null: no limit",
}
_PAUSED = {"description": "A paused monitor is not watched, and its runs do not change its state"}


def _checked_name(name):
    if name is None:
        return None
    _check_storable(name)
    if has_control_characters(name):
        raise PydanticCustomError(
            NAME_CONTROL_CHARACTERS, "Name may not contain control characters (U+0000-U+001F, U+007F-U+009F)"
        )
    return name


def _checked_schedule(schedule):
    if schedule is None:
        return None
    try:
        return parse_schedule(schedule).text
    except ScheduleError as error:
        raise PydanticCustomError(SCHEDULE_INVALID, "{reason}", {"reason": str(error)}) from None


def _checked_timezone(name):
    if name is None:
        return None
    try:
        return check_timezone(name)
    except ScheduleError as error:
        raise PydanticCustomError(TIMEZONE_INVALID, "{reason}", {"reason": str(error)}) from None


class MonitorCreateRequest(_Body):
    """Request to create a monitor owned by the caller."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(**_NAME)
    schedule: str = Field(**_SCHEDULE)
    timezone: str = Field(default="UTC", **_TIMEZONE)
    grace_seconds: int = Field(**_GRACE)
    max_runtime_seconds: int | None = Field(default=None, **_MAX_RUNTIME)
    paused: bool = Field(default=False, **_PAUSED)

    _name = field_validator("name")(_checked_name)
    _schedule = field_validator("schedule")(_checked_schedule)
    _timezone = field_validator("timezone")(_checked_timezone)


class MonitorUpdateRequest(_Body):
    """Request to change a monitor: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    # Each may be left out; none but max_runtime_seconds may be null (a default is not
    # validated, an explicit null is, and refused).
    name: str = Field(default=None, **_NAME)
    schedule: str = Field(default=None, **_SCHEDULE)
    timezone: str = Field(default=None, **_TIMEZONE)
    grace_seconds: int = Field(default=None, **_GRACE)
    max_runtime_seconds: int | None = Field(default=None, **_MAX_RUNTIME)
    paused: bool = Field(default=None, **_PAUSED)

    _name = field_validator("name")(_checked_name)
    _schedule = field_validator("schedule")(_checked_schedule)
    _timezone = field_validator("timezone")(_checked_timezone)

    def changes(self) -> dict:
        return {name: getattr(self, name) for name in self.model_fields_set}


class MonitorRun(_Body):
    """One run of a monitor: an execution created for it."""

    id: UUID
    status: StatusValue
    created_at: datetime = Field(description="When it started")
    finished_at: datetime | None

    @classmethod
    def from_model(cls, execution) -> "MonitorRun":
        return cls(
            id=execution.id,
            status=execution.status,
            created_at=execution.created_at,
            finished_at=execution.finished_at,
        )


# How many of its last runs a monitor's body shows.
LAST_RUNS_SHOWN = 10


class Monitor(_Body):
    """A monitor: a named job expected to run on a schedule."""

    id: UUID
    name: str
    owner: str = Field(description="Username of the owner")
    schedule: str
    timezone: str
    grace_seconds: int
    max_runtime_seconds: int | None
    paused: bool
    state: StateValue = Field(
        description="new: no run since it was created or resumed; up; down (see state_reason); paused"
    )
    state_reason: ReasonValue | None = Field(
        description="Why it is down: missed (no run started in time) or failed (a run failed); else null"
    )
    next_due_at: datetime | None = Field(description="When the next run should start; null while paused")
    late_after: datetime | None = Field(
        description="When it goes down if no run starts: next_due_at plus the grace; null while paused"
    )
    last_execution: MonitorRun | None = Field(description="The last run, if any")
    last_runs: list[MonitorRun] = Field(description=f"Its last {LAST_RUNS_SHOWN} runs, newest first")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, monitor, last_runs: list) -> "Monitor":
        return cls(
            id=monitor.id,
            name=monitor.name,
            owner=monitor.owner.get_username(),
            schedule=monitor.schedule,
            timezone=monitor.timezone,
            grace_seconds=monitor.grace_seconds,
            max_runtime_seconds=monitor.max_runtime_seconds,
            paused=monitor.paused,
            state=monitor.state,
            state_reason=monitor.state_reason,
            next_due_at=monitor.next_due_at,
            late_after=monitor.late_after,
            last_execution=MonitorRun.from_model(last_runs[0]) if last_runs else None,
            last_runs=[MonitorRun.from_model(run) for run in last_runs],
            created_at=monitor.created_at,
            updated_at=monitor.updated_at,
        )


class MonitorList(_Body):
    """One page of monitors, newest first."""

    results: list[Monitor]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page"
    )
    next: str | None = Field(description="URL of the next page; null on the last page")


class MonitorStateChange(_Body):
    """One change of a monitor's state: from what, to what, why, the run, who, how and when."""

    previous_state: StateValue
    new_state: StateValue
    reason: ReasonValue | None = Field(description="missed or failed for a change to down; else null")
    execution_id: UUID | None = Field(description="The run that caused it, if one did (and still exists)")
    actor: str | None = Field(description="Username of who caused it; null when the system did")
    channel: ChannelValue
    correlation_id: str = Field(description="The request's X-Request-ID (empty when there was none)")
    created_at: datetime

    @classmethod
    def from_model(cls, change) -> "MonitorStateChange":
        return cls(
            previous_state=change.previous_state,
            new_state=change.new_state,
            reason=change.reason,
            execution_id=change.execution_id,
            actor=change.actor_username or None,
            channel=change.channel,
            correlation_id=change.correlation_id,
            created_at=change.created_at,
        )


class MonitorHistory(_Body):
    """A monitor's state changes, oldest first, one page at a time."""

    monitor_id: UUID
    results: list[MonitorStateChange]
    next_cursor: str = Field(description="Pass as `after` to get what comes next")
    has_more: bool = Field(description="More changes are ready now: ask again without waiting")
