"""Monitors: named jobs expected on a schedule, and the record of every change of their state."""

from django.conf import settings
from django.db import models
from django.utils.timezone import now

from ..db.functions import CurrentTransactionId
from ..ids import uuid7
from .execution import Execution

MONITOR_NAME_MAX_LENGTH = 200
MONITOR_SCHEDULE_MAX_LENGTH = 100
MONITOR_TIMEZONE_MAX_LENGTH = 64


class MonitorState(models.TextChoices):
    NEW = "new", "New"  # no run has started since it was created or resumed
    UP = "up", "Up"
    DOWN = "down", "Down"
    PAUSED = "paused", "Paused"


class MonitorStateReason(models.TextChoices):
    MISSED = "missed", "Missed: no run started in time"
    FAILED = "failed", "Failed: a run failed"


# The states the watch checks for a missed start: a down monitor stays down until a run
# succeeds, and a paused one is not watched.
WATCHED_STATES = (MonitorState.NEW, MonitorState.UP)


class MonitorChangeChannel(models.TextChoices):
    """Who made a monitor's state change: a person through one of the executions' channels
    (a run's end inherits its change's channel), or the worker's watch."""

    API = "api", "API"
    ADMIN = "admin", "Admin site"
    COMMAND = "command", "Management command"
    WORKER = "worker", "Worker"


class Monitor(models.Model):
    """A named job expected to run on a schedule: it is down when a run fails, or when no run
    starts by its due moment plus the grace (`late_after`, computed when it changes)."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="monitors")
    name = models.CharField(max_length=MONITOR_NAME_MAX_LENGTH, help_text="Unique per owner.")
    schedule = models.CharField(
        max_length=MONITOR_SCHEDULE_MAX_LENGTH, help_text='"every 90s", "every 1h", or a 5-field cron line.'
    )
    timezone = models.CharField(
        max_length=MONITOR_TIMEZONE_MAX_LENGTH, default="UTC", help_text="IANA name a cron line is read in."
    )
    grace_seconds = models.PositiveIntegerField(
        help_text="How late a start may be before it counts as missed."
    )
    max_runtime_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="How long one run may take; empty: no limit."
    )
    state = models.CharField(max_length=16, choices=MonitorState.choices, default=MonitorState.NEW)
    state_reason = models.CharField(max_length=16, choices=MonitorStateReason.choices, null=True, blank=True)
    schedule_from = models.DateTimeField(
        help_text="What the schedule counts from: the last start, or when created or resumed."
    )
    next_due_at = models.DateTimeField(null=True, blank=True, help_text="When the next run is due.")
    late_after = models.DateTimeField(
        null=True, blank=True, help_text="When it goes down if no run starts: next due plus the grace."
    )
    last_execution = models.ForeignKey(
        Execution, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_started_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=now, editable=False)
    updated_at = models.DateTimeField(default=now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="monitor_name_unique_per_owner")
        ]
        indexes = [
            # The watch's one question, "which watched monitors are late now?", is a range of this.
            models.Index(
                fields=["late_after"],
                name="monitor_watched_late_idx",
                condition=models.Q(state__in=WATCHED_STATES),
            ),
            models.Index(fields=["-created_at", "-id"], name="monitor_newest_idx"),
        ]

    def __str__(self):
        return self.name

    @property
    def paused(self) -> bool:
        return self.state == MonitorState.PAUSED


class MonitorStateChange(models.Model):
    """The record of one change of a monitor's state (or of its reason): who or what, through
    which channel, when, from, to, why, and the run. Written in the transaction of the change."""

    monitor = models.ForeignKey(Monitor, on_delete=models.CASCADE, related_name="state_changes")
    previous_state = models.CharField(max_length=16, choices=MonitorState.choices)
    new_state = models.CharField(max_length=16, choices=MonitorState.choices)
    reason = models.CharField(max_length=16, choices=MonitorStateReason.choices, null=True, blank=True)
    execution = models.ForeignKey(
        Execution,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The run that caused it, if one did.",
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True)
    channel = models.CharField(max_length=16, choices=MonitorChangeChannel.choices)
    correlation_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=now)
    # As on ExecutionStatusChange: the feed of these records orders by (transaction_id, id),
    # see selectors.status_changes_after.
    transaction_id = models.BigIntegerField(
        db_default=CurrentTransactionId(),
        editable=False,
        help_text="PostgreSQL: the id of the transaction that wrote it; SQLite: 0.",
    )

    class Meta:
        indexes = [
            models.Index(fields=["monitor", "created_at"], name="monitor_change_history_idx"),
            models.Index(fields=["transaction_id", "id"], name="monitor_change_feed_idx"),
        ]

    def __str__(self):
        return f"{self.monitor_id}: {self.previous_state} -> {self.new_state}"


class MonitorRunFeedPosition(models.Model):
    """How far the watch has applied the executions' status changes (their feed position,
    selectors.status_changes_after) to the monitors of the runs. One row."""

    transaction_id = models.BigIntegerField(default=0)
    change_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=now)
