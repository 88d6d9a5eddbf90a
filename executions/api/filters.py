"""The filters of the executions list: django-filter does the parsing, the SQL and the
OpenAPI parameters; errors become 422 items located in the query string."""

from datetime import UTC, datetime, timedelta

import pydantic
from django import forms
from django.conf import settings
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema_field

from ..models import (
    ChangeChannel,
    EndpointKind,
    EventType,
    Execution,
    ExecutionStatus,
    ExecutionStatusChange,
    MessageState,
    NotificationEndpoint,
    NotificationMessage,
)
from ..selectors import executions_stale
from .pagination import PageQuery
from .validation import RequestValidationError, validation_items


class _StatusesField(forms.MultipleChoiceField):
    """Several statuses as repeated parameters (status=a&status=b) or one list (status=a,b)."""

    def to_python(self, value):
        return [part for item in super().to_python(value) for part in item.split(",")]


class StatusesFilter(filters.MultipleChoiceFilter):
    field_class = _StatusesField

    def __init__(self, *args, **kwargs):
        # status is a column of the row, not a relation: no duplicates to remove, and a
        # SELECT DISTINCT would sort every matching row before the page's LIMIT.
        kwargs.setdefault("distinct", False)
        super().__init__(*args, **kwargs)


# The 422 item of a parameter given with no value ("?name=", "?stale="): one rule for every
# parameter of the list and the feed, checked before the filters see the query. A form reads
# an empty value as "not given", so "?name=" would otherwise return everything.
EMPTY_VALUE = "empty"
EMPTY_VALUE_MESSAGE = "Give a value, or leave the parameter out"


@extend_schema_field({"type": "string", "minLength": 1})
class NonEmptyCharFilter(filters.CharFilter):
    """A text filter whose schema says what the API takes: at least one character."""


class _UtcTimeField(IsoDateTimeField):
    """ISO 8601 times, compared in UTC, so that no offset reaches the database (PostgreSQL
    takes at most +-15:59). A time the schema allows whose UTC falls outside years 1 to 9999
    (0001-01-01T01:00:00+19:52) is read as that range's edge: no stored time lies beyond
    it, so the filter selects the same rows, where converting it failed (once a 500, then a
    422 for a schema-valid value)."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            return datetime.min.replace(tzinfo=UTC) if value.year == 1 else datetime.max.replace(tzinfo=UTC)


class UtcTimeFilter(filters.IsoDateTimeFilter):
    field_class = _UtcTimeField


class ExecutionFilter(filters.FilterSet):
    status = StatusesFilter(
        choices=ExecutionStatus.choices,
        help_text="Only these statuses: repeat the parameter or separate them with commas",
    )
    name = NonEmptyCharFilter(field_name="name", lookup_expr="exact", help_text="Exactly this name")
    name_contains = NonEmptyCharFilter(
        field_name="name", lookup_expr="icontains", help_text="Names containing this text (case-insensitive)"
    )
    created_after = UtcTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Created at or after this ISO 8601 time"
    )
    created_before = UtcTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Created before this ISO 8601 time"
    )
    updated_after = UtcTimeFilter(
        field_name="updated_at", lookup_expr="gte", help_text="Updated at or after this ISO 8601 time"
    )
    updated_before = UtcTimeFilter(
        field_name="updated_at", lookup_expr="lt", help_text="Updated before this ISO 8601 time"
    )
    # A choice rather than a BooleanFilter, which would silently ignore "stale=maybe".
    stale = filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        method="filter_stale",
        help_text="true: running with no sign of life (heartbeat, or creation) for longer than "
        "EXECUTIONS_STALE_AFTER; false: all others",
    )

    class Meta:
        model = Execution
        fields = []

    def filter_stale(self, executions, name, value):
        stale_after: timedelta = settings.EXECUTIONS_STALE_AFTER
        stale = executions_stale(executions, stale_after)
        if value == "true":
            return stale
        return executions.exclude(pk__in=stale.values("pk"))


class StatusChangeFilter(filters.FilterSet):
    """The change feed's filters."""

    execution_id = filters.UUIDFilter(
        field_name="execution_id", help_text="Only the changes of this execution"
    )
    new_status = StatusesFilter(
        choices=ExecutionStatus.choices,
        help_text="Only changes to these statuses: repeat the parameter or separate them with commas",
    )
    channel = StatusesFilter(
        choices=ChangeChannel.choices,
        help_text=(
            "Only changes made through these channels: repeat the parameter or separate them with commas"
        ),
    )

    class Meta:
        model = ExecutionStatusChange
        fields = []


def filter_errors(filterset, query_params) -> list[dict]:
    """The FilterSet's form errors as 422 items, one per message."""
    items = []
    for name, errors in filterset.form.errors.as_data().items():
        values = query_params.getlist(name)
        for error in errors:
            for message in error.messages:
                items.append(
                    {
                        "type": error.code or "invalid",
                        "loc": ["query", name],
                        "msg": message,
                        "input": values[0] if len(values) == 1 else values,
                    }
                )
    return items


def parse_list_query(query_params, rows, filterset_class, request, page_model=PageQuery):
    """A list's query string as (filtered rows, `page_model` instance), or one 422 that
    reports every problem: unknown parameters, empty values, invalid filter values, bad cursor
    or page size."""
    page_parameters = list(page_model.model_fields)
    known = {*filterset_class.base_filters, *page_parameters}
    empty = [name for name in query_params if name in known and "" in query_params.getlist(name)]
    given = query_params.copy()
    for name in empty:
        del given[name]
    filterset = filterset_class(given, queryset=rows, request=request)
    errors = [
        {
            "type": "extra_forbidden",
            "loc": ["query", name],
            "msg": "Unknown query parameter",
            "input": query_params.get(name),
        }
        for name in query_params
        if name not in known
    ]
    errors += [
        {"type": EMPTY_VALUE, "loc": ["query", name], "msg": EMPTY_VALUE_MESSAGE, "input": ""}
        for name in empty
    ]
    if not filterset.is_valid():
        errors += filter_errors(filterset, given)
    page = None
    try:
        page = page_model.model_validate({name: given[name] for name in page_parameters if name in given})
    except pydantic.ValidationError as exc:
        errors += validation_items(exc, "query")
    if errors:
        raise RequestValidationError(errors)
    return filterset.qs, page


class NotificationEndpointFilter(filters.FilterSet):
    """The notification endpoints list's filters."""

    kind = StatusesFilter(
        choices=EndpointKind.choices,
        help_text="Only these kinds: repeat the parameter or separate them with commas",
    )
    enabled = filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        method="filter_enabled",
        help_text="true: only the enabled ones; false: only the disabled ones",
    )

    class Meta:
        model = NotificationEndpoint
        fields = []

    # `value: str`: the schema's type for the parameter (not the model field's boolean, which
    # would tell clients to send what the choice refuses).
    def filter_enabled(self, endpoints, name, value: str):
        return endpoints.filter(enabled=value == "true")


class NotificationDeliveryFilter(filters.FilterSet):
    """The deliveries list's filters."""

    state = StatusesFilter(
        choices=MessageState.choices,
        help_text="Only messages in these states: repeat the parameter or separate them with commas",
    )
    event_type = StatusesFilter(
        choices=EventType.choices,
        help_text="Only these event types: repeat the parameter or separate them with commas",
    )

    class Meta:
        model = NotificationMessage
        fields = []
