"""Notifications: where to tell someone about a change (endpoints), what to tell them (one
message per endpoint and event, the outbox), and every try to tell them (the delivery log).

The worker fills the outbox from the durable audit records in feed order, keeping its place
in NotificationFeedPosition, and delivers what is due (executions/notifications/)."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from ..ids import uuid7
from ..webhook_signing import new_signing_secret, new_webhook_id
from .fields import ExactJSONField
from .monitor import Monitor


class EndpointKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook"
    SLACK = "slack", "Slack"
    EMAIL = "email", "Email"


class EventType(models.TextChoices):
    EXECUTION_COMPLETED = "execution.completed", "Execution completed"
    EXECUTION_FAILED = "execution.failed", "Execution failed"
    EXECUTION_CANCELLED = "execution.cancelled", "Execution cancelled"
    EXECUTION_INTERRUPTED = "execution.interrupted", "Execution interrupted"
    MONITOR_DOWN = "monitor.down", "Monitor down"
    MONITOR_UP = "monitor.up", "Monitor up"
    # Sent only on request (the endpoint's "send a test event"); nobody subscribes to it.
    TEST = "notification.test", "Test event"


# What an endpoint may subscribe to: every type but the test event.
SUBSCRIBABLE_EVENT_TYPES = tuple(value for value in EventType.values if value != EventType.TEST)


class DisabledReason(models.TextChoices):
    OWNER = "owner", "Disabled by its owner or an operator"
    GONE = "gone", "The receiver answered 410 Gone"
    FAILING = "failing", "Every delivery failed for too long"


# The signing secret that a rotation replaces keeps verifying (messages are signed with both)
# for this long, so receivers can switch without losing a message.
PREVIOUS_SECRET_VALID_FOR = timedelta(hours=24)
NOTIFICATION_URL_MAX_LENGTH = 2000


class NotificationEndpoint(models.Model):
    """Where one user wants to be told about changes: a webhook URL, a Slack incoming
    webhook, or email addresses; which events; and which executions or monitors."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notification_endpoints",
        help_text="Receives only what this user may see (all with manage_all_executions).",
    )
    kind = models.CharField(max_length=16, choices=EndpointKind.choices)
    description = models.CharField(max_length=200, blank=True, help_text="What it is for, for people.")
    url = models.URLField(
        max_length=NOTIFICATION_URL_MAX_LENGTH,
        blank=True,
        help_text="Webhook and Slack: where messages are POSTed. Empty for email.",
    )
    emails = models.JSONField(default=list, blank=True, help_text="Email: the addresses, a JSON list.")
    events = models.JSONField(default=list, help_text="The event types it receives, a JSON list.")
    name_prefix = models.CharField(
        max_length=200, blank=True, help_text="Only executions whose name starts with this; empty: all."
    )
    # An endpoint about one monitor has no reason to exist without it: it goes with it.
    monitor = models.ForeignKey(
        Monitor,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notification_endpoints",
        help_text="Only this monitor's events (monitor.*); empty: every one the owner sees.",
    )
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=16, choices=DisabledReason.choices, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="First failure since the last success; 5 days of failures disable it.",
    )
    # Standard Webhooks: "whsec_" and the base64 of the key's random bytes.
    secret = models.CharField(max_length=128, default=new_signing_secret)
    previous_secret = models.CharField(max_length=128, blank=True)
    previous_secret_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Until then messages are signed with the previous secret too."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="notif_endpoint_owner_idx"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.description or self.url or ', '.join(self.emails)}"


