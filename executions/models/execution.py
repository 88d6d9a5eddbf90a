"""The record of every execution, and of every change to its status."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..db.functions import CurrentTransactionId
from ..durations import MAX_DURATION
from ..ids import uuid7
from .fields import ExactJSONField


class ExecutionStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    INTERRUPTED = "interrupted", "Interrupted"


# The one table of allowed status changes: from a status, to the statuses it may become.
# Only a running execution changes; every other status is final. `interrupted` is reachable
# here, but the API's request schema does not offer it: only the system sets it.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    ExecutionStatus.RUNNING: frozenset(
        {
            ExecutionStatus.CANCELLED,
            ExecutionStatus.FAILED,
            ExecutionStatus.COMPLETED,
            ExecutionStatus.INTERRUPTED,
        }
    ),
}


def statuses_that_can_become(target: str) -> list[str]:
    """The statuses from which ALLOWED_TRANSITIONS lets an execution move to `target`."""
    return [source for source, targets in ALLOWED_TRANSITIONS.items() if target in targets]


class ChangeChannel(models.TextChoices):
    API = "api", "API"
    ADMIN = "admin", "Admin site"
    COMMAND = "command", "Management command"
    # The system on its own: the worker process (manage.py run_worker), no user asked.
    WORKER = "worker", "Worker"


# The one place the name's length is set: the API's schema and the commands read it here.
EXECUTION_NAME_MAX_LENGTH = 200
# The longest max runtime an execution may be given (ten years, as for any duration an
# operator writes: executions/durations.py); longer is surely a mistake.
MAX_RUNTIME_SECONDS_LIMIT = int(MAX_DURATION.total_seconds())


class Execution(models.Model):
    """One run of a job or workflow."""

    # Time-ordered (executions/ids.py): inserts and batch walks stay on the index's right-hand pages.
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(
        max_length=EXECUTION_NAME_MAX_LENGTH, help_text="What runs: the job or workflow name."
    )
    status = models.CharField(
        max_length=16,
        choices=ExecutionStatus.choices,
        default=ExecutionStatus.RUNNING,
        db_index=True,
    )
    error_info = ExactJSONField(
        null=True, blank=True, help_text="Why it failed or was stopped, as a JSON object."
    )
    metadata = ExactJSONField(default=dict, blank=True, help_text="Free-form data the creator attached.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
        help_text="The owner; empty for executions the system created.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When it left running.")
    last_heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from a worker; empty until one reports."
    )
    monitor = models.ForeignKey(
        "executions.Monitor",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,  # execution_monitor_runs_idx below serves it
        help_text="The monitor this execution is a run of, if any.",
    )
    max_runtime_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="How long it may run, given at creation; empty: no limit."
    )
    # Computed once, at creation (created_at + max_runtime_seconds), and indexed, so that the
    # worker asks one cheap question ("which running executions are past it?") however many
    # executions there are.
    deadline_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the worker fails it if it is still running; empty: never.",
    )

    class Meta:
        indexes = [
            # Newest-first lists, for everyone and per owner, with id as the tie-breaker
            # that a cursor needs.
            models.Index(fields=["-created_at", "-id"], name="execution_newest_idx"),
            models.Index(fields=["created_by", "-created_at", "-id"], name="execution_owner_newest_idx"),
            models.Index(fields=["status", "-created_at"], name="execution_status_created_idx"),
            models.Index(fields=["status", "updated_at"], name="execution_status_updated_idx"),
            # Stale running executions: last sign of life is the heartbeat, else creation.
            models.Index(
                Coalesce("last_heartbeat_at", "created_at"),
                name="execution_running_seen_idx",
                condition=models.Q(status="running"),
            ),
            # A monitor's runs, newest first (its page, the admin's strip of the last 20).
            models.Index(
                fields=["monitor", "-created_at"],
                name="execution_monitor_runs_idx",
                condition=models.Q(monitor__isnull=False),
            ),
            # The worker's deadline sweep: running executions with a deadline, soonest first
            # (the id breaks ties, as the bulk change's walk needs). Only those rows: small.
            models.Index(
                fields=["deadline_at", "id"],
                name="execution_running_deadline_idx",
                condition=models.Q(status="running", deadline_at__isnull=False),
            ),
            # The retention purge walks finished executions oldest first (purge_executions).
            models.Index(
                fields=["finished_at"],
                name="execution_finished_idx",
                condition=models.Q(finished_at__isnull=False),
            ),
        ]
        permissions = [
            ("manage_all_executions", "Can see and change the executions of every user"),
        ]

    def __str__(self):
        return f"{self.name} ({self.id})"


class ExecutionStatusChange(models.Model):
    """The audit record of one status change: who, through which channel, when, from what,
    to what, and why (`error_info`). Written in the transaction that makes the change."""

    execution = models.ForeignKey(Execution, on_delete=models.PROTECT, related_name="status_changes")
    previous_status = models.CharField(max_length=16, choices=ExecutionStatus.choices)
    new_status = models.CharField(max_length=16, choices=ExecutionStatus.choices)
    error_info = ExactJSONField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who asked for the change; empty when the system made it.",
    )
    # Kept beside the foreign key so the record still says who acted after a user is deleted.
    actor_username = models.CharField(max_length=150, blank=True)
    channel = models.CharField(max_length=16, choices=ChangeChannel.choices)
    correlation_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Set by the database on every insert path (save, bulk_create, INSERT ... SELECT), so
    # none can forget it. The change feed orders by (transaction_id, id): see
    # selectors.status_changes_after for why id order alone misses changes on PostgreSQL.
    transaction_id = models.BigIntegerField(
        db_default=CurrentTransactionId(),
        editable=False,
        help_text="PostgreSQL: the id of the transaction that wrote it; SQLite: 0.",
    )

    class Meta:
        indexes = [
            models.Index(fields=["execution", "created_at"], name="status_change_history_idx"),
            models.Index(fields=["transaction_id", "id"], name="status_change_feed_idx"),
        ]

    def __str__(self):
        return f"{self.execution_id}: {self.previous_status} -> {self.new_status}"


class ApiToken(models.Model):
    """An API key of one user, stored only as its SHA-256 hash. The key itself is shown
    once, when it is made (executions/tokens.py), and cannot be recovered from this row.

    A key carries 256 random bits, so a fast hash is enough: nobody can guess their way back
    from the hash, and authentication stays one indexed lookup."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text='What uses it, e.g. "nightly-worker on host-3".')
    prefix = models.CharField(
        max_length=16, editable=False, help_text="The key's first characters, to tell keys apart."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Refused from then on; empty: never.")
    last_used_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Written at most once a minute."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"
        indexes = [models.Index(fields=["user", "-created_at"], name="api_token_user_newest_idx")]

    def __str__(self):
        return f"{self.prefix}… ({self.name})"


# How long a create's Idempotency-Key is answered at least (the purge may remove it after).
IDEMPOTENCY_KEYS_KEPT_FOR = timedelta(hours=24)


class IdempotencyKey(models.Model):
    """A create request's Idempotency-Key: the same key from the same user with the same body
    is answered with the original response again instead of creating a second execution.
    Kept at least IDEMPOTENCY_KEYS_KEPT_FOR; older ones may be purged."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(
        max_length=64, help_text="SHA-256 of the validated request body: tells a retry from a reuse."
    )
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="+")
    response_body = ExactJSONField(help_text="The original 201's body, answered again to a retry.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")
        ]
        # For the purge of expired keys.
        indexes = [models.Index(fields=["created_at"], name="idempotency_key_created_idx")]

    def __str__(self):
        return f"{self.key} ({self.user_id})"
