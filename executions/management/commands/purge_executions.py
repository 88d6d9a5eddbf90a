"""Delete finished executions older than a cutoff, with their audit records (retention)."""

import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone
from tqdm import tqdm

from executions.archive import ArchiveError, GzipJsonLinesArchive
from executions.durations import parse_duration
from executions.selectors import executions_finished_before, idempotency_keys_expired
from executions.services import PurgeResult, executions_purge_finished, idempotency_keys_purge_expired
from executions.text import printable

from ..arguments import add_batch_arguments, text_argument
from ..progress import ProgressStream

SAMPLE_SIZE = 10


class Command(BaseCommand):
    help = (
        "Delete executions that finished (any status but running) more than --finished-before "
        "ago, with their audit records, oldest first, one transaction per batch; optionally "
        "archive each batch first. Safe to kill and run again, and to run on several hosts at once."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--finished-before",
            required=True,
            help="Age of the executions to delete, by when they finished: 90d, 12w, 36h.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count and show a sample; delete nothing.")
        parser.add_argument(
            "--archive",
            metavar="PATH",
            type=text_argument,
            help="Append each batch, before it is deleted, to this gzip JSON Lines file "
            "(one execution with its history a line; created if missing).",
        )
        add_batch_arguments(parser, "Delete")
        parser.add_argument("--json", action="store_true", help="Print a machine-readable summary.")

    def handle(self, *args, **options):
        try:
            age = parse_duration(options["finished_before"])
        except ValueError as error:
            raise CommandError(f"--finished-before: {error}") from None
        batch_size = options["batch_size"] or settings.EXECUTIONS_BULK_BATCH_SIZE
        limit = options["limit"]
        if options["dry_run"] and options["archive"]:
            raise CommandError("--archive has nothing to write with --dry-run")

        started = time.monotonic()
        cutoff = timezone.now() - age
        summary = {
            "dry_run": options["dry_run"],
            "finished_before": options["finished_before"].strip(),
            "cutoff": cutoff.isoformat(),
            "limit": limit,
            "archive": options["archive"],
        }
        if options["dry_run"]:
            self._dry_run(cutoff, limit, summary, options["json"])
            error = None
        else:
            error = self._run(cutoff, batch_size, limit, options["archive"], summary, options["json"])
        # The other table that only grows: Idempotency-Keys past the time they are kept for.
        # (Sessions: `manage.py clearsessions`; django-axes' login logs: `manage.py
        # axes_reset_logs --age N`; see docs/operations.md, Retention.)
        if options["dry_run"]:
            summary["would_delete_idempotency_keys"] = idempotency_keys_expired().count()
        elif error is None:
            summary["deleted_idempotency_keys"] = idempotency_keys_purge_expired(batch_size=batch_size)
        summary["elapsed_seconds"] = round(time.monotonic() - started, 3)
        if options["json"]:
            self.stdout.write(json.dumps(summary))
        elif options["dry_run"]:
            self.stdout.write(
                f"Dry run: {summary['would_delete']} execution(s) finished before {summary['cutoff']} "
                "would be deleted; nothing deleted."
            )
        else:
            self.stdout.write(
                f"Deleted {summary['deleted']} execution(s) and {summary['deleted_status_changes']} audit "
                f"record(s) in {summary['batches']} batch(es), elapsed {summary['elapsed_seconds']:.2f}s "
                f"(finished before {summary['cutoff']}); "
                f"{summary.get('deleted_idempotency_keys', 0)} expired Idempotency-Key(s) deleted."
            )
        if error is not None:
            raise CommandError(f"stopped after {summary['deleted']} deleted: {error}")

    def _dry_run(self, cutoff, limit, summary, as_json):
        candidates = executions_finished_before(cutoff)
        count = candidates.count()
        summary["would_delete"] = count if limit is None else min(count, limit)
        summary["sample"] = [
            {"id": str(pk), "name": name, "status": status, "finished_at": finished_at.isoformat()}
            for pk, name, status, finished_at in candidates.order_by("finished_at", "pk").values_list(
                "pk", "name", "status", "finished_at"
            )[: min(SAMPLE_SIZE, summary["would_delete"])]
        ]
        if not as_json and summary["sample"]:
            self.stdout.write(
                f"Sample (oldest first, {len(summary['sample'])} of {summary['would_delete']}):"
            )
            for row in summary["sample"]:
                self.stdout.write(
                    f"  {row['id']}  {printable(row['name'])}  {row['status']}  finished {row['finished_at']}"
                )

    def _run(self, cutoff, batch_size, limit, archive_path, summary, as_json) -> str | None:
        """Purges; fills in the summary, and returns what failed, if anything did."""
        archive = None
        if archive_path:
            try:
                archive = GzipJsonLinesArchive(archive_path)
            except ArchiveError as error:
                raise CommandError(f"--archive: {error}") from None
        show_progress = self.stdout.isatty() and not as_json
        total = None
        if show_progress:
            total = executions_finished_before(cutoff).count()
            if limit is not None:
                total = min(total, limit)
        done = PurgeResult()
        error = None
        with tqdm(
            total=total, unit="execution", disable=not show_progress, file=ProgressStream(self.stdout)
        ) as progress:

            def on_batch(result):
                progress.update(result.executions - done.executions)
                done.executions, done.status_changes, done.batches = (
                    result.executions,
                    result.status_changes,
                    result.batches,
                )

            try:
                executions_purge_finished(
                    finished_before=cutoff,
                    batch_size=batch_size,
                    limit=limit,
                    archive=archive.append if archive else None,
                    on_batch=on_batch,
                )
            except (DatabaseError, OSError) as failure:
                # The failed batch was rolled back whole; the ones before it stay done.
                error = f"{type(failure).__name__}: {printable(str(failure))}"
            finally:
                if archive is not None:
                    archive.close()
        summary.update(
            deleted=done.executions,
            deleted_status_changes=done.status_changes,
            batches=done.batches,
        )
        if error is not None:
            summary["error"] = error
        return error
