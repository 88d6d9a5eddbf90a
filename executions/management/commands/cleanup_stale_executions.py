"""Move running executions that stopped showing signs of life out of `running`."""

from django.conf import settings
from django.core.management.base import CommandError
from django.db.models import F
from django.utils import timezone

from executions.durations import format_duration, parse_duration
from executions.models import ChangeChannel, Execution, ExecutionStatus, statuses_that_can_become
from executions.selectors import executions_stale
from executions.services import executions_interrupt_stale
from executions.text import printable

from ..arguments import text_argument
from ..batch import BatchCommand

DETECTED_BY = "cleanup_stale_executions"
TARGET_STATUSES = [
    status for status in ExecutionStatus.values if ExecutionStatus.RUNNING in statuses_that_can_become(status)
]


class Command(BatchCommand):
    help = (
        "Move running executions with no sign of life (last heartbeat, or creation where there "
        "was none) for longer than --older-than to --status, in batches, through the same "
        "compare-and-set as the API. Safe to run on several hosts at once, and to run again."
    )
    verb = "Change"
    would_key = "would_change"

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
        super().add_arguments(parser)
        parser.add_argument("--name", type=text_argument, help="Only executions with exactly this name.")

    def candidates(self, options):
        if options["older_than"] is None:
            self.stale_after = settings.EXECUTIONS_STALE_AFTER
            self.threshold_text = format_duration(self.stale_after)
        else:
            try:
                self.stale_after = parse_duration(options["older_than"])
            except ValueError as error:
                raise CommandError(f"--older-than: {error}") from None
            self.threshold_text = options["older_than"].strip()
        self.now = timezone.now()
        candidates = Execution.objects.all()
        if options["name"] is not None:
            candidates = candidates.filter(name=options["name"])
        summary = {
            "dry_run": options["dry_run"],
            "status": options["status"],
            "older_than": self.threshold_text,
            "cutoff": (self.now - self.stale_after).isoformat(),
            "name": options["name"],
            "limit": options["limit"],
        }
        return executions_stale(candidates, self.stale_after, now=self.now), summary

    def sample(self, candidates, size):
        rows = (
            candidates.annotate(seen_at=F("last_seen_at"))
            .order_by("seen_at", "pk")
            .values_list("pk", "name", "seen_at")[:size]
        )
        return [
            {"id": str(pk), "name": name, "last_seen_at": seen_at.isoformat()} for pk, name, seen_at in rows
        ]

    def sample_line(self, row):
        # Escaped: a name written before names were checked (or by another writer) could
        # otherwise clear the operator's screen or forge a line of this sample.
        return f"{row['id']}  {printable(row['name'])}  last seen {row['last_seen_at']}"

    def run(self, options, summary, advance_to):
        result = executions_interrupt_stale(
            stale_after=self.stale_after,
            status=options["status"],
            detected_by=DETECTED_BY,
            channel=ChangeChannel.COMMAND,
            threshold_text=self.threshold_text,
            name=options["name"],
            batch_size=options["batch_size"],
            limit=options["limit"],
            now=self.now,
            on_batch=lambda result: advance_to(result.changed + result.skipped),
        )
        summary.update(changed=result.changed, skipped=result.skipped, batches=result.batches)
        return None

    def dry_run_text(self, summary):
        return (
            f"Dry run: {summary['would_change']} execution(s) would become {summary['status']} "
            f"(no sign of life for more than {self.threshold_text}); nothing changed."
        )

    def run_text(self, summary):
        return (
            f"Changed {summary['changed']}, skipped {summary['skipped']}, "
            f"batches {summary['batches']}, elapsed {summary['elapsed_seconds']:.2f}s "
            f"(to {summary['status']}, no sign of life for more than {self.threshold_text})."
        )
