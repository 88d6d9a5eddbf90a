"""The monitors resource. Views are thin: parse, call the service, render."""

from django.db.models import Q
from django_filters import rest_framework as filters
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from ..models import ChangeChannel, Monitor, MonitorState
from ..monitors.selectors import monitor_get, monitor_last_runs, monitor_state_changes, monitors_visible_to
from ..monitors.services import Actor, monitor_create, monitor_delete, monitor_update
from ..selectors import FEED_START
from . import monitor_schemas as bodies
from .filters import parse_list_query
from .openapi.monitors import monitors_schema
from .pagination import (
    CURSOR_PARAMETER,
    FeedQuery,
    decode_cursor,
    decode_feed_cursor,
    encode_cursor,
    encode_feed_cursor,
)
from .validation import parse_body
from .views import DescriptionOnlyMetadata


class MonitorFilter(filters.FilterSet):
    state = filters.ChoiceFilter(choices=MonitorState.choices, help_text="Only monitors in this state")

    class Meta:
        model = Monitor
        fields = ["state"]


def _monitor_body(monitor: Monitor, last_runs: list | None = None) -> dict:
    if last_runs is None:
        last_runs = monitor_last_runs([monitor.id], bodies.LAST_RUNS_SHOWN)[monitor.id]
    return bodies.Monitor.from_model(monitor, last_runs).model_dump(mode="json")


def _actor(request) -> Actor:
    return Actor(request.user, ChangeChannel.API, request.correlation_id)


@monitors_schema
class MonitorViewSet(viewsets.GenericViewSet):
    # Any text reaches the view: an id that is not a UUID is a 404 MONITOR_NOT_FOUND.
    lookup_url_kwarg = "monitor_id"
    lookup_value_regex = "[^/]+"
    metadata_class = DescriptionOnlyMetadata
    queryset = Monitor.objects.none()  # for the schema's query parameters
    filter_backends = [DjangoFilterBackend]
    filterset_class = MonitorFilter

    def create(self, request):
        body = parse_body(request, bodies.MonitorCreateRequest)
        monitor = monitor_create(
            owner=request.user,
            name=body.name,
            schedule=body.schedule,
            timezone_name=body.timezone,
            grace_seconds=body.grace_seconds,
            max_runtime_seconds=body.max_runtime_seconds,
            paused=body.paused,
        )
        location = request.build_absolute_uri(f"{request.path.rstrip('/')}/{monitor.id}")
        return Response(
            _monitor_body(monitor, []), status=status.HTTP_201_CREATED, headers={"Location": location}
        )

    def list(self, request):
        monitors, page = parse_list_query(
            request.query_params, monitors_visible_to(request.user), self.filterset_class, request
        )
        monitors = monitors.select_related("owner").order_by("-created_at", "-id")
        if page.cursor is not None:
            created_at, monitor_id = decode_cursor(page.cursor)
            monitors = monitors.filter(created_at__lte=created_at).filter(
                Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=monitor_id)
            )
        rows = list(monitors[: page.page_size + 1])
        next_cursor = next_url = None
        if len(rows) > page.page_size:
            rows = rows[: page.page_size]
            next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
            next_url = replace_query_param(request.build_absolute_uri(), CURSOR_PARAMETER, next_cursor)
        last_runs = monitor_last_runs([row.id for row in rows], bodies.LAST_RUNS_SHOWN)
        body = bodies.MonitorList(
            results=[bodies.Monitor.from_model(row, last_runs[row.id]) for row in rows],
            next_cursor=next_cursor,
            next=next_url,
        )
        return Response(body.model_dump(mode="json"))

    def retrieve(self, request, monitor_id):
        return Response(_monitor_body(monitor_get(monitors_visible_to(request.user), monitor_id)))

    def partial_update(self, request, monitor_id):
        monitor = monitor_get(monitors_visible_to(request.user), monitor_id)
        # Every field is optional, so the schema does not require a body: none changes nothing.
        has_body = request.META.get("CONTENT_LENGTH", "") not in ("", "0")
        body = parse_body(request, bodies.MonitorUpdateRequest) if has_body else bodies.MonitorUpdateRequest()
        monitor = monitor_update(monitor_id=monitor.id, changes=body.changes(), actor=_actor(request))
        return Response(_monitor_body(monitor))

    def destroy(self, request, monitor_id):
        monitor = monitor_get(monitors_visible_to(request.user), monitor_id)
        monitor_delete(monitor_id=monitor.id)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["get"])
    def history(self, request, monitor_id):
        monitor = monitor_get(monitors_visible_to(request.user), monitor_id)
        _, page = parse_list_query(
            request.query_params, Monitor.objects.none(), _NoFilters, request, FeedQuery
        )
        # Changes of one monitor are made holding its row lock, one after the other, so their
        # id order is the order they committed in: the cursor is the last id served.
        _, after_id = FEED_START if page.after is None else decode_feed_cursor(page.after)
        changes = list(monitor_state_changes(monitor).filter(id__gt=after_id)[: page.page_size + 1])
        has_more = len(changes) > page.page_size
        changes = changes[: page.page_size]
        if changes:
            after_id = changes[-1].id
        body = bodies.MonitorHistory(
            monitor_id=monitor.id,
            results=[bodies.MonitorStateChange.from_model(change) for change in changes],
            next_cursor=encode_feed_cursor((0, after_id)),
            has_more=has_more,
        )
        return Response(body.model_dump(mode="json"))


class _NoFilters(filters.FilterSet):
    class Meta:
        model = Monitor
        fields = []
