"""What a task reports after a batch: the lag of each transition (a metric), and a log line
that says what it did and, when it was catching up, how far behind it was."""

import logging
from datetime import datetime

from django.utils import timezone

from .. import metrics

logger = logging.getLogger("executions.worker")

# A transition this late (seconds after it was due) means the worker was behind: stopped,
# down, or slower than the work. Logged as a warning with how far behind.
BEHIND_AFTER_SECONDS = 60.0


def report_batch(task: str, what: str, due_times: list[datetime], changed: int, skipped: int) -> None:
    """`due_times`: when each row of the batch was due, soonest first (as the batch took them).
    Rows another worker took first are among the skipped; the lags counted are those of the
    first `changed` due times, which differ from the exact rows' only in such a race."""
    acted_at = timezone.now()
    lags = [(acted_at - due).total_seconds() for due in due_times[:changed]]
    for lag in lags:
        metrics.WORKER_LAG.labels(task).observe(max(lag, 0.0))
    if not changed and not skipped:
        return
    behind = max(lags, default=0.0)
    message = "%s: %d execution(s) %s, %d skipped (changed meanwhile); due %.1f s to %.1f s ago"
    arguments = (task, changed, what, skipped, min(lags, default=0.0), behind)
    if behind > BEHIND_AFTER_SECONDS:
        logger.warning(message + "; catching up: %.0f s behind", *arguments, behind)
    else:
        logger.info(message, *arguments)
