"""Domain errors and their codes, shared by the API, the admin, the commands and the tests."""


class ErrorCode:
    """The domain's error codes: what the rules refuse, whichever channel asked. The API adds
    HTTP's own (executions/api/error_codes.py)."""

    EXECUTION_NOT_FOUND = "EXECUTION_NOT_FOUND"
    INVALID_STATUS_TRANSITION = "INVALID_STATUS_TRANSITION"
    EXECUTION_NOT_RUNNING = "EXECUTION_NOT_RUNNING"
    PRECONDITION_FAILED = "PRECONDITION_FAILED"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    NOTIFICATION_ENDPOINT_NOT_FOUND = "NOTIFICATION_ENDPOINT_NOT_FOUND"
    DELIVERY_NOT_FOUND = "DELIVERY_NOT_FOUND"
    MONITOR_NOT_FOUND = "MONITOR_NOT_FOUND"
    MONITOR_NAME_TAKEN = "MONITOR_NAME_TAKEN"


class ExecutionError(Exception):
    """Base of the errors the executions domain raises on purpose."""

    error_code: str = ""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail

    def extra_fields(self) -> dict:
        """Fields the error body carries besides the ErrorResponse ones."""
        return {}


class ExecutionNotFound(ExecutionError):
    """The execution does not exist, or the caller may not see it: the two look the same."""

    error_code = ErrorCode.EXECUTION_NOT_FOUND

    def __init__(self):
        super().__init__("Execution not found")


class InvalidStatusTransition(ExecutionError):
    error_code = ErrorCode.INVALID_STATUS_TRANSITION

    def __init__(self, current_status: str, target_status: str):
        super().__init__(f"Cannot change status from '{current_status}' to '{target_status}'")
        self.current_status = current_status
        self.target_status = target_status


class ExecutionNotRunning(ExecutionError):
    """A worker reported for an execution that is no longer running (an operator cancelled
    it, or the cleanup interrupted it): the worker should stop."""

    error_code = ErrorCode.EXECUTION_NOT_RUNNING

    def __init__(self, current_status: str):
        super().__init__(f"Execution is {current_status}, not running")
        self.current_status = current_status

    def extra_fields(self) -> dict:
        return {"current_status": self.current_status}


class PreconditionFailed(ExecutionError):
    """The execution changed since the client read the version it names (If-Match)."""

    error_code = ErrorCode.PRECONDITION_FAILED

    def __init__(self):
        super().__init__("The execution changed since it was read (If-Match); read it again and retry")


class IdempotencyKeyReused(ExecutionError):
    """An Idempotency-Key sent again with a different request: it names the first one."""

    error_code = ErrorCode.IDEMPOTENCY_KEY_REUSED

    def __init__(self):
        super().__init__(
            "This Idempotency-Key was already used with a different request; use a new key for a new request"
        )


class NotificationEndpointNotFound(ExecutionError):
    """The endpoint does not exist, or the caller may not see it: the two look the same."""

    error_code = ErrorCode.NOTIFICATION_ENDPOINT_NOT_FOUND

    def __init__(self):
        super().__init__("Notification endpoint not found")


class DeliveryNotFound(ExecutionError):
    """No message of this endpoint has that id (webhook-id)."""

    error_code = ErrorCode.DELIVERY_NOT_FOUND

    def __init__(self):
        super().__init__("Delivery not found")


class MonitorNotFound(ExecutionError):
    """The monitor does not exist, or the caller may not see it: the two look the same."""

    error_code = ErrorCode.MONITOR_NOT_FOUND

    def __init__(self):
        super().__init__("Monitor not found")


class MonitorNameTaken(ExecutionError):
    """The owner already has a monitor of that name."""

    error_code = ErrorCode.MONITOR_NAME_TAKEN

    def __init__(self, name: str):
        super().__init__(f"A monitor named {name!r} exists already; names are unique per owner")
        self.name = name


# The 422 item types of a `monitor` that names no monitor the caller may use.
MONITOR_UNKNOWN = "monitor_unknown"
MONITOR_AMBIGUOUS = "monitor_ambiguous"


class UnknownMonitor(Exception):
    """An execution was created for a monitor that the name does not designate: none of the
    caller's (or, for a manager, several of other owners'). The API answers it as a 422 item
    on the body's `monitor` field."""

    def __init__(self, name: str, ambiguous: bool = False):
        self.name = name
        self.item_type = MONITOR_AMBIGUOUS if ambiguous else MONITOR_UNKNOWN
        self.message = (
            f"Several owners have a monitor named {name!r}: name it by its id"
            if ambiguous
            else f"No monitor named {name!r} that you may run"
        )
        super().__init__(self.message)
