"""Writes to notification endpoints: made, changed, disabled and enabled again, deleted, their
signing secret rotated, a test event queued. The API and the admin call these; the worker's
own writes (disabling an endpoint that is gone or failing) are the delivery's.

Every write runs in write_transaction() (on SQLite, what queues it for the writer lock)."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import F
from django.utils import timezone

from ..db.statements import write_transaction
from ..models import (
    PREVIOUS_SECRET_VALID_FOR,
    DisabledReason,
    EventType,
    NotificationEndpoint,
    NotificationMessage,
)
from .signing import new_signing_secret

# The fields of an endpoint its owner sets (the API's and the admin's forms).
SETTABLE_FIELDS = ("description", "url", "emails", "events", "name_prefix", "monitor_id", "enabled")


def _enabled_fields(enabled: bool, now: datetime) -> dict:
    """The fields that say whether an endpoint is enabled, and since when and why not. An
    endpoint enabled again starts afresh: no reason, and its failures forgotten."""
    if enabled:
        return {"enabled": True, "disabled_reason": "", "disabled_at": None, "failing_since": None}
    return {"enabled": False, "disabled_reason": DisabledReason.OWNER, "disabled_at": now}


def notification_endpoint_create(
    *,
    owner,
    kind: str,
    url: str = "",
    emails: list[str] | None = None,
    events: list[str],
    name_prefix: str = "",
    description: str = "",
    monitor_id=None,
    enabled: bool = True,
) -> NotificationEndpoint:
    """A new endpoint of `owner`, with a new signing secret. The caller has validated the
    fields (the API's body, the admin's form), the target URL included (ssrf.check_target_url)."""
    now = timezone.now()
    endpoint = NotificationEndpoint(
        owner=owner,
        kind=kind,
        url=url,
        emails=emails or [],
        events=events,
        name_prefix=name_prefix,
        description=description,
        created_at=now,
        updated_at=now,
        **_enabled_fields(enabled, now),
    )
    if monitor_id is not None:
        endpoint.monitor_id = monitor_id
    with write_transaction():
        endpoint.save(force_insert=True)
    return endpoint


def notification_endpoint_update(endpoint: NotificationEndpoint, **changes) -> NotificationEndpoint:
    """Set the given SETTABLE_FIELDS of `endpoint` (validated by the caller) and save only
    those, so that what the worker writes meanwhile (failing_since, a 410's disabling) stays.
    `enabled` changes only when it differs: enabling an enabled endpoint keeps its record of
    failures."""
    unknown = set(changes) - set(SETTABLE_FIELDS)
    if unknown:
        raise TypeError(f"not settable: {', '.join(sorted(unknown))}")
    now = timezone.now()
    if "enabled" in changes:
        enabled = changes.pop("enabled")
        if enabled != endpoint.enabled:
            changes.update(_enabled_fields(enabled, now))
    if changes.get("monitor_id", ...) is None and not _has_monitor_filter():
        changes.pop("monitor_id", None)
    changes["updated_at"] = now
    for field, value in changes.items():
        setattr(endpoint, field, value)
    with write_transaction(single_statement=True):
        endpoint.save(update_fields=list(changes))
    return endpoint


def _has_monitor_filter() -> bool:
    return any(field.name == "monitor" for field in NotificationEndpoint._meta.get_fields())


def notification_endpoint_delete(endpoint: NotificationEndpoint) -> None:
    """Delete the endpoint, its messages and their delivery log."""
    with write_transaction():
        endpoint.delete()


@dataclass(frozen=True)
class RotatedSecret:
    secret: str
    previous_secret_expires_at: datetime


def notification_endpoint_rotate_secret(endpoint: NotificationEndpoint) -> RotatedSecret:
    """Give the endpoint a new signing secret; the one it had keeps signing (beside the new
    one) for PREVIOUS_SECRET_VALID_FOR, so that receivers can switch without losing a message.
    The copy of the old secret is made by the database (previous_secret = secret), so two
    rotations at once each keep a secret that was really in use. A secret rotated away
    before its 24 hours are up is dropped: the newest previous secret is the one kept."""
    now = timezone.now()
    secret = new_signing_secret()
    expires_at = now + PREVIOUS_SECRET_VALID_FOR
    with write_transaction(single_statement=True):
        NotificationEndpoint.objects.filter(pk=endpoint.pk).update(
            previous_secret=F("secret"),
            secret=secret,
            previous_secret_expires_at=expires_at,
            updated_at=now,
        )
    endpoint.refresh_from_db(fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
    return RotatedSecret(secret=secret, previous_secret_expires_at=expires_at)


def endpoint_test_event_data(endpoint: NotificationEndpoint) -> dict:
    """The `data` of a test event: which endpoint it was sent to, and that it is a test."""
    return {
        "endpoint_id": str(endpoint.pk),
        "description": endpoint.description,
        "message": "A test event: this endpoint receives notifications from the executions service.",
    }


def notification_endpoint_send_test(endpoint: NotificationEndpoint) -> NotificationMessage:
    """Queue a test event for the endpoint: the worker delivers it at once, like any message
    (signed, retried, logged), whatever events the endpoint chose."""
    now = timezone.now()
    with write_transaction(single_statement=True):
        return NotificationMessage.objects.create(
            endpoint=endpoint,
            event_type=EventType.TEST,
            # Test events of one endpoint are ordered among themselves, and hold up nothing else.
            subject_id=f"test:{endpoint.pk}",
            occurred_at=now,
            payload=endpoint_test_event_data(endpoint),
            next_attempt_at=now,
            created_at=now,
        )
