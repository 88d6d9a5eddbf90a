"""The OpenAPI declarations of the notification endpoints, their deliveries and replay."""

from drf_spectacular.drainage import set_override
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view

from .. import notification_schemas as bodies
from ..pagination import CURSOR_PARAMETER, ID_CURSOR_FORMAT, PAGE_CURSOR_FORMAT
from ..schemas import ErrorResponse, HTTPValidationError
from .common import BODY_ERROR_RESPONSES, COMMON_ERROR_RESPONSES, CSRF_ERROR_RESPONSE, page_size_parameter

TAG = "notifications"
ENDPOINT_ID_PARAMETER = OpenApiParameter(
    "endpoint_id", {"type": "string", "title": "Endpoint Id"}, OpenApiParameter.PATH, required=True
)
MESSAGE_ID_PARAMETER = OpenApiParameter(
    "message_id",
    {"type": "string", "title": "Message Id"},
    OpenApiParameter.PATH,
    required=True,
    description="The delivery's id: its webhook-id (msg_...)",
)
NOT_FOUND = {404: OpenApiResponse(ErrorResponse, description="Notification endpoint not found")}
DELIVERY_NOT_FOUND = {
    404: OpenApiResponse(ErrorResponse, description="Notification endpoint or delivery not found")
}
QUERY_ERROR = {422: OpenApiResponse(HTTPValidationError, description="Invalid query parameters or cursor")}


def _cursor_parameters(items: str, cursor_format: str) -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            CURSOR_PARAMETER,
            # Opaque (a position the API encoded): tests/fuzz/hooks.py teaches the fuzzer the format.
            {"type": "string", "minLength": 1, "format": cursor_format},
            OpenApiParameter.QUERY,
            description="next_cursor of the previous page; absent for the first page",
        ),
        page_size_parameter(items),
    ]


# A list's page is one object, not a list of them (drf-spectacular assumes a list action
# answers an array).
set_override(bodies.NotificationEndpointList, "many", False)
set_override(bodies.NotificationDeliveryList, "many", False)

WRITE_ERRORS = {**COMMON_ERROR_RESPONSES, **CSRF_ERROR_RESPONSE}

