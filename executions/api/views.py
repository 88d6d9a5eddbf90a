"""The executions resource. Views are thin: parse, call the service, render."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.response import Response

from ..models import ChangeChannel
from ..selectors import executions_visible_to
from ..services import execution_change_status
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

# Error answers every authenticated operation can give.
AUTH_ERROR_RESPONSES = {
    401: OpenApiResponse(ErrorResponse, description="Not authenticated"),
    403: OpenApiResponse(ErrorResponse, description="Permission denied"),
}


class ExecutionViewSet(viewsets.GenericViewSet):
    # Any text reaches the view, so that an id that is not a UUID is answered like a
    # missing execution (404 EXECUTION_NOT_FOUND), as the contract says.
    lookup_url_kwarg = "execution_id"
    lookup_value_regex = "[^/]+"

    @extend_schema(
        summary="Update Execution Status",
        tags=["executions"],
        description="Update execution status.",
        operation_id="update_execution_status_api_v1_executions__execution_id__patch",
        parameters=[EXECUTION_ID_PARAMETER],
        request=ExecutionStatusUpdateRequest,
        responses={
            200: OpenApiResponse(ExecutionStatusUpdateResponse, description="Successful Response"),
            400: OpenApiResponse(ErrorResponse, description="Status change not allowed"),
            **AUTH_ERROR_RESPONSES,
            404: OpenApiResponse(ErrorResponse, description="Resource not found"),
            422: OpenApiResponse(HTTPValidationError, description="Validation Error"),
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
            executions=executions_visible_to(request.user),
        )
        return Response(ExecutionStatusUpdateResponse.from_result(result).model_dump(mode="json"))
