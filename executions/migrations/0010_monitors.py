"""Monitors (issue 20): the monitor, its state history, executions' monitor, and where the
watch starts reading the executions' status changes: at their end, since no execution
changed before this migration can be a run of a monitor."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import executions.db.functions
import executions.ids


def start_the_run_feed_at_its_end(apps, schema_editor):
    ExecutionStatusChange = apps.get_model("executions", "ExecutionStatusChange")
    MonitorRunFeedPosition = apps.get_model("executions", "MonitorRunFeedPosition")
    last = (
        ExecutionStatusChange.objects.using(schema_editor.connection.alias)
        .order_by("-transaction_id", "-id")
        .values_list("transaction_id", "id")
        .first()
    )
    transaction_id, change_id = last or (0, 0)
    MonitorRunFeedPosition.objects.using(schema_editor.connection.alias).create(
        pk=1, transaction_id=transaction_id, change_id=change_id
    )


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0009_execution_deadline"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="MonitorRunFeedPosition",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("transaction_id", models.BigIntegerField(default=0)),
                ("change_id", models.BigIntegerField(default=0)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.CreateModel(
            name="MonitorStateChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "previous_state",
                    models.CharField(
                        choices=[("new", "New"), ("up", "Up"), ("down", "Down"), ("paused", "Paused")],
                        max_length=16,
                    ),
                ),
                (
                    "new_state",
                    models.CharField(
                        choices=[("new", "New"), ("up", "Up"), ("down", "Down"), ("paused", "Paused")],
                        max_length=16,
                    ),
                ),
                (
                    "reason",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("missed", "Missed: no run started in time"),
                            ("failed", "Failed: a run failed"),
                        ],
                        max_length=16,
                        null=True,
                    ),
                ),
                ("actor_username", models.CharField(blank=True, max_length=150)),
                (
                    "channel",
                    models.CharField(
                        choices=[
                            ("api", "API"),
                            ("admin", "Admin site"),
                            ("command", "Management command"),
                            ("worker", "Worker"),
                        ],
                        max_length=16,
                    ),
                ),
                ("correlation_id", models.CharField(blank=True, max_length=128)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "transaction_id",
                    models.BigIntegerField(
                        db_default=executions.db.functions.CurrentTransactionId(),
                        editable=False,
                        help_text="PostgreSQL: the id of the transaction that wrote it; SQLite: 0.",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="Monitor",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=executions.ids.uuid7, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("name", models.CharField(help_text="Unique per owner.", max_length=200)),
                (
                    "schedule",
                    models.CharField(
                        help_text='"every 90s", "every 1h", or a 5-field cron line.', max_length=100
                    ),
                ),
                (
                    "timezone",
                    models.CharField(
                        default="UTC", help_text="IANA name a cron line is read in.", max_length=64
                    ),
                ),
                (
                    "grace_seconds",
                    models.PositiveIntegerField(
                        help_text="How late a start may be before it counts as missed."
                    ),
                ),
                (
                    "max_runtime_seconds",
                    models.PositiveIntegerField(
                        blank=True, help_text="How long one run may take; empty: no limit.", null=True
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[("new", "New"), ("up", "Up"), ("down", "Down"), ("paused", "Paused")],
                        default="new",
                        max_length=16,
                    ),
                ),
                (
                    "state_reason",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("missed", "Missed: no run started in time"),
                            ("failed", "Failed: a run failed"),
                        ],
                        max_length=16,
                        null=True,
                    ),
                ),
                (
                    "schedule_from",
                    models.DateTimeField(
                        help_text="What the schedule counts from: the last start, or when created or resumed."
                    ),
                ),
                (
                    "next_due_at",
                    models.DateTimeField(blank=True, help_text="When the next run is due.", null=True),
                ),
                (
                    "late_after",
                    models.DateTimeField(
                        blank=True,
                        help_text="When it goes down if no run starts: next due plus the grace.",
                        null=True,
                    ),
                ),
                ("last_started_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "last_execution",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="executions.execution",
                    ),
                ),
                (
                    "owner",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="monitors",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
        migrations.AddField(
            model_name="execution",
            name="monitor",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                help_text="The monitor this execution is a run of, if any.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="runs",
                to="executions.monitor",
            ),
        ),
        migrations.AddIndex(
            model_name="execution",
            index=models.Index(
                condition=models.Q(("monitor__isnull", False)),
                fields=["monitor", "-created_at"],
                name="execution_monitor_runs_idx",
            ),
        ),
        migrations.AddField(
            model_name="monitorstatechange",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="monitorstatechange",
            name="execution",
            field=models.ForeignKey(
                blank=True,
                help_text="The run that caused it, if one did.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="executions.execution",
            ),
        ),
        migrations.AddField(
            model_name="monitorstatechange",
            name="monitor",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="state_changes",
                to="executions.monitor",
            ),
        ),
        migrations.AddIndex(
            model_name="monitor",
            index=models.Index(
                condition=models.Q(("state__in", ("new", "up"))),
                fields=["late_after"],
                name="monitor_watched_late_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="monitor",
            index=models.Index(fields=["-created_at", "-id"], name="monitor_newest_idx"),
        ),
        migrations.AddConstraint(
            model_name="monitor",
            constraint=models.UniqueConstraint(
                fields=("owner", "name"), name="monitor_name_unique_per_owner"
            ),
        ),
        migrations.AddIndex(
            model_name="monitorstatechange",
            index=models.Index(fields=["monitor", "created_at"], name="monitor_change_history_idx"),
        ),
        migrations.AddIndex(
            model_name="monitorstatechange",
            index=models.Index(fields=["transaction_id", "id"], name="monitor_change_feed_idx"),
        ),
        migrations.RunPython(start_the_run_feed_at_its_end, migrations.RunPython.noop),
    ]
