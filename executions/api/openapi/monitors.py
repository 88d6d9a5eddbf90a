"""The OpenAPI declarations of the monitors resource."""

from drf_spectacular.drainage import set_override
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view

from .. import monitor_schemas as bodies
from ..pagination import AFTER_PARAMETER, CURSOR_PARAMETER, FEED_CURSOR_FORMAT, PAGE_CURSOR_FORMAT
from ..schemas import ErrorResponse, HTTPValidationError
from .common import BODY_ERROR_RESPONSES, COMMON_ERROR_RESPONSES, CSRF_ERROR_RESPONSE, page_size_parameter

MONITOR_ID_PARAMETER = OpenApiParameter(
    "monitor_id", {"type": "string", "title": "Monitor Id"}, OpenApiParameter.PATH, required=True
)
NOT_FOUND_RESPONSE = {404: OpenApiResponse(ErrorResponse, description="Monitor not found")}
NAME_TAKEN_RESPONSE = {
    409: OpenApiResponse(
        ErrorResponse, description="The owner has a monitor of that name (MONITOR_NAME_TAKEN)"
    )
}

set_override(bodies.MonitorList, "many", False)
set_override(bodies.MonitorHistory, "many", False)

TAGS = ["monitors"]

monitors_schema = extend_schema_view(
    create=extend_schema(
        summary="Create Monitor",
        tags=TAGS,
        description=(
            "A monitor owned by the caller: a named job expected on a schedule. It is `new` until "
            "a run starts, and goes down (missed) if none starts by the first due moment plus the grace."
        ),
        operation_id="create_monitor",
        request=bodies.MonitorCreateRequest,
        responses={
            201: OpenApiResponse(bodies.Monitor, description="Created; Location names it"),
            **COMMON_ERROR_RESPONSES,
            **CSRF_ERROR_RESPONSE,
            **BODY_ERROR_RESPONSES,
            **NAME_TAKEN_RESPONSE,
        },
    ),
    list=extend_schema(
        summary="List Monitors",
        tags=TAGS,
        description=(
            "The caller's monitors (every monitor, for managers), newest first, one page at a "
            "time. Unknown query parameters are refused (422)."
        ),
        operation_id="list_monitors",
        parameters=[
            OpenApiParameter(
                CURSOR_PARAMETER,
                {"type": "string", "minLength": 1, "format": PAGE_CURSOR_FORMAT},
                OpenApiParameter.QUERY,
                description="next_cursor of the previous page; absent for the first page",
            ),
            page_size_parameter("Monitors"),
        ],
        responses={
            200: OpenApiResponse(bodies.MonitorList, description="One page"),
            **COMMON_ERROR_RESPONSES,
            422: OpenApiResponse(HTTPValidationError, description="Invalid query parameters"),
        },
    ),
    retrieve=extend_schema(
        summary="Get Monitor",
        tags=TAGS,
        description="One monitor: its state, when its next run is due and late, its last runs.",
        operation_id="get_monitor",
        parameters=[MONITOR_ID_PARAMETER],
        responses={
            200: OpenApiResponse(bodies.Monitor, description="The monitor"),
            **COMMON_ERROR_RESPONSES,
            **NOT_FOUND_RESPONSE,
        },
    ),
    partial_update=extend_schema(
        summary="Update Monitor",
        tags=TAGS,
        description=(
            "Change the fields given. A new schedule, time zone or grace counts from the last "
            "start (never making the monitor late at once); `paused: true` pauses it, "
            "`paused: false` resumes it as `new`, counting from now."
        ),
        operation_id="update_monitor",
        parameters=[MONITOR_ID_PARAMETER],
        request=bodies.MonitorUpdateRequest,
        responses={
            200: OpenApiResponse(bodies.Monitor, description="The monitor as it is now"),
            **COMMON_ERROR_RESPONSES,
            **CSRF_ERROR_RESPONSE,
            **BODY_ERROR_RESPONSES,
            **NOT_FOUND_RESPONSE,
            **NAME_TAKEN_RESPONSE,
        },
    ),
    destroy=extend_schema(
        summary="Delete Monitor",
        tags=TAGS,
        description="Delete the monitor and its state history; its runs stay, as runs of no monitor.",
        operation_id="delete_monitor",
        parameters=[MONITOR_ID_PARAMETER],
        responses={
            204: OpenApiResponse(None, description="Deleted"),
            **COMMON_ERROR_RESPONSES,
            **CSRF_ERROR_RESPONSE,
            **NOT_FOUND_RESPONSE,
        },
    ),
    history=extend_schema(
        summary="Monitor History",
        tags=TAGS,
        description=(
            "The monitor's state changes, oldest first: from what, to what, why, the run, who, "
            "through which channel. Poll with `after` set to the last `next_cursor`."
        ),
        operation_id="get_monitor_history",
        parameters=[
            MONITOR_ID_PARAMETER,
            OpenApiParameter(
                AFTER_PARAMETER,
                {"type": "string", "minLength": 1, "format": FEED_CURSOR_FORMAT},
                OpenApiParameter.QUERY,
                description="next_cursor of the previous page; absent to start from the first change",
            ),
            page_size_parameter("Changes"),
        ],
        responses={
            200: OpenApiResponse(bodies.MonitorHistory, description="One page"),
            **COMMON_ERROR_RESPONSES,
            **NOT_FOUND_RESPONSE,
            422: OpenApiResponse(HTTPValidationError, description="Invalid query parameters or cursor"),
        },
    ),
)
