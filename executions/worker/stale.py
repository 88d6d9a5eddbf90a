"""The worker's stale task: a running execution with no sign of life for longer than
EXECUTIONS_STALE_AFTER becomes interrupted, by the same service as the
cleanup_stale_executions command (which stays for operators)."""

from datetime import datetime

from django.conf import settings

from ..models import ChangeChannel
from ..selectors import running_last_seen_before, running_last_seen_longest_ago
from ..services import executions_interrupt_stale
from .identity import DETECTED_BY, worker_identity
from .report import report_batch


def interrupt_stale_executions(now: datetime) -> float | None:
    """One batch of the executions stale at `now`; the seconds until the next may become
    stale (0: more are stale already; None: none runs). A heartbeat meanwhile only makes
    that moment later: the task then finds nothing and asks again."""
    stale_after = settings.EXECUTIONS_STALE_AFTER
    longest_ago = running_last_seen_longest_ago()
    if longest_ago is None:
        return None
    if longest_ago + stale_after > now:
        return (longest_ago + stale_after - now).total_seconds()
    batch_size = settings.WORKER_BATCH_SIZE
    due = [seen + stale_after for seen in running_last_seen_before(now - stale_after, batch_size)]
    result = executions_interrupt_stale(
        stale_after=stale_after,
        detected_by=DETECTED_BY,
        channel=ChangeChannel.WORKER,
        correlation_id=worker_identity(),
        batch_size=batch_size,
        limit=batch_size,
        now=now,
    )
    report_batch(
        interrupt_stale_executions.__name__,
        "interrupted (no sign of life)",
        due,
        result.changed,
        result.skipped,
    )
    return 0
