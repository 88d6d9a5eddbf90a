"""The notification endpoints' request and response bodies, as pydantic models (as in
schemas.py: they validate with pydantic's own 422 items and are the schema's components).

Which of `url` and `emails` an endpoint takes depends on its kind: the create body reads the
kind from its own `kind` field, the update body from the validation context (the endpoint
being changed), and each reports a misplaced field at that field's location. `monitor` is
looked up by the view once the body is valid (monitors.selectors.monitor_for_run: a name
that designates none is a 422 item at the field, as for an execution's `monitor`).
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.utils import timezone
from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ..models import (
    NOTIFICATION_URL_MAX_LENGTH,
    SUBSCRIBABLE_EVENT_TYPES,
    DisabledReason,
    EndpointKind,
    EventType,
    MessageState,
)
from ..notifications.services import MAX_EMAILS
from ..notifications.ssrf import TargetRefused, check_target_url
from ..text import has_control_characters
from .schemas import NAME_CONTROL_CHARACTERS, NAME_PATTERN, _Body, _check_storable

KindValue = Literal["webhook", "slack", "email"]
assert set(KindValue.__args__) == set(EndpointKind.values)
SubscribableEvent = Literal[
    "execution.completed",
    "execution.failed",
    "execution.cancelled",
    "execution.interrupted",
    "monitor.down",
    "monitor.up",
]
assert set(SubscribableEvent.__args__) == set(SUBSCRIBABLE_EVENT_TYPES)
EventValue = Literal[SubscribableEvent, "notification.test"]
assert {*SubscribableEvent.__args__, "notification.test"} == set(EventType.values)
DisabledReasonValue = Literal["owner", "gone", "failing"]
assert set(DisabledReasonValue.__args__) == set(DisabledReason.values)
MessageStateValue = Literal["pending", "delivered", "failed"]
assert set(MessageStateValue.__args__) == set(MessageState.values)

URL_KINDS = (EndpointKind.WEBHOOK, EndpointKind.SLACK)
EMAIL_MAX_LENGTH = 254  # RFC 5321's limit on a forward path
TEXT_MAX_LENGTH = 200

# The 422 item types of this resource, beside pydantic's own.
URL_REFUSED = "url_refused"
FIELD_NOT_ALLOWED = "field_not_allowed"
EMAIL_INVALID = "email_invalid"
LIST_NOT_UNIQUE = "list_not_unique"
NULL_NOT_ALLOWED = "null_not_allowed"


def _no_control_characters(text: str) -> str:
    _check_storable(text)
    if has_control_characters(text):
        raise PydanticCustomError(
            NAME_CONTROL_CHARACTERS,
            "Text may not contain control characters (U+0000-U+001F, U+007F-U+009F)",
        )
    return text


def _email_address(address: str) -> str:
    address = address.strip()
    try:
        validate_email(address)
    except DjangoValidationError:
        raise PydanticCustomError(EMAIL_INVALID, "Enter a valid email address") from None
    return address


EmailAddress = Annotated[str, Field(max_length=EMAIL_MAX_LENGTH), AfterValidator(_email_address)]
PlainText = Annotated[
    str,
    Field(max_length=TEXT_MAX_LENGTH, json_schema_extra={"pattern": NAME_PATTERN}),
    AfterValidator(_no_control_characters),
]


def _unique(values: list, key=lambda value: value) -> list:
    seen = set()
    for value in values:
        if key(value) in seen:
            raise PydanticCustomError(
                LIST_NOT_UNIQUE, "List items must be unique; {value} is there twice", {"value": value}
            )
        seen.add(key(value))
    return values


def _updating(info: ValidationInfo) -> bool:
    """An update: the endpoint's kind is in the context (a create's is in its body)."""
    return bool(info.context and "kind" in info.context)


def _kind(info: ValidationInfo) -> str | None:
    """The endpoint's kind: the body's own (create), or the endpoint's (update). None when
    the body's kind is itself invalid: its own item says so."""
    return info.context["kind"] if _updating(info) else info.data.get("kind")


