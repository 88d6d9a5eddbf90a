"""Delete finished executions older than a cutoff, with their audit records (retention)."""

from django.core.management.base import CommandError
from django.db import DatabaseError
from django.utils import timezone

from executions.durations import parse_duration
from executions.retention.archive import ArchiveError, GzipJsonLinesArchive
from executions.retention.notifications import (
    notification_messages_expired,
    notification_messages_purge_expired,
)
from executions.retention.purge import (
    executions_finished_before,
    executions_purge_finished,
    idempotency_keys_expired,
    idempotency_keys_purge_expired,
)
from executions.text import printable

from ..arguments import text_argument
from ..batch import BatchCommand


class Command(BatchCommand):
    help = (
        "Delete executions that finished (any status but running) more than --finished-before "
        "ago, with their audit records, oldest first, one transaction per batch; optionally "
        "archive each batch first. Safe to kill and run again, and to run on several hosts at once."
    )
    verb = "Delete"
    would_key = "would_delete"

    def add_arguments(self, parser):
        parser.add_argument(
            "--finished-before",
            required=True,
            help="Age of the executions to delete, by when they finished: 90d, 12w, 36h.",
        )
        parser.add_argument(
            "--archive",
            metavar="PATH",
            type=text_argument,
            help="Append each batch, before it is deleted, to this gzip JSON Lines file "
            "(one execution with its history a line; created if missing).",
        )
        super().add_arguments(parser)

    def candidates(self, options):
        try:
            age = parse_duration(options["finished_before"])
        except ValueError as error:
            raise CommandError(f"--finished-before: {error}") from None
        if options["dry_run"] and options["archive"] is not None:
            raise CommandError("--archive has nothing to write with --dry-run")
        self.cutoff = timezone.now() - age
        summary = {
            "dry_run": options["dry_run"],
            "finished_before": options["finished_before"].strip(),
            "cutoff": self.cutoff.isoformat(),
            "limit": options["limit"],
            "archive": options["archive"],
        }
        if options["dry_run"]:
            # The other table that only grows: Idempotency-Keys past the time they are kept
            # for. (Sessions: `manage.py clearsessions`; django-axes' login logs: `manage.py
            # axes_reset_logs --age N`; see docs/operations.md, Retention.)
            summary["would_delete_idempotency_keys"] = idempotency_keys_expired().count()
            # And finished notification messages past NOTIFICATIONS_KEPT_FOR, with their log.
            summary["would_delete_notification_messages"] = notification_messages_expired().count()
        return executions_finished_before(self.cutoff), summary

    def sample(self, candidates, size):
        rows = candidates.order_by("finished_at", "pk").values_list("pk", "name", "status", "finished_at")[
            :size
        ]
        return [
            {"id": str(pk), "name": name, "status": status, "finished_at": finished_at.isoformat()}
            for pk, name, status, finished_at in rows
        ]

    def sample_line(self, row):
        return f"{row['id']}  {printable(row['name'])}  {row['status']}  finished {row['finished_at']}"

    def run(self, options, summary, advance_to):
        archive = None
        if options["archive"] is not None:
            # Before anything is deleted: a path that cannot hold the archive is refused here,
            # and what an interrupted run left at the end of the file is cut off.
            try:
                archive = GzipJsonLinesArchive(options["archive"])
            except ArchiveError as error:
                raise CommandError(f"--archive: {printable(str(error))}") from None
            if archive.cut_bytes:
                summary["archive_cut_bytes"] = archive.cut_bytes
        done = {"deleted": 0, "deleted_status_changes": 0, "batches": 0}

        def on_batch(result):
            advance_to(result.executions)
            done.update(
                deleted=result.executions,
                deleted_status_changes=result.status_changes,
                batches=result.batches,
            )

        error = None
        try:
            executions_purge_finished(
                finished_before=self.cutoff,
                batch_size=options["batch_size"],
                limit=options["limit"],
                archive=archive.append if archive is not None else None,
                on_batch=on_batch,
            )
        except (DatabaseError, OSError, ArchiveError) as failure:
            # The failed batch was rolled back whole; the ones before it stay done.
            error = f"{type(failure).__name__}: {printable(str(failure))}"
        finally:
            if archive is not None:
                archive.close()
        summary.update(done)
        if error is not None:
            summary["error"] = error
            return f"stopped after {done['deleted']} deleted: {error}"
        summary["deleted_idempotency_keys"] = idempotency_keys_purge_expired(batch_size=options["batch_size"])
        summary["deleted_notification_messages"] = notification_messages_purge_expired(
            batch_size=options["batch_size"]
        )
        return None

    def dry_run_text(self, summary):
        return (
            f"Dry run: {summary['would_delete']} execution(s) finished before {summary['cutoff']} "
            "would be deleted; nothing deleted."
        )

    def run_text(self, summary):
        repaired = ""
        if summary.get("archive_cut_bytes"):
            repaired = (
                f"Cut off {summary['archive_cut_bytes']} byte(s) an interrupted run left at the end of "
                f"{printable(summary['archive'])} (an incomplete gzip member: its batch was not deleted).\n"
            )
        return repaired + (
            f"Deleted {summary['deleted']} execution(s) and {summary['deleted_status_changes']} audit "
            f"record(s) in {summary['batches']} batch(es), elapsed {summary['elapsed_seconds']:.2f}s "
            f"(finished before {summary['cutoff']}); "
            f"{summary.get('deleted_idempotency_keys', 0)} expired Idempotency-Key(s) and "
            f"{summary.get('deleted_notification_messages', 0)} notification message(s) past "
            "NOTIFICATIONS_KEPT_FOR deleted."
        )
