"""The skeleton the batch commands (cleanup_stale_executions, purge_executions) share:
--dry-run (count, and a sample of what a run would take, oldest first; nothing changes),
--batch-size and --limit, a progress bar on a terminal, and a summary as a line of text or,
with --json, one JSON object."""

import json
import time
from contextlib import contextmanager

from django.core.management.base import BaseCommand, CommandError
from django.db.models import QuerySet
from tqdm import tqdm

from .arguments import add_batch_arguments
from .progress import ProgressStream

SAMPLE_SIZE = 10


class BatchCommand(BaseCommand):
    """Subclasses say what they take (`candidates`), how a sample row reads, how a run goes
    (`run`) and how the summaries read; `handle` does the rest."""

    # What the command does to an execution, for --batch-size's help: "Change", "Delete".
    verb = ""
    # The summary's key for how many a dry run would take: "would_change", "would_delete".
    would_key = ""

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count and show a sample; change nothing.")
        add_batch_arguments(parser, self.verb)
        parser.add_argument("--json", action="store_true", help="Print a machine-readable summary.")

    def candidates(self, options) -> tuple[QuerySet, dict]:
        """What a run would take, and the summary's first fields."""
        raise NotImplementedError

    def sample(self, candidates: QuerySet, size: int) -> list[dict]:
        """Up to `size` candidates, oldest first, as the summary shows them."""
        raise NotImplementedError

    def sample_line(self, row: dict) -> str:
        raise NotImplementedError

    def run(self, options, summary: dict, advance_to) -> str | None:
        """Do the work, calling advance_to(done) after each batch; fill in the summary; return
        what failed, if anything did (the command then exits 1 after the summary)."""
        raise NotImplementedError

    def dry_run_text(self, summary: dict) -> str:
        raise NotImplementedError

    def run_text(self, summary: dict) -> str:
        raise NotImplementedError

    def handle(self, *args, **options):
        started = time.monotonic()
        as_json = options["json"]
        candidates, summary = self.candidates(options)
        limit = options["limit"]
        if options["dry_run"]:
            count = candidates.count()
            summary[self.would_key] = count if limit is None else min(count, limit)
            summary["sample"] = self.sample(candidates, min(SAMPLE_SIZE, summary[self.would_key]))
            if not as_json and summary["sample"]:
                self.stdout.write(
                    f"Sample (oldest first, {len(summary['sample'])} of {summary[self.would_key]}):"
                )
                for row in summary["sample"]:
                    self.stdout.write(f"  {self.sample_line(row)}")
            error = None
        else:
            with self._progress(candidates, limit, as_json) as advance_to:
                error = self.run(options, summary, advance_to)
        summary["elapsed_seconds"] = round(time.monotonic() - started, 3)
        if as_json:
            self.stdout.write(json.dumps(summary))
        elif options["dry_run"]:
            self.stdout.write(self.dry_run_text(summary))
        else:
            self.stdout.write(self.run_text(summary))
        if error is not None:
            raise CommandError(error)

    @contextmanager
    def _progress(self, candidates, limit, as_json):
        """A progress bar on a terminal (counting the candidates first), nothing otherwise."""
        show = self.stdout.isatty() and not as_json
        total = None
        if show:
            total = candidates.count()
            if limit is not None:
                total = min(total, limit)
        with tqdm(total=total, unit="execution", disable=not show, file=ProgressStream(self.stdout)) as bar:

            def advance_to(done: int) -> None:
                bar.update(done - bar.n)

            yield advance_to