notification_endpoints_schema = extend_schema_view(
    create=extend_schema(
        summary="Create Notification Endpoint",
        tags=[TAG],
        description=(
            "A webhook, a Slack incoming webhook or email addresses, owned by the caller, told about "
            "the events it chooses of what the caller may see (everything, for managers). The answer "
            "carries the signing secret: the only time it is shown."
        ),
        operation_id="create_notification_endpoint",
        request=bodies.NotificationEndpointCreateRequest,
        responses={
            201: OpenApiResponse(
                bodies.NotificationEndpointSecretResponse, description="Created; Location names it"
            ),
            **WRITE_ERRORS,
            **BODY_ERROR_RESPONSES,
        },
    ),
    list=extend_schema(
        summary="List Notification Endpoints",
        tags=[TAG],
        description=(
            "The caller's endpoints (every endpoint, for managers), newest first, one page at a time. "
            "Unknown query parameters are refused (422)."
        ),
        operation_id="list_notification_endpoints",
        parameters=_cursor_parameters("Endpoints", PAGE_CURSOR_FORMAT),
        responses={
            200: OpenApiResponse(bodies.NotificationEndpointList, description="One page"),
            **COMMON_ERROR_RESPONSES,
            **QUERY_ERROR,
        },
    ),
    retrieve=extend_schema(
        summary="Get Notification Endpoint",
        tags=[TAG],
        description="One endpoint (without its secret).",
        operation_id="get_notification_endpoint",
        parameters=[ENDPOINT_ID_PARAMETER],
        responses={
            200: OpenApiResponse(bodies.NotificationEndpointResponse, description="The endpoint"),
            **COMMON_ERROR_RESPONSES,
            **NOT_FOUND,
        },
    ),
    partial_update=extend_schema(
        summary="Update Notification Endpoint",
        tags=[TAG],
        description=(
            "Change the fields given. `enabled: false` stops its deliveries; `enabled: true` starts "
            "them again, also for an endpoint the service disabled (410 Gone, or 5 days of failures)."
        ),
        operation_id="update_notification_endpoint",
        parameters=[ENDPOINT_ID_PARAMETER],
        request=bodies.NotificationEndpointUpdateRequest,
        responses={
            200: OpenApiResponse(bodies.NotificationEndpointResponse, description="The endpoint, changed"),
            **WRITE_ERRORS,
            **BODY_ERROR_RESPONSES,
            **NOT_FOUND,
        },
    ),
    destroy=extend_schema(
        summary="Delete Notification Endpoint",
        tags=[TAG],
        description="Delete the endpoint, its pending messages and its delivery log.",
        operation_id="delete_notification_endpoint",
        parameters=[ENDPOINT_ID_PARAMETER],
        responses={204: OpenApiResponse(None, description="Deleted"), **WRITE_ERRORS, **NOT_FOUND},
    ),
    rotate_secret=extend_schema(
        summary="Rotate Notification Endpoint Secret",
        tags=[TAG],
        description=(
            "A new signing secret, shown in this answer only. For 24 hours messages carry a "
            "signature with the previous secret too, so a receiver can switch without losing one."
        ),
        operation_id="rotate_notification_endpoint_secret",
        parameters=[ENDPOINT_ID_PARAMETER],
        request=None,
        responses={
            200: OpenApiResponse(
                bodies.NotificationEndpointSecretResponse, description="The endpoint with its new secret"
            ),
            **WRITE_ERRORS,
            **NOT_FOUND,
        },
    ),
    send_test=extend_schema(
        summary="Send Test Notification",
        tags=[TAG],
        description=(
            "Queue a notification.test event for the endpoint, delivered at once like any message "
            "(signed, retried, logged), whatever events it chose. Follow it in its deliveries."
        ),
        operation_id="send_notification_endpoint_test",
        parameters=[ENDPOINT_ID_PARAMETER],
        request=None,
        responses={
            202: OpenApiResponse(bodies.NotificationDelivery, description="Queued"),
            **WRITE_ERRORS,
            **NOT_FOUND,
        },
    ),
    replay_failed=extend_schema(
        summary="Replay Failed Notification Deliveries",
        tags=[TAG],
        description="Send again every failed message of the endpoint created since a time.",
        operation_id="replay_failed_notification_deliveries",
        parameters=[ENDPOINT_ID_PARAMETER],
        request=bodies.NotificationReplayRequest,
        responses={
            202: OpenApiResponse(bodies.NotificationReplayResponse, description="Queued"),
            **WRITE_ERRORS,
            **BODY_ERROR_RESPONSES,
            **NOT_FOUND,
        },
    ),
)

notification_deliveries_schema = extend_schema_view(
    list=extend_schema(
        summary="List Notification Deliveries",
        tags=[TAG],
        description=(
            "The endpoint's messages, newest first, each with every attempt to deliver it (time, HTTP "
            "status, latency, error, the first 1 KB of the answer). Unknown query parameters are "
            "refused (422)."
        ),
        operation_id="list_notification_deliveries",
        parameters=[ENDPOINT_ID_PARAMETER, *_cursor_parameters("Deliveries", ID_CURSOR_FORMAT)],
        responses={
            200: OpenApiResponse(bodies.NotificationDeliveryList, description="One page"),
            **COMMON_ERROR_RESPONSES,
            **NOT_FOUND,
            **QUERY_ERROR,
        },
    ),
    replay=extend_schema(
        summary="Replay Notification Delivery",
        tags=[TAG],
        description=(
            "Send a delivered or failed message again, with the same webhook-id and a new retry "
            "schedule. A pending one is left as it is (it is due, or being retried)."
        ),
        operation_id="replay_notification_delivery",
        parameters=[ENDPOINT_ID_PARAMETER, MESSAGE_ID_PARAMETER],
        request=None,
        responses={
            202: OpenApiResponse(bodies.NotificationDelivery, description="Queued (or still pending)"),
            **WRITE_ERRORS,
            **DELIVERY_NOT_FOUND,
        },
    ),
    retrieve=extend_schema(
        summary="Get Notification Delivery",
        tags=[TAG],
        description="One message of the endpoint, with every attempt to deliver it.",
        operation_id="get_notification_delivery",
        parameters=[ENDPOINT_ID_PARAMETER, MESSAGE_ID_PARAMETER],
        responses={
            200: OpenApiResponse(bodies.NotificationDelivery, description="The delivery"),
            **COMMON_ERROR_RESPONSES,
            **DELIVERY_NOT_FOUND,
        },
    ),
)
