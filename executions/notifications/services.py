"""Writes to notification endpoints and messages: make, change and rotate an endpoint (its
target checked), send a test event, and replay messages."""

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db.models import QuerySet
from django.utils import timezone

from ..models import (
    PREVIOUS_SECRET_VALID_FOR,
    SUBSCRIBABLE_EVENT_TYPES,
    DisabledReason,
    EndpointKind,
    EventType,
    MessageState,
    NotificationEndpoint,
    NotificationMessage,
)
from ..monitors.selectors import monitors_visible_to
from ..statements import write_transaction
from ..webhook_signing import new_signing_secret
from .ssrf import TargetRefused, check_target_url

# More addresses than this is a mailing list's job.
MAX_EMAILS = 20
_EDITABLE_FIELDS = ("kind", "description", "url", "emails", "events", "name_prefix", "monitor")


class InvalidEndpoint(ValueError):
    """An endpoint's field has a value it may not have: `field` names it, the message says
    why for a person (the API answers it as a 422 item of that field)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def check_endpoint_fields(
    *, kind: str, url: str, emails: list, events: list, owner=None, monitor=None
) -> None:
    """Raise InvalidEndpoint unless the fields fit together: a webhook or Slack endpoint has
    an http(s) URL to a public address (ssrf.check_target_url) and no emails; an email
    endpoint has 1 to MAX_EMAILS valid addresses and no URL; events are known, at least one;
    a monitor, if any, is one `owner` may see."""
    if kind not in EndpointKind.values:
        raise InvalidEndpoint("kind", f"must be one of {', '.join(EndpointKind.values)}")
    if kind == EndpointKind.EMAIL:
        if url:
            raise InvalidEndpoint("url", "an email endpoint has no URL")
        if not emails:
            raise InvalidEndpoint("emails", "an email endpoint needs at least one address")
        if len(emails) > MAX_EMAILS:
            raise InvalidEndpoint("emails", f"at most {MAX_EMAILS} addresses")
        for address in emails:
            try:
                EmailValidator()(address)
            except ValidationError:
                raise InvalidEndpoint("emails", f"{address!r} is not an email address") from None
    else:
        if emails:
            raise InvalidEndpoint("emails", f"a {kind} endpoint has a URL, not email addresses")
        if not url:
            raise InvalidEndpoint("url", f"a {kind} endpoint needs a URL")
        try:
            check_target_url(url)
        except TargetRefused as refused:
            raise InvalidEndpoint("url", str(refused)) from None
    if not events:
        raise InvalidEndpoint("events", "choose at least one event")
    unknown = [event for event in events if event not in SUBSCRIBABLE_EVENT_TYPES]
    if unknown:
        raise InvalidEndpoint(
            "events", f"unknown event {unknown[0]!r}: one of {', '.join(SUBSCRIBABLE_EVENT_TYPES)}"
        )
    if monitor is not None and not monitors_visible_to(owner).filter(pk=monitor.pk).exists():
        raise InvalidEndpoint("monitor", "no such monitor")


def notification_endpoint_create(
    *,
    owner,
    kind: str,
    events: list[str],
    url: str = "",
    emails: list[str] | None = None,
    name_prefix: str = "",
    monitor=None,
    description: str = "",
) -> NotificationEndpoint:
    """A new enabled endpoint of `owner`, with a new signing secret (`endpoint.secret`: show
    it once). `name_prefix` filters the execution.* events, `monitor` the monitor.* ones.
    Raises InvalidEndpoint."""
    emails = list(emails or [])
    check_endpoint_fields(kind=kind, url=url, emails=emails, events=events, owner=owner, monitor=monitor)
    with write_transaction():
        return NotificationEndpoint.objects.create(
            owner=owner,
            kind=kind,
            url=url,
            emails=emails,
            events=list(dict.fromkeys(events)),
            name_prefix=name_prefix,
            monitor=monitor,
            description=description,
        )


def notification_endpoint_update(endpoint: NotificationEndpoint, **changes) -> NotificationEndpoint:
    """Change some of kind, description, url, emails, events, name_prefix, monitor; the
    result is checked as a whole. Raises InvalidEndpoint."""
    unknown = set(changes) - set(_EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"not editable here: {', '.join(sorted(unknown))}")
    merged = {field: changes.get(field, getattr(endpoint, field)) for field in _EDITABLE_FIELDS}
    check_endpoint_fields(
        kind=merged["kind"],
        url=merged["url"],
        emails=merged["emails"],
        events=merged["events"],
        owner=endpoint.owner,
        monitor=merged["monitor"],
    )
    merged["events"] = list(dict.fromkeys(merged["events"]))
    with write_transaction():
        NotificationEndpoint.objects.filter(pk=endpoint.pk).update(**merged, updated_at=timezone.now())
    endpoint.refresh_from_db()
    return endpoint


def notification_endpoint_set_enabled(endpoint: NotificationEndpoint, enabled: bool) -> NotificationEndpoint:
    """Enable (clearing why it was disabled, and its failing streak: its pending messages go
    out again) or disable it (by its owner or an operator; nothing is sent meanwhile, pending
    messages wait)."""
    now = timezone.now()
    if enabled:
        changes = {"enabled": True, "disabled_reason": "", "disabled_at": None, "failing_since": None}
    else:
        changes = {"enabled": False, "disabled_reason": DisabledReason.OWNER, "disabled_at": now}
    with write_transaction():
        NotificationEndpoint.objects.filter(pk=endpoint.pk, enabled=not enabled).update(
            **changes, updated_at=now
        )
    endpoint.refresh_from_db()
    return endpoint


def notification_endpoint_rotate_secret(endpoint: NotificationEndpoint, now: datetime | None = None) -> str:
    """A new signing secret for `endpoint`, returned (show it once). The one it replaces
    keeps signing too for PREVIOUS_SECRET_VALID_FOR, so receivers can switch without a gap."""
    now = now or timezone.now()
    secret = new_signing_secret()
    with write_transaction():
        current = (
            NotificationEndpoint.objects.select_for_update()
            .values_list("secret", flat=True)
            .get(pk=endpoint.pk)
        )
        NotificationEndpoint.objects.filter(pk=endpoint.pk).update(
            secret=secret,
            previous_secret=current,
            previous_secret_expires_at=now + PREVIOUS_SECRET_VALID_FOR,
            updated_at=now,
        )
    endpoint.refresh_from_db()
    return secret


def notification_endpoint_send_test(endpoint: NotificationEndpoint) -> NotificationMessage:
    """Queue a test event for `endpoint` (type `notification.test`), delivered like any
    message, so its deliveries show whether the receiver works."""
    now = timezone.now()
    with write_transaction():
        return NotificationMessage.objects.create(
            endpoint=endpoint,
            event_type=EventType.TEST,
            subject_id=str(endpoint.pk),
            occurred_at=now,
            payload={
                "endpoint": str(endpoint.pk),
                "message": "A test event: this endpoint receives notifications from the executions service.",
            },
        )


@dataclass(frozen=True)
class ReplayResult:
    replayed: int


def _replay(messages: QuerySet, now: datetime) -> int:
    """Make the finished (delivered or failed) messages of `messages` pending again, due now,
    with a new retry schedule; the same webhook-id. Pending ones are on their way already."""
    with write_transaction():
        return messages.exclude(state=MessageState.PENDING).update(
            state=MessageState.PENDING,
            attempts=0,
            next_attempt_at=now,
            finished_at=None,
            claim_token=None,
        )


def notification_message_replay(message: NotificationMessage) -> ReplayResult:
    """Send one message again (delivered or failed). Its endpoint must be enabled for it to go."""
    return ReplayResult(_replay(NotificationMessage.objects.filter(pk=message.pk), timezone.now()))


def notification_messages_replay_failed(endpoint: NotificationEndpoint, *, since: datetime) -> ReplayResult:
    """Send again every message of `endpoint` made since `since` that failed (gave up)."""
    failed = NotificationMessage.objects.filter(
        endpoint=endpoint, state=MessageState.FAILED, created_at__gte=since
    )
    return ReplayResult(_replay(failed, timezone.now()))
