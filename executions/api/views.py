"""The executions resource. Views are thin: parse, call the service, render."""

from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.drainage import set_override
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.metadata import SimpleMetadata
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from ..models import ChangeChannel, Execution, ExecutionStatusChange
from ..selectors import (
    FEED_START,
    execution_get,
    execution_status_changes,
    executions_listable_by,
    executions_visible_to,
    status_changes_after,
    status_changes_visible_to,
)
from ..services import (
    execution_change_status,
    execution_create,
    execution_create_idempotent,
    execution_heartbeat,
)
from . import schemas
from .etags import etag_for, expected_versions
from .filters import ExecutionFilter, StatusChangeFilter, parse_list_query
from .idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    parse_idempotency_key,
    request_fingerprint,
)
from .pagination import (
    AFTER_PARAMETER,
    CURSOR_PARAMETER,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    PAGE_SIZE_PARAMETER,
    FeedQuery,
    decode_feed_cursor,
    encode_feed_cursor,
    newest_first_page,
    page_within_json_budget,
)
from .schemas import (
    ErrorResponse,
    ExecutionStatusUpdateRequest,
    ExecutionStatusUpdateResponse,
    HTTPValidationError,
)
from .validation import parse_body

EXECUTION_ID_PARAMETER = OpenApiParameter(
    "execution_id",
    {"type": "string", "title": "Execution Id"},
    OpenApiParameter.PATH,
    required=True,
)

# Error answers of every operation, whatever it does.
COMMON_ERROR_RESPONSES = {
    401: OpenApiResponse(ErrorResponse, description="Not authenticated"),
    406: OpenApiResponse(ErrorResponse, description="The client does not accept JSON"),
    # API_THROTTLE_USER / API_THROTTLE_ANON (a request refused with 401 counts too).
    429: OpenApiResponse(ErrorResponse, description="Too many requests; retry after Retry-After seconds"),
    503: OpenApiResponse(
        ErrorResponse, description="The database is unavailable; retry after Retry-After seconds"
    ),
}
# The contract's PATCH: not authenticated, or not permitted.
AUTH_ERROR_RESPONSES = {
    401: COMMON_ERROR_RESPONSES[401],
    403: OpenApiResponse(ErrorResponse, description="Permission denied"),
}
# Unsafe methods: a session-authenticated request without its CSRF token is refused.
CSRF_ERROR_RESPONSE = {403: OpenApiResponse(ErrorResponse, description="Permission denied (CSRF)")}
BODY_ERROR_RESPONSES = {
    413: OpenApiResponse(ErrorResponse, description="Request body too large"),
    415: OpenApiResponse(ErrorResponse, description="The body is not application/json"),
    422: OpenApiResponse(HTTPValidationError, description="Validation Error"),
}
NOT_FOUND_RESPONSE = {404: OpenApiResponse(ErrorResponse, description="Execution not found")}

ETAG_HEADER = "ETag"
IF_MATCH_PARAMETER = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Change the execution only if it is still the version this ETag names (from GET). "
        "A strong ETag, or a list of them, or *; weak or unknown tags never match. "
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
IDEMPOTENT_REPLAYED_HEADER = "Idempotent-Replayed"


def _page_size_parameter(items: str) -> OpenApiParameter:
    """`page_size`, as the list and the change feed both take it."""
    return OpenApiParameter(
        PAGE_SIZE_PARAMETER,
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
        OpenApiParameter.QUERY,
        description=f"{items} per page, at most {MAX_PAGE_SIZE}",
    )


LIST_PARAMETERS = [
    OpenApiParameter(
        CURSOR_PARAMETER,
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        description="next_cursor of the previous page; absent for the first page",
    ),
    _page_size_parameter("Executions"),
]


FEED_PARAMETERS = [
    OpenApiParameter(
        AFTER_PARAMETER,
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        description="next_cursor of the previous page; absent to start from the oldest change",
    ),
    _page_size_parameter("Changes"),
]


# The list's page is one object, not a list of them (drf-spectacular assumes a list action
# answers an array).
set_override(schemas.ExecutionList, "many", False)
set_override(schemas.StatusChangeFeed, "many", False)


def _execution_body(execution: Execution) -> dict:
    return schemas.Execution.from_model(execution).model_dump(mode="json")


def _execution_response(execution: Execution, status_code=status.HTTP_200_OK, headers=None) -> Response:
    body = _execution_body(execution)
    return Response(
        body, status=status_code, headers={ETAG_HEADER: etag_for(execution.updated_at), **(headers or {})}
    )


def _created_response(request, body: dict, headers=None) -> Response:
    """201 for a new execution's body (or the stored body of the original 201, replayed)."""
    execution = schemas.Execution.model_validate(body)
    location = request.build_absolute_uri(reverse("execution-detail", kwargs={"execution_id": execution.id}))
    return Response(
        body,
        status=status.HTTP_201_CREATED,
        headers={"Location": location, ETAG_HEADER: etag_for(execution.updated_at), **(headers or {})},
    )


