"""The worker's deadline task: a running execution past its deadline becomes failed."""

from datetime import datetime

from django.conf import settings

from ..selectors import running_deadline_soonest, running_deadlines_due
from ..services import executions_fail_past_deadline
from .identity import DETECTED_BY, worker_identity
from .report import report_batch


def fail_executions_past_deadline(now: datetime) -> float | None:
    """One batch of the executions whose deadline passed at `now`; the seconds until the
    next deadline (0: more are due already; None: no running execution has one)."""
    soonest = running_deadline_soonest()
    if soonest is None:
        return None
    if soonest > now:
        return (soonest - now).total_seconds()
    batch_size = settings.WORKER_BATCH_SIZE
    due = running_deadlines_due(now, batch_size)
    result = executions_fail_past_deadline(
        now=now,
        detected_by=DETECTED_BY,
        correlation_id=worker_identity(),
        batch_size=batch_size,
        limit=batch_size,
    )
    report_batch(
        fail_executions_past_deadline.__name__,
        "failed past their deadline",
        due,
        result.changed,
        result.skipped,
    )
    return 0
