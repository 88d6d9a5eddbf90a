"""Move running executions that stopped showing signs of life out of `running`."""

import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import CharField, F, Func, Value
from django.db.models.functions import Coalesce, JSONObject
from django.utils import timezone
from tqdm import tqdm

from executions.durations import format_duration, parse_duration
from executions.management.arguments import add_batch_arguments, text_argument
from executions.models import ChangeChannel, Execution, ExecutionStatus, statuses_that_can_become
from executions.selectors import executions_stale
from executions.services import execution_change_status_bulk
from executions.text import printable

from ..progress import ProgressStream

DETECTED_BY = "cleanup_stale_executions"
TARGET_STATUSES = [
    status for status in ExecutionStatus.values if ExecutionStatus.RUNNING in statuses_that_can_become(status)
]
SAMPLE_SIZE = 10
SQLITE_CHECKPOINT_PAGES = 10_000


class UtcIsoformat(Func):
    """A timestamp as the text datetime.isoformat() gives for it in UTC
    ("2026-11-29T03:12:44.120000+00:00", no fraction when it is zero), in SQL, so that the
    database writes the reason for a whole batch without a row passing through Python."""

    arity = 1
    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        utc = f"(({sql}) AT TIME ZONE 'UTC')"
        return (
            f"(to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN date_trunc('second', {utc}) = {utc}"
            f" THEN '' ELSE to_char({utc}, '.US') END || '+00:00')",
            (*params, *params, *params, *params),
        )

    def as_sqlite(self, compiler, connection, **extra):
        # Django stores "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC.
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(REPLACE({sql}, ' ', 'T') || '+00:00')", params


class Command(BaseCommand):
    help = (
        "Move running executions with no sign of life (last heartbeat, or creation where there "
        "was none) for longer than --older-than to --status, in batches, through the same "
        "compare-and-set as the API. Safe to run on several hosts at once, and to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            help="How long without a sign of life makes an execution stale: 30m, 6h, 2d "
            "(default: the EXECUTIONS_STALE_AFTER setting).",
        )
        parser.add_argument(
            "--status",
            default=ExecutionStatus.INTERRUPTED,
            choices=TARGET_STATUSES,
            help="The status stale executions move to (default: interrupted).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count and show a sample; change nothing.")
        add_batch_arguments(parser, "Change")
        parser.add_argument("--name", type=text_argument, help="Only executions with exactly this name.")
        parser.add_argument("--json", action="store_true", help="Print a machine-readable summary.")

    def handle(self, *args, **options):
        threshold_text = options["older_than"]
        if threshold_text is None:
            stale_after = settings.EXECUTIONS_STALE_AFTER
            threshold_text = format_duration(stale_after)
        else:
            try:
                stale_after = parse_duration(threshold_text)
            except ValueError as error:
                raise CommandError(f"--older-than: {error}") from None
            threshold_text = threshold_text.strip()
        batch_size = options["batch_size"] or settings.EXECUTIONS_BULK_BATCH_SIZE
        limit = options["limit"]
        status = options["status"]

        started = time.monotonic()
        cutoff_now = timezone.now()
        candidates = Execution.objects.all()
        if options["name"] is not None:
            candidates = candidates.filter(name=options["name"])
        stale = executions_stale(candidates, stale_after, now=cutoff_now)
        summary = {
            "dry_run": options["dry_run"],
            "status": status,
            "older_than": threshold_text,
            "cutoff": (cutoff_now - stale_after).isoformat(),
            "name": options["name"],
            "limit": limit,
        }
        if options["dry_run"]:
            self._dry_run(stale, limit, summary, options["json"])
        else:
            self._run(stale, threshold_text, status, batch_size, limit, summary, options["json"])
        summary["elapsed_seconds"] = round(time.monotonic() - started, 3)
        if options["json"]:
            self.stdout.write(json.dumps(summary))
        elif options["dry_run"]:
            self.stdout.write(
                f"Dry run: {summary['would_change']} execution(s) would become {status} "
                f"(no sign of life for more than {threshold_text}); nothing changed."
            )
        else:
            self.stdout.write(
                f"Changed {summary['changed']}, skipped {summary['skipped']}, "
                f"batches {summary['batches']}, elapsed {summary['elapsed_seconds']:.2f}s "
                f"(to {status}, no sign of life for more than {threshold_text})."
            )

    def _dry_run(self, stale, limit, summary, as_json):
        count = stale.count()
        summary["would_change"] = count if limit is None else min(count, limit)
        sample = [
            {"id": str(pk), "name": name, "last_seen_at": seen_at.isoformat()}
            for pk, name, seen_at in stale.annotate(seen_at=F("last_seen_at"))
            .order_by("seen_at", "pk")
            .values_list("pk", "name", "seen_at")[: min(SAMPLE_SIZE, summary["would_change"])]
        ]
        summary["sample"] = sample
        if not as_json and sample:
            self.stdout.write(f"Sample (oldest first, {len(sample)} of {summary['would_change']}):")
            for row in sample:
                # Escaped: a name written before names were checked (or by another writer) could
                # otherwise clear the operator's screen or forge a line of this sample.
                self.stdout.write(f"  {row['id']}  {printable(row['name'])}  last seen {row['last_seen_at']}")

    def _run(self, stale, threshold_text, status, batch_size, limit, summary, as_json):
        if connection.vendor == "sqlite":
            # Many commits in a row: copy the WAL back into the database (and fsync it) every
            # ~40 MB of changes rather than SQLite's default ~4 MB, which cost more than the
            # changes themselves. This connection only; the file is checkpointed all the same.
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_CHECKPOINT_PAGES}")
        # Why, per execution; the database fills it in (see UtcIsoformat).
        why = JSONObject(
            reason=Value("stale"),
            last_seen_at=UtcIsoformat(Coalesce("last_heartbeat_at", "created_at")),
            threshold=Value(threshold_text),
            detected_by=Value(DETECTED_BY),
        )

        show_progress = self.stdout.isatty() and not as_json
        total = None
        if show_progress:
            total = stale.count()
            if limit is not None:
                total = min(total, limit)
        with tqdm(
            total=total, unit="execution", disable=not show_progress, file=ProgressStream(self.stdout)
        ) as progress:
            done = 0

            def on_batch(result):
                nonlocal done
                progress.update(result.changed + result.skipped - done)
                done = result.changed + result.skipped

            # Oldest sign of life first, along the partial index on it. Staleness is checked
            # again on the locked rows, so an execution that finished or reported since the
            # batch was named is skipped, not overwritten.
            result = execution_change_status_bulk(
                executions=stale,
                in_order_of=Coalesce("last_heartbeat_at", "created_at"),
                status=status,
                channel=ChangeChannel.COMMAND,
                actor=None,
                error_info=why,
                batch_size=batch_size,
                limit=limit,
                on_batch=on_batch,
            )
        summary.update(changed=result.changed, skipped=result.skipped, batches=result.batches)
