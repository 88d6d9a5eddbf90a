"""The worker's tasks, in the order each round calls them: the one list `run_worker` runs.

A task is a callable `task(now: datetime) -> float | None` (see loop.py): it does one bounded
batch of what is due at `now`, through the services (never a status written any other way),
and returns the seconds until it next has something due: 0 if more is due already, None if
it knows of nothing. It must be safe with several workers running it at once (claim each
piece of work with a compare-and-set or SKIP LOCKED) and cheap when nothing is due, since it
is called at least once per idle interval.
"""

from ..monitors.services import monitors_follow_runs, monitors_mark_missed
from ..notifications.delivery import NotificationDelivery
from ..notifications.fanout import notifications_fan_out
from .deadlines import fail_executions_past_deadline
from .stale import interrupt_stale_executions

TASKS = [
    fail_executions_past_deadline,
    interrupt_stale_executions,
    # Run ends after the deadlines and the stale rule (a run they just failed is a failure),
    # then the missed starts (a monitor whose run just failed is down/failed, not missed).
    monitors_follow_runs,
    monitors_mark_missed,
    # The outbox after them, so that a monitor's change of this round is fanned out in it,
    # and fanned out before the delivery, so that it is sent in the same round too.
    notifications_fan_out,
    NotificationDelivery(),
]
