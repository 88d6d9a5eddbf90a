"""The executions resource. Views are thin: parse, call the service, render."""

from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.metadata import SimpleMetadata
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from ..models import ChangeChannel, Execution, ExecutionStatusChange
from ..monitors.selectors import monitor_for_run
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
    parse_idempotency_key,
    request_fingerprint,
)
from .openapi.executions import executions_schema, status_change_feed_schema
from .pagination import (
    CURSOR_PARAMETER,
    FeedQuery,
    decode_feed_cursor,
    feed_page,
    newest_first_page,
)
from .schemas import (
    ExecutionStatusUpdateRequest,
    ExecutionStatusUpdateResponse,
)
from .validation import parse_body

ETAG_HEADER = "ETag"
IDEMPOTENT_REPLAYED_HEADER = "Idempotent-Replayed"


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


@executions_schema
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

    def create(self, request):
        idempotency_key = parse_idempotency_key(request.headers)
        body = parse_body(request, schemas.ExecutionCreateRequest)
        run_of = {
            "monitor": monitor_for_run(request.user, body.monitor) if body.monitor else None,
            "channel": ChangeChannel.API,
            "correlation_id": request.correlation_id,
        }
        if idempotency_key is None:
            execution = execution_create(
                name=body.name,
                metadata=body.metadata,
                max_runtime_seconds=body.max_runtime_seconds,
                created_by=request.user,
                **run_of,
            )
            return _created_response(request, _execution_body(execution))
        result = execution_create_idempotent(
            idempotency_key=idempotency_key,
            request_fingerprint=request_fingerprint(body),
            name=body.name,
            metadata=body.metadata,
            max_runtime_seconds=body.max_runtime_seconds,
            created_by=request.user,
            response_body=_execution_body,
            **run_of,
        )
        headers = {IDEMPOTENT_REPLAYED_HEADER: "true"} if result.replayed else None
        return _created_response(request, result.response_body, headers)

    def retrieve(self, request, execution_id):
        return _execution_response(execution_get(executions_visible_to(request.user), execution_id))

    def list(self, request):
        executions, page = parse_list_query(
            request.query_params, executions_listable_by(request.user), self.filterset_class, request
        )
        url = request.build_absolute_uri()
        body = newest_first_page(
            # The owners in a second query: with a join, SQLite's planner scans and sorts the
            # whole table instead of walking the newest-first index.
            executions.prefetch_related("created_by"),
            page_size=page.page_size,
            cursor=page.cursor,
            item=_execution_body,
            next_url=lambda cursor: replace_query_param(url, CURSOR_PARAMETER, cursor),
        )
        return Response(body)

    @action(detail=True, methods=["post"])
    def heartbeat(self, request, execution_id):
        result = execution_heartbeat(execution_id=execution_id, visible_to=request.user)
        body = schemas.ExecutionHeartbeatResponse(
            execution_id=result.execution_id, status="running", last_heartbeat_at=result.last_heartbeat_at
        )
        return Response(
            body.model_dump(mode="json"), headers={ETAG_HEADER: etag_for(result.last_heartbeat_at)}
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


@status_change_feed_schema
class StatusChangeFeedViewSet(viewsets.GenericViewSet):
    metadata_class = DescriptionOnlyMetadata
    # For the schema's query parameters, as on ExecutionViewSet.
    queryset = ExecutionStatusChange.objects.none()
    filter_backends = [DjangoFilterBackend]
    filterset_class = StatusChangeFilter

    def list(self, request):
        changes, page = parse_list_query(
            request.query_params,
            status_changes_visible_to(request.user),
            self.filterset_class,
            request,
            FeedQuery,
        )
        position = FEED_START if page.after is None else decode_feed_cursor(page.after)
        return Response(
            feed_page(
                status_changes_after(changes, position),
                after=position,
                page_size=page.page_size,
                item=lambda change: schemas.StatusChangeFeedItem.from_model(change).model_dump(mode="json"),
            )
        )
