"""The OpenAPI declarations of the executions resource and of the change feed."""

from drf_spectacular.drainage import set_override
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view

from .. import schemas
from ..etags import IF_MATCH_HEADER, IF_MATCH_PATTERN
from ..idempotency import IDEMPOTENCY_KEY_HEADER, MAX_IDEMPOTENCY_KEY_LENGTH
from ..pagination import (
    AFTER_PARAMETER,
    CURSOR_PARAMETER,
    FEED_CURSOR_FORMAT,
    PAGE_CURSOR_FORMAT,
)
from ..schemas import (
    ErrorResponse,
    ExecutionStatusUpdateRequest,
    ExecutionStatusUpdateResponse,
    HTTPValidationError,
)
from .common import (
    AUTH_ERROR_RESPONSES,
    BODY_ERROR_RESPONSES,
    COMMON_ERROR_RESPONSES,
    CSRF_ERROR_RESPONSE,
    page_size_parameter,
)

EXECUTION_ID_PARAMETER = OpenApiParameter(
    "execution_id",
    {"type": "string", "title": "Execution Id"},
    OpenApiParameter.PATH,
    required=True,
)
NOT_FOUND_RESPONSE = {404: OpenApiResponse(ErrorResponse, description="Execution not found")}

IF_MATCH_PARAMETER = OpenApiParameter(
    IF_MATCH_HEADER,
    {"type": "string", "minLength": 1, "pattern": IF_MATCH_PATTERN},
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Change the execution only if it is still the version this ETag names (from GET). "
        "A strong ETag, or a list of them, or *; weak or unknown tags never match (412); "
        "anything else is a 422. "
        "Without it the change is unconditional."
    ),
)

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_KEY_HEADER,
    {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH, "pattern": "^[!-~]+$"},
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Makes a retry safe: the same key from the same user with the same body answers the "
        "original 201 (same execution, body, Location, ETag, plus Idempotent-Replayed: true) and "
        "creates nothing; with a different body, 422 IDEMPOTENCY_KEY_REUSED. Visible ASCII, "
        "1-255 characters, kept at least 24 hours."
    ),
)

LIST_PARAMETERS = [
    OpenApiParameter(
        CURSOR_PARAMETER,
        # Opaque (a position the API encoded): tests/fuzz/hooks.py teaches the fuzzer the format.
        {"type": "string", "minLength": 1, "format": PAGE_CURSOR_FORMAT},
        OpenApiParameter.QUERY,
        description="next_cursor of the previous page; absent for the first page",
    ),
    page_size_parameter("Executions"),
]

FEED_PARAMETERS = [
    OpenApiParameter(
        AFTER_PARAMETER,
        {"type": "string", "minLength": 1, "format": FEED_CURSOR_FORMAT},
        OpenApiParameter.QUERY,
        description="next_cursor of the previous page; absent to start from the oldest change",
    ),
    page_size_parameter("Changes"),
]

# The list's page is one object, not a list of them (drf-spectacular assumes a list action
# answers an array).
set_override(schemas.ExecutionList, "many", False)
set_override(schemas.StatusChangeFeed, "many", False)