class DescriptionOnlyMetadata(SimpleMetadata):
    """OPTIONS answers: name, description, media types. DRF's "actions" describe a serializer
    this view does not have (the bodies are pydantic models; /api/schema/ describes them)."""

    def determine_actions(self, request, view):
        return {}


class ExecutionViewSet(viewsets.GenericViewSet):
    # Any text reaches the view, so that an id that is not a UUID is answered like a
    # missing execution (404 EXECUTION_NOT_FOUND), as the contract says.
    lookup_url_kwarg = "execution_id"
    lookup_value_regex = "[^/]+"
    metadata_class = DescriptionOnlyMetadata
    # For the schema's query parameters; list() applies the FilterSet itself so that its
    # errors join the other query errors in one 422.
    queryset = Execution.objects.none()
    filter_backends = [DjangoFilterBackend]
    filterset_class = ExecutionFilter

    @extend_schema(
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
    )
    def partial_update(self, request, execution_id):
        body = parse_body(request, ExecutionStatusUpdateRequest)
        result = execution_change_status(
            execution_id=execution_id,
            status=body.status,
            error_info=body.error_info,
            actor=request.user,
            channel=ChangeChannel.API,
            correlation_id=request.correlation_id,
            visible_to=request.user,
            expected_updated_at=expected_versions(request.headers.get("If-Match")),
        )
        return Response(ExecutionStatusUpdateResponse.from_result(result).model_dump(mode="json"))

    @extend_schema(
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
    )
    def create(self, request):
        idempotency_key = parse_idempotency_key(request.headers)
        body = parse_body(request, schemas.ExecutionCreateRequest)
        if idempotency_key is None:
            execution = execution_create(name=body.name, metadata=body.metadata, created_by=request.user)
            return _created_response(request, _execution_body(execution))
        result = execution_create_idempotent(
            idempotency_key=idempotency_key,
            request_fingerprint=request_fingerprint(body),
            name=body.name,
            metadata=body.metadata,
            created_by=request.user,
            response_body=_execution_body,
        )
        headers = {IDEMPOTENT_REPLAYED_HEADER: "true"} if result.replayed else None
        return _created_response(request, result.response_body, headers)

    @extend_schema(
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
    )
    def retrieve(self, request, execution_id):
        return _execution_response(execution_get(executions_visible_to(request.user), execution_id))

    @extend_schema(
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
    )
    def list(self, request):
        executions, page = parse_list_query(
            request.query_params, executions_listable_by(request.user), self.filterset_class, request
        )
        rows, next_cursor = newest_first_page(
            # The owners in a second query: with a join, SQLite's planner scans and sorts the
            # whole table instead of walking the newest-first index.
            executions.prefetch_related("created_by"),
            page_size=page.page_size,
            cursor=page.cursor,
        )
        next_url = None
        if next_cursor is not None:
            next_url = replace_query_param(request.build_absolute_uri(), CURSOR_PARAMETER, next_cursor)
        body = schemas.ExecutionList(
            results=[schemas.Execution.from_model(row) for row in rows],
            next_cursor=next_cursor,
            next=next_url,
        )
        return Response(body.model_dump(mode="json"))

    @extend_schema(
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
    )
    @action(detail=True, methods=["post"])
    def heartbeat(self, request, execution_id):
        result = execution_heartbeat(execution_id=execution_id, visible_to=request.user)
        body = schemas.ExecutionHeartbeatResponse(
            execution_id=result.execution_id, status="running", last_heartbeat_at=result.last_heartbeat_at
        )
        return Response(
            body.model_dump(mode="json"), headers={ETAG_HEADER: etag_for(result.last_heartbeat_at)}
        )

    @extend_schema(
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
    )
    @action(detail=True, methods=["get"])
    def history(self, request, execution_id):
        execution = execution_get(executions_visible_to(request.user), execution_id)
        body = schemas.ExecutionHistory(
            execution_id=execution.id,
            results=[
                schemas.ExecutionStatusChange.from_model(change)
                for change in execution_status_changes(execution)
            ],
        )
        return Response(body.model_dump(mode="json"))


class StatusChangeFeedViewSet(viewsets.GenericViewSet):
    metadata_class = DescriptionOnlyMetadata
    # For the schema's query parameters, as on ExecutionViewSet.
    queryset = ExecutionStatusChange.objects.none()
    filter_backends = [DjangoFilterBackend]
    filterset_class = StatusChangeFilter

    @extend_schema(
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
    )
    def list(self, request):
        changes, page = parse_list_query(
            request.query_params,
            status_changes_visible_to(request.user),
            self.filterset_class,
            request,
            FeedQuery,
        )
        position = FEED_START if page.after is None else decode_feed_cursor(page.after)
        rows, last, has_more = page_within_json_budget(
            status_changes_after(changes, position),
            page_size=page.page_size,
            position_fields=["transaction_id", "id"],
            json_fields=["error_info"],
        )
        position = last or position
        body = schemas.StatusChangeFeed(
            results=[schemas.StatusChangeFeedItem.from_model(row) for row in rows],
            next_cursor=encode_feed_cursor(position),
            has_more=has_more,
        )
        return Response(body.model_dump(mode="json"))
