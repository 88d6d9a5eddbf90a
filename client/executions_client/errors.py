"""What the client raises. Every error is an `ExecutionsError`; an answer of the service is
an `APIError` with its `error_code` and `correlation_id` (quote that one when you report a
problem: the service's log line for the request carries it)."""

from typing import Any

import httpx

# The service's error codes that a client acts on (executions/errors.py has them all).
EXECUTION_NOT_FOUND = "EXECUTION_NOT_FOUND"
EXECUTION_NOT_RUNNING = "EXECUTION_NOT_RUNNING"
INVALID_STATUS_TRANSITION = "INVALID_STATUS_TRANSITION"
PRECONDITION_FAILED = "PRECONDITION_FAILED"


class ExecutionsError(Exception):
    """Base of every error this package raises."""


class ConfigurationError(ExecutionsError):
    """No URL or no token: neither given as an argument nor in the environment."""


class APIError(ExecutionsError):
    """The service answered with an error. `detail` is its message; `body` the parsed JSON
    body (None when it was not JSON)."""

    def __init__(self, response: httpx.Response):
        self.status_code = response.status_code
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        self.body = body
        fields = body if isinstance(body, dict) else {}
        self.error_code: str | None = fields.get("error_code")
        # Validation errors (422) carry no correlation id in the body; the header always does.
        self.correlation_id: str | None = fields.get("correlation_id") or response.headers.get("X-Request-ID")
        detail = fields.get("detail")
        self.detail = detail if isinstance(detail, str) else response.reason_phrase
        super().__init__(self.status_code, self.error_code, self.detail)

    def __str__(self) -> str:
        said = " ".join(str(part) for part in (self.status_code, self.error_code, self.detail) if part)
        return f"{said} (correlation id {self.correlation_id})"


class BadRequestError(APIError):
    """400: e.g. INVALID_STATUS_TRANSITION, the execution is no longer running."""


class AuthenticationError(APIError):
    """401: no token, or a wrong one."""


class PermissionDeniedError(APIError):
    """403."""


class NotFoundError(APIError):
    """404 EXECUTION_NOT_FOUND: it does not exist, or it is not the caller's."""


class ConflictError(APIError):
    """409 EXECUTION_NOT_RUNNING: a heartbeat for an execution that was stopped (cancelled,
    failed, completed or interrupted); `current_status` says which. The worker should stop."""

    def __init__(self, response: httpx.Response):
        super().__init__(response)
        self.current_status: str | None = (
            self.body.get("current_status") if isinstance(self.body, dict) else None
        )


class PreconditionFailedError(APIError):
    """412 PRECONDITION_FAILED: the execution changed since the ETag given as `if_match`."""


class UnprocessableEntityError(APIError):
    """422: the request was refused as invalid. `errors` holds the validation error items
    (`type`, `loc`, `msg`, ...) when the service sent them, else an empty list (an error
    with an `error_code`, e.g. an Idempotency-Key reused with another body)."""

    def __init__(self, response: httpx.Response):
        super().__init__(response)
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        self.errors: list[dict[str, Any]] = detail if isinstance(detail, list) else []
        if self.errors:
            self.detail = "; ".join(
                f"{'.'.join(map(str, item.get('loc', [])))}: {item.get('msg')}" for item in self.errors
            )


class ServiceUnavailableError(ExecutionsError):
    """The service could not be reached, or kept answering 503 or 429, through every retry.
    `status_code` is the last answer's (None when there was no answer)."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


ERRORS_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailedError,
    422: UnprocessableEntityError,
}


def error_for(response: httpx.Response) -> APIError:
    return ERRORS_BY_STATUS.get(response.status_code, APIError)(response)
