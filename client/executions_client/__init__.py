"""Python client of the executions service; `executions-run` wraps any command (run.py)."""

from .client import ExecutionsClient, StatusChangeStream
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ExecutionsError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from .models import Execution, ExecutionPage, Heartbeat, StatusChange, StatusChangePage, StatusUpdate
from .webhooks import WebhookVerificationError, verify_webhook, webhook_signature

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "Execution",
    "ExecutionPage",
    "ExecutionsClient",
    "ExecutionsError",
    "Heartbeat",
    "NotFoundError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "ServiceUnavailableError",
    "StatusChange",
    "StatusChangePage",
    "StatusChangeStream",
    "StatusUpdate",
    "UnprocessableEntityError",
    "WebhookVerificationError",
    "verify_webhook",
    "webhook_signature",
]
