"""The app's models, one module per concern; everything is importable from here."""

from .execution import (
    ALLOWED_TRANSITIONS,
    EXECUTION_NAME_MAX_LENGTH,
    IDEMPOTENCY_KEYS_KEPT_FOR,
    MAX_RUNTIME_SECONDS_LIMIT,
    ApiToken,
    ChangeChannel,
    Execution,
    ExecutionStatus,
    ExecutionStatusChange,
    IdempotencyKey,
    statuses_that_can_become,
)
from .monitor import (
    MONITOR_NAME_MAX_LENGTH,
    WATCHED_STATES,
    Monitor,
    MonitorChangeChannel,
    MonitorRunFeedPosition,
    MonitorState,
    MonitorStateChange,
    MonitorStateReason,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "EXECUTION_NAME_MAX_LENGTH",
    "IDEMPOTENCY_KEYS_KEPT_FOR",
    "MAX_RUNTIME_SECONDS_LIMIT",
    "ApiToken",
    "ChangeChannel",
    "Execution",
    "ExecutionStatus",
    "ExecutionStatusChange",
    "IdempotencyKey",
    "statuses_that_can_become",
    "MONITOR_NAME_MAX_LENGTH",
    "WATCHED_STATES",
    "Monitor",
    "MonitorChangeChannel",
    "MonitorRunFeedPosition",
    "MonitorState",
    "MonitorStateChange",
    "MonitorStateReason",
]