class MessageState(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    # Every attempt of the retry schedule failed (or the endpoint is gone): no more tries
    # unless someone replays it.
    FAILED = "failed", "Failed"


class NotificationMessage(models.Model):
    """One event for one endpoint: the outbox row the worker delivers, with retries, until
    it is delivered or the schedule gives up.

    The worker claims a message by moving `next_attempt_at` past the lease (a conditional
    UPDATE on the due time it read), so no two workers send it at once and a killed
    worker's claim simply falls due again. `id` orders the messages of one (endpoint,
    subject): a message is not sent while an earlier one is still pending."""

    endpoint = models.ForeignKey(NotificationEndpoint, on_delete=models.CASCADE, related_name="messages")
    # The Standard Webhooks `webhook-id`: the same on every attempt, so receivers de-duplicate.
    webhook_id = models.CharField(max_length=40, unique=True, default=new_webhook_id, editable=False)
    event_type = models.CharField(max_length=32, choices=EventType.choices)
    # The subject (an execution's or a monitor's id): messages of one endpoint and subject
    # are delivered in order.
    subject_id = models.CharField(max_length=64)
    occurred_at = models.DateTimeField(help_text="When the change happened: the body's timestamp.")
    # The execution's metadata and error_info as they were sent (ExactJSONField: not jsonb,
    # which would change their numbers and key order in what receivers get).
    payload = ExactJSONField(help_text="The event's data: the body's `data`, before any trimming.")
    state = models.CharField(max_length=16, choices=MessageState.choices, default=MessageState.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts made so far.")
    next_attempt_at = models.DateTimeField(
        default=timezone.now, help_text="When it is due next (pending); a claim moves it past the lease."
    )
    claim_token = models.UUIDField(
        null=True, blank=True, editable=False, help_text="The claim of the worker sending it, if any."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When it was delivered or given up.")

    class Meta:
        indexes = [
            # The delivery's questions, per endpoint: has it a message due now, and which
            # are its earliest?
            models.Index(
                fields=["endpoint", "next_attempt_at"],
                name="notif_message_due_idx",
                condition=models.Q(state="pending"),
            ),
            # Per (endpoint, subject) order: is an earlier message still pending?
            models.Index(
                fields=["endpoint", "subject_id", "id"],
                name="notif_message_order_idx",
                condition=models.Q(state="pending"),
            ),
            # An endpoint's delivery log, newest first, and the replay of its failed ones.
            models.Index(fields=["endpoint", "-created_at"], name="notif_message_endpoint_idx"),
            # The retention purge walks finished messages oldest first.
            models.Index(
                fields=["finished_at"],
                name="notif_message_finished_idx",
                condition=models.Q(finished_at__isnull=False),
            ),
        ]

    def __str__(self):
        return f"{self.webhook_id} {self.event_type}"


# The first bytes of a receiver's answer that the delivery log keeps.
RESPONSE_BODY_KEPT_BYTES = 1024


class DeliveryAttempt(models.Model):
    """One try to deliver a message: the delivery log."""

    message = models.ForeignKey(
        NotificationMessage, on_delete=models.CASCADE, related_name="delivery_attempts"
    )
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The receiver's HTTP status; empty when there was no answer."
    )
    latency_ms = models.PositiveIntegerField(help_text="From sending to the answer (or the error).")
    succeeded = models.BooleanField(default=False)
    error = models.CharField(max_length=500, blank=True, help_text="Why it failed, when it did.")
    response_body = models.TextField(blank=True, help_text="The first 1 KB of the answer.")

    class Meta:
        indexes = [models.Index(fields=["message", "attempted_at"], name="delivery_attempt_message_idx")]

    def __str__(self):
        return f"{self.message_id} at {self.attempted_at:%Y-%m-%d %H:%M:%S}: {self.status_code or self.error}"


class NotificationFeed(models.TextChoices):
    EXECUTION_STATUS_CHANGES = "execution_status_changes", "Execution status changes"
    MONITOR_STATE_CHANGES = "monitor_state_changes", "Monitor state changes"


class NotificationFeedPosition(models.Model):
    """How far the fan-out has read one audit feed: (transaction_id, id) of the last record
    turned into messages. Advanced in the transaction that creates those messages, so each
    change is fanned out once and a rolled-back one never."""

    feed = models.CharField(max_length=32, choices=NotificationFeed.choices, primary_key=True)
    transaction_id = models.BigIntegerField(default=0)
    change_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"{self.feed} at ({self.transaction_id}, {self.change_id})"