def _not_allowed(field: str, kind: str):
    return PydanticCustomError(
        FIELD_NOT_ALLOWED, "A {kind} endpoint takes no {field}", {"kind": kind, "field": field}
    )


def _required(info: ValidationInfo):
    """A field the kind needs: missing from a create, null in an update."""
    if _updating(info):
        return PydanticCustomError(NULL_NOT_ALLOWED, "May be left out, but not null")
    return PydanticCustomError("missing", "Field required")


def checked_url(url: str | None, info: ValidationInfo) -> str | None:
    kind = _kind(info)
    if url is None:
        if kind in URL_KINDS:
            raise _required(info)
        return None
    if kind == EndpointKind.EMAIL:
        raise _not_allowed("url", kind)
    _check_storable(url)
    if any(char.isspace() for char in url) or has_control_characters(url):
        raise PydanticCustomError(URL_REFUSED, "The URL may not contain spaces or control characters")
    try:
        return check_target_url(url)
    except TargetRefused as refused:
        raise PydanticCustomError(URL_REFUSED, "URL refused: {reason}", {"reason": str(refused)}) from None


def checked_emails(emails: list[str] | None, info: ValidationInfo) -> list[str] | None:
    kind = _kind(info)
    if emails is None:
        if kind == EndpointKind.EMAIL:
            raise _required(info)
        return None
    if kind in URL_KINDS:
        raise _not_allowed("emails", kind)
    return _unique(emails, key=str.lower)


_URL_DESCRIPTION = (
    "webhook and slack: where messages are POSTed, http:// or https://, no user or password in "
    "it; addresses on loopback, private, link-local or metadata networks are refused, unless the "
    "service allows private targets (NOTIFICATIONS_ALLOW_PRIVATE_TARGETS). Not for email"
)
_EMAILS_DESCRIPTION = f"email: 1-{MAX_EMAILS} addresses, each once (in any case). Not for webhook or slack"
_EVENTS_DESCRIPTION = "The event types it receives, each once"
_NAME_PREFIX_DESCRIPTION = "Only executions whose name starts with this; null or empty: every execution"
_MONITOR_DESCRIPTION = (
    "Only this monitor's events (monitor.down, monitor.up): its name (one of yours, or for managers "
    "the only one of that name) or its id; null: every monitor"
)


class NotificationEndpointCreateRequest(_Body):
    """Request to create a notification endpoint owned by the caller."""

    model_config = ConfigDict(extra="forbid")

    kind: KindValue = Field(description="webhook (signed JSON POSTs), slack (an incoming webhook) or email")
    url: str | None = Field(
        default=None,
        min_length=1,
        max_length=NOTIFICATION_URL_MAX_LENGTH,
        validate_default=True,
        description=_URL_DESCRIPTION,
    )
    emails: list[EmailAddress] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_EMAILS,
        validate_default=True,
        description=_EMAILS_DESCRIPTION,
    )
    events: list[SubscribableEvent] = Field(
        min_length=1,
        max_length=len(SUBSCRIBABLE_EVENT_TYPES),
        description=_EVENTS_DESCRIPTION,
        json_schema_extra={"uniqueItems": True},
    )
    name_prefix: PlainText | None = Field(default=None, description=_NAME_PREFIX_DESCRIPTION)
    monitor: PlainText | None = Field(default=None, min_length=1, description=_MONITOR_DESCRIPTION)
    description: PlainText = Field(default="", description="What it is for, for people")
    enabled: bool = Field(default=True, description="false: keep it, but send nothing")

    _url = field_validator("url")(checked_url)
    _emails = field_validator("emails")(checked_emails)

    @field_validator("events")
    @classmethod
    def events_unique(cls, events):
        return _unique(events)


