"""The notification endpoints resource, its deliveries and their replay. Views are thin:
parse, call the service, render. Who sees what: notifications/selectors.py."""

from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from ..models import NotificationEndpoint, NotificationMessage
from ..monitors.selectors import monitor_for_run
from ..notifications.deletion import notification_endpoint_delete
from ..notifications.selectors import (
    notification_endpoint_get,
    notification_endpoints_visible_to,
    notification_message_get,
    notification_messages_of,
)
from ..notifications.services import (
    notification_endpoint_create,
    notification_endpoint_rotate_secret,
    notification_endpoint_send_test,
    notification_endpoint_set_enabled,
    notification_endpoint_update,
    notification_message_replay,
    notification_messages_replay_failed,
)
from . import notification_schemas as bodies
from .filters import NotificationDeliveryFilter, NotificationEndpointFilter, parse_list_query
from .openapi.notifications import notification_deliveries_schema, notification_endpoints_schema
from .pagination import IdPageQuery, newest_first_page, newest_id_first_page
from .validation import parse_body
from .views import DescriptionOnlyMetadata


def _endpoint_body(endpoint, body_class=bodies.NotificationEndpointResponse) -> dict:
    return body_class.from_model(endpoint).model_dump(mode="json")


def _delivery_body(message) -> dict:
    return bodies.NotificationDelivery.from_model(message).model_dump(mode="json")


@notification_endpoints_schema
class NotificationEndpointViewSet(viewsets.GenericViewSet):
    # Any text reaches the view: an id that is not a UUID is a 404 like a missing endpoint.
    lookup_url_kwarg = "endpoint_id"
    lookup_value_regex = "[^/]+"
    metadata_class = DescriptionOnlyMetadata
    # For the schema's query parameters; list() and deliveries() apply their FilterSets
    # themselves, so that filter errors join the other query errors in one 422.
    queryset = NotificationEndpoint.objects.none()
    filter_backends = [DjangoFilterBackend]
    filterset_class = NotificationEndpointFilter

    def _endpoint(self, request, endpoint_id) -> NotificationEndpoint:
        return notification_endpoint_get(notification_endpoints_visible_to(request.user), endpoint_id)

    @staticmethod
    def _monitor(request, reference: str | None):
        """The monitor a body's `monitor` names (UnknownMonitor, a 422 item, when none)."""
        return None if reference is None else monitor_for_run(request.user, reference)

    def create(self, request):
        body = parse_body(request, bodies.NotificationEndpointCreateRequest)
        endpoint = notification_endpoint_create(
            owner=request.user,
            kind=body.kind,
            url=body.url or "",
            emails=body.emails,
            events=body.events,
            name_prefix=body.name_prefix or "",
            description=body.description,
            monitor=self._monitor(request, body.monitor),
        )
        if not body.enabled:
            endpoint = notification_endpoint_set_enabled(endpoint, False)
        location = request.build_absolute_uri(
            reverse("notification-endpoint-detail", kwargs={"endpoint_id": endpoint.id})
        )
        return Response(
            _endpoint_body(endpoint, bodies.NotificationEndpointSecretResponse),
            status=status.HTTP_201_CREATED,
            headers={"Location": location},
        )

    def list(self, request):
        endpoints, page = parse_list_query(
            request.query_params,
            notification_endpoints_visible_to(request.user),
            NotificationEndpointFilter,
            request,
        )
        page = newest_first_page(
            endpoints.select_related("owner"),
            page_size=page.page_size,
            cursor=page.cursor,
            item=lambda row: bodies.NotificationEndpointResponse.from_model(row).model_dump(mode="json"),
            json_fields=("events", "emails"),
        )
        return Response(page)

    def retrieve(self, request, endpoint_id):
        return Response(_endpoint_body(self._endpoint(request, endpoint_id)))

    def partial_update(self, request, endpoint_id):
        endpoint = self._endpoint(request, endpoint_id)
        context = {"kind": endpoint.kind}
        body = parse_body(request, bodies.NotificationEndpointUpdateRequest, context, optional=True)
        changes = body.changes()
        if "monitor" in changes:
            changes["monitor"] = self._monitor(request, changes["monitor"])
        enabled = changes.pop("enabled", None)
        if changes:
            endpoint = notification_endpoint_update(endpoint, **changes)
        if enabled is not None:
            endpoint = notification_endpoint_set_enabled(endpoint, enabled)
        return Response(_endpoint_body(endpoint))

    def destroy(self, request, endpoint_id):
        notification_endpoint_delete(self._endpoint(request, endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, endpoint_id):
        endpoint = self._endpoint(request, endpoint_id)
        notification_endpoint_rotate_secret(endpoint)
        return Response(_endpoint_body(endpoint, bodies.NotificationEndpointSecretResponse))

    @action(detail=True, methods=["post"], url_path="test")
    def send_test(self, request, endpoint_id):
        message = notification_endpoint_send_test(self._endpoint(request, endpoint_id))
        return Response(_delivery_body(message), status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"], url_path="replay")
    def replay_failed(self, request, endpoint_id):
        endpoint = self._endpoint(request, endpoint_id)
        body = parse_body(request, bodies.NotificationReplayRequest)
        result = notification_messages_replay_failed(endpoint, since=body.since)
        return Response(
            bodies.NotificationReplayResponse(replayed=result.replayed).model_dump(mode="json"),
            status=status.HTTP_202_ACCEPTED,
        )


@notification_deliveries_schema
class NotificationDeliveryViewSet(viewsets.GenericViewSet):
    """An endpoint's deliveries: its messages and every attempt to deliver each."""

    lookup_url_kwarg = "message_id"
    lookup_value_regex = "[^/]+"
    metadata_class = DescriptionOnlyMetadata
    queryset = NotificationMessage.objects.none()
    filter_backends = [DjangoFilterBackend]
    filterset_class = NotificationDeliveryFilter

    def _message(self, request, endpoint_id, message_id) -> NotificationMessage:
        endpoint = notification_endpoint_get(notification_endpoints_visible_to(request.user), endpoint_id)
        return notification_message_get(endpoint, message_id)

    def list(self, request, endpoint_id):
        endpoint = notification_endpoint_get(notification_endpoints_visible_to(request.user), endpoint_id)
        messages, page = parse_list_query(
            request.query_params,
            notification_messages_of(endpoint),
            self.filterset_class,
            request,
            IdPageQuery,
        )
        page = newest_id_first_page(
            messages,
            page_size=page.page_size,
            cursor=page.cursor,
            item=lambda row: bodies.NotificationDelivery.from_model(row).model_dump(mode="json"),
            json_fields=["payload"],
        )
        return Response(page)

    def retrieve(self, request, endpoint_id, message_id):
        return Response(_delivery_body(self._message(request, endpoint_id, message_id)))

    @action(detail=True, methods=["post"])
    def replay(self, request, endpoint_id, message_id):
        message = self._message(request, endpoint_id, message_id)
        notification_message_replay(message)
        message.refresh_from_db()
        return Response(_delivery_body(message), status=status.HTTP_202_ACCEPTED)
