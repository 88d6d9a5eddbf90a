"""The app's models, one module per concern; everything is importable from here."""

from .execution import (
    ALLOWED_TRANSITIONS,
    EXECUTION_NAME_MAX_LENGTH,
    IDEMPOTENCY_KEYS_KEPT_FOR,
    ApiToken,
    ChangeChannel,
    Execution,
    ExecutionStatus,
    ExecutionStatusChange,
    IdempotencyKey,
    statuses_that_can_become,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "EXECUTION_NAME_MAX_LENGTH",
    "IDEMPOTENCY_KEYS_KEPT_FOR",
    "ApiToken",
    "ChangeChannel",
    "Execution",
    "ExecutionStatus",
    "ExecutionStatusChange",
    "IdempotencyKey",
    "statuses_that_can_become",
]