class NotificationEndpointUpdateRequest(_Body):
    """Request to change a notification endpoint: only the fields given change. Its kind
    cannot change (make a new endpoint)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None, min_length=1, max_length=NOTIFICATION_URL_MAX_LENGTH, description=_URL_DESCRIPTION
    )
    emails: list[EmailAddress] | None = Field(
        default=None, min_length=1, max_length=MAX_EMAILS, description=_EMAILS_DESCRIPTION
    )
    # Optional, not nullable: left out, it stays as it is; null would mean nothing sensible.
    events: list[SubscribableEvent] = Field(
        default=None,
        min_length=1,
        max_length=len(SUBSCRIBABLE_EVENT_TYPES),
        description=_EVENTS_DESCRIPTION,
        json_schema_extra={"uniqueItems": True},
    )
    name_prefix: PlainText | None = Field(default=None, description=_NAME_PREFIX_DESCRIPTION)
    monitor: PlainText | None = Field(default=None, min_length=1, description=_MONITOR_DESCRIPTION)
    description: PlainText = Field(default=None, description="What it is for, for people")
    enabled: bool = Field(
        default=None,
        description="false: send nothing until enabled again; true: enable it (also one the service "
        "disabled after failing), its record of failures forgotten",
    )

    _url = field_validator("url")(checked_url)
    _emails = field_validator("emails")(checked_emails)

    @field_validator("events")
    @classmethod
    def events_unique(cls, events):
        return _unique(events)

    def changes(self) -> dict[str, Any]:
        """The fields the request gives, as the endpoint stores them (null text as empty)."""
        given = self.model_dump(include=self.model_fields_set)
        for field, empty in (("url", ""), ("name_prefix", ""), ("emails", [])):
            if field in given and given[field] is None:
                given[field] = empty
        return given


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


class NotificationEndpointResponse(_Body):
    """A notification endpoint: where, what and whether to tell."""

    id: UUID
    kind: KindValue
    description: str
    url: str | None = Field(description="webhook and slack; null for email")
    emails: list[str] | None = Field(description="email; null for webhook and slack")
    events: list[SubscribableEvent]
    name_prefix: str | None
    monitor: str | None = Field(description="The monitor's id, when it receives only that monitor's events")
    enabled: bool
    disabled_reason: DisabledReasonValue | None = Field(
        description="Why it is disabled: owner (its owner or an operator), gone (the receiver answered "
        "410), failing (every delivery failed for 5 days)"
    )
    disabled_at: datetime | None
    failing_since: datetime | None = Field(description="First failed delivery since the last success")
    previous_secret_valid_until: datetime | None = Field(
        description="After a rotation: until then messages are signed with the previous secret too"
    )
    owner: str = Field(description="Username of the owner")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def fields_of(cls, endpoint) -> dict:
        url_kind = endpoint.kind in URL_KINDS
        expires = endpoint.previous_secret_expires_at
        return {
            "id": endpoint.id,
            "kind": endpoint.kind,
            "description": endpoint.description,
            "url": endpoint.url if url_kind else None,
            "emails": None if url_kind else list(endpoint.emails),
            "events": list(endpoint.events),
            "name_prefix": endpoint.name_prefix or None,
            "monitor": str(endpoint.monitor_id) if getattr(endpoint, "monitor_id", None) else None,
            "enabled": endpoint.enabled,
            "disabled_reason": endpoint.disabled_reason or None,
            "disabled_at": _utc(endpoint.disabled_at),
            "failing_since": _utc(endpoint.failing_since),
            "previous_secret_valid_until": (
                _utc(expires) if endpoint.previous_secret and expires and expires > timezone.now() else None
            ),
            "owner": endpoint.owner.get_username(),
            "created_at": _utc(endpoint.created_at),
            "updated_at": _utc(endpoint.updated_at),
        }

    @classmethod
    def from_model(cls, endpoint) -> "NotificationEndpointResponse":
        return cls(**cls.fields_of(endpoint))


class NotificationEndpointSecretResponse(NotificationEndpointResponse):
    """A notification endpoint with its signing secret: shown in this answer only."""

    secret: str = Field(
        description="whsec_ and base64: verify each webhook's webhook-signature with it (Standard "
        "Webhooks). Shown once: keep it now"
    )

    @classmethod
    def from_model(cls, endpoint) -> "NotificationEndpointSecretResponse":
        return cls(**cls.fields_of(endpoint), secret=endpoint.secret)


class NotificationEndpointList(_Body):
    """One page of notification endpoints, newest first."""

    results: list[NotificationEndpointResponse]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page"
    )


class NotificationDeliveryAttempt(_Body):
    """One try to deliver a message."""

    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's HTTP status; null when there was no answer")
    latency_ms: int
    succeeded: bool
    error: str | None = Field(description="Why it failed; null when it succeeded")
    response_body: str = Field(description="The first 1 KB of the answer")


class NotificationDelivery(_Body):
    """One message to an endpoint, and every try to deliver it."""

    id: str = Field(description="The message's webhook-id: the same on every try and replay")
    event_type: EventValue
    subject_id: str = Field(description="The execution's or the monitor's id (the endpoint's, for a test)")
    state: MessageStateValue = Field(
        description="pending (to be sent, or retried at next_attempt_at), delivered, failed (every "
        "retry failed, or the endpoint is gone: replay sends it again)"
    )
    attempts: int = Field(description="Tries made")
    next_attempt_at: datetime | None = Field(description="When it is tried next, while pending")
    occurred_at: datetime = Field(description="When the change happened: the body's timestamp")
    created_at: datetime
    finished_at: datetime | None = Field(description="When it was delivered or given up")
    data: dict[str, Any] = Field(description="The event's data, as the body's `data` carries it")
    delivery_attempts: list[NotificationDeliveryAttempt] = Field(description="Newest first")

    @classmethod
    def from_model(cls, message) -> "NotificationDelivery":
        pending = message.state == MessageState.PENDING
        return cls(
            id=message.webhook_id,
            event_type=message.event_type,
            subject_id=message.subject_id,
            state=message.state,
            attempts=message.attempts,
            next_attempt_at=_utc(message.next_attempt_at) if pending else None,
            occurred_at=_utc(message.occurred_at),
            created_at=_utc(message.created_at),
            finished_at=_utc(message.finished_at),
            data=message.payload,
            delivery_attempts=[
                NotificationDeliveryAttempt(
                    attempted_at=_utc(attempt.attempted_at),
                    status_code=attempt.status_code,
                    latency_ms=attempt.latency_ms,
                    succeeded=attempt.succeeded,
                    error=attempt.error or None,
                    response_body=attempt.response_body,
                )
                for attempt in message.delivery_attempts.all()
            ],
        )


class NotificationDeliveryList(_Body):
    """One page of an endpoint's deliveries, newest first."""

    results: list[NotificationDelivery]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page. A page ends early "
        "once its messages' data add up to 1 MiB of JSON"
    )


class NotificationReplayRequest(_Body):
    """Request to send again every failed message of an endpoint since a time."""

    model_config = ConfigDict(extra="forbid")

    since: datetime = Field(
        description="Messages created at or after this ISO 8601 time (naive: UTC) that failed are sent again"
    )

    @field_validator("since", mode="before")
    @classmethod
    def a_string(cls, since):
        # pydantic would read a number as seconds since the epoch; the schema says a date-time.
        if not isinstance(since, str):
            raise PydanticCustomError("datetime_type", "Input should be an ISO 8601 time, as a string")
        return since

    @field_validator("since")
    @classmethod
    def in_utc(cls, since: datetime):
        if since.tzinfo is None:
            return since.replace(tzinfo=UTC)
        try:
            return since.astimezone(UTC)
        except OverflowError:
            # Before year 1 in UTC (0001-01-01T00:00+01:00): since the beginning, every message;
            # after year 9999 (9999-12-31T23:59-01:00): after the end, none.
            return (datetime.min if since.year == 1 else datetime.max).replace(tzinfo=UTC)


class NotificationReplayResponse(_Body):
    """How many failed messages were queued to be sent again."""

    replayed: int