executions_schema = extend_schema_view(
    partial_update=extend_schema(
        summary="Update Execution Status",
        tags=["executions"],
        description="Update execution status.",
        operation_id="update_execution_status_api_v1_executions__execution_id__patch",
        parameters=[EXECUTION_ID_PARAMETER, IF_MATCH_PARAMETER],
        request=ExecutionStatusUpdateRequest,
        responses={
            200: OpenApiResponse(ExecutionStatusUpdateResponse, description="Successful Response"),
            400: OpenApiResponse(ErrorResponse, description="Status change not allowed"),
            **AUTH_ERROR_RESPONSES,
            404: OpenApiResponse(ErrorResponse, description="Resource not found"),
            422: OpenApiResponse(HTTPValidationError, description="Validation Error"),
            # Beyond the contract's page: the conditional PATCH and the generic errors.
            406: COMMON_ERROR_RESPONSES[406],
            412: OpenApiResponse(ErrorResponse, description="The execution changed since the If-Match ETag"),
            413: BODY_ERROR_RESPONSES[413],
            415: BODY_ERROR_RESPONSES[415],
            429: COMMON_ERROR_RESPONSES[429],
            503: COMMON_ERROR_RESPONSES[503],
        },
    ),
    create=extend_schema(
        summary="Create Execution",
        tags=["executions"],
        description=(
            "Create a running execution owned by the caller. With an Idempotency-Key, a retry "
            "answers the original 201 instead of creating a second execution."
        ),
        operation_id="create_execution",
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        request=schemas.ExecutionCreateRequest,
        responses={
            201: OpenApiResponse(
                schemas.Execution,
                description="Created (or, for a retry with its Idempotency-Key, created before); "
                "Location names it, ETag is its version",
            ),
            **COMMON_ERROR_RESPONSES,
            **CSRF_ERROR_RESPONSE,
            **BODY_ERROR_RESPONSES,
            422: OpenApiResponse(
                schemas.ExecutionCreateUnprocessable,
                description="Validation Error (body or Idempotency-Key), or IDEMPOTENCY_KEY_REUSED",
            ),
        },
    ),
    retrieve=extend_schema(
        summary="Get Execution",
        tags=["executions"],
        description="One execution, with its version in the ETag header.",
        operation_id="get_execution",
        parameters=[EXECUTION_ID_PARAMETER],
        responses={
            200: OpenApiResponse(schemas.Execution, description="The execution"),
            **COMMON_ERROR_RESPONSES,
            **NOT_FOUND_RESPONSE,
        },
    ),
    list=extend_schema(
        summary="List Executions",
        tags=["executions"],
        description=(
            "The caller's executions (every execution, for managers), newest first, one page at "
            "a time. Unknown query parameters are refused (422), so that a misspelt filter "
            "never returns everything."
        ),
        operation_id="list_executions",
        parameters=LIST_PARAMETERS,
        responses={
            200: OpenApiResponse(schemas.ExecutionList, description="One page"),
            **COMMON_ERROR_RESPONSES,
            422: OpenApiResponse(HTTPValidationError, description="Invalid query parameters"),
        },
    ),
    heartbeat=extend_schema(
        summary="Execution Heartbeat",
        tags=["executions"],
        description=(
            "A worker says the execution is alive: sets last_heartbeat_at (and updated_at, so "
            "the ETag changes). 409 EXECUTION_NOT_RUNNING, with current_status, tells a "
            "worker whose execution was stopped to stop."
        ),
        operation_id="heartbeat_execution",
        parameters=[EXECUTION_ID_PARAMETER],
        request=None,
        responses={
            200: OpenApiResponse(schemas.ExecutionHeartbeatResponse, description="Recorded"),
            **COMMON_ERROR_RESPONSES,
            **CSRF_ERROR_RESPONSE,
            **NOT_FOUND_RESPONSE,
            409: OpenApiResponse(
                schemas.ExecutionNotRunningResponse, description="The execution is not running"
            ),
        },
    ),
    history=extend_schema(
        summary="Execution History",
        tags=["executions"],
        description="The audit records of the execution's status changes, oldest first.",
        operation_id="get_execution_history",
        parameters=[EXECUTION_ID_PARAMETER],
        responses={
            200: OpenApiResponse(schemas.ExecutionHistory, description="The history"),
            **COMMON_ERROR_RESPONSES,
            **NOT_FOUND_RESPONSE,
        },
    ),
)

status_change_feed_schema = extend_schema_view(
    list=extend_schema(
        summary="Status Change Feed",
        tags=["executions"],
        description=(
            "Every status change of the executions the caller may see, oldest first. Poll with "
            "`after` set to the last `next_cursor`: no change is ever missed or served twice, "
            "also when transactions commit out of order. Unknown query parameters are refused (422)."
        ),
        operation_id="list_status_changes",
        parameters=FEED_PARAMETERS,
        responses={
            200: OpenApiResponse(schemas.StatusChangeFeed, description="One page"),
            **COMMON_ERROR_RESPONSES,
            422: OpenApiResponse(HTTPValidationError, description="Invalid query parameters or cursor"),
        },
    ),
)
