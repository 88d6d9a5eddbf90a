"""The worker's loop: run each task when it is due, sleep until the next one is, stop
cleanly when asked.

A task does one bounded batch per call and returns the seconds until it next has something
due: 0 when more is due already (it is called again at once), None when it knows of nothing
(it is called again after the idle interval). Nothing a task says makes the loop wait longer
than the idle interval, since new work (an execution with a short deadline, a monitor) can
appear at any moment without the worker being told.

The loop checks for a stop request between calls, never inside one: a batch either commits
whole or, if the process is killed, rolls back whole. A task's exception is logged, counted
and retried with a backoff; it never ends the loop, nor keeps the other tasks from running.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from .. import metrics

logger = logging.getLogger("executions.worker")

Task = Callable[[datetime], float | None]

# After a task's first failure in a row it is retried after the idle interval, then twice as
# long each time, up to this (a database that is down is not asked every second).
MAX_ERROR_BACKOFF_SECONDS = 30.0
# How soon a sleeping loop notices a stop request, whatever the idle interval.
STOP_CHECK_SECONDS = 0.2


def task_name(task: Task) -> str:
    return getattr(task, "__name__", type(task).__name__)


@dataclass
class _Scheduled:
    task: Task
    name: str
    due: datetime
    # Seconds from its last call to `due`: a clock set back is noticed by comparing the two.
    delay: float = 0.0
    failures_in_a_row: int = 0


class WorkerLoop:
    """Runs `tasks` until stop() is called.

    `clock` gives the time the tasks are asked about, `sleep(seconds)` waits (and returns
    early when stop() is called): both injectable so the tests drive the loop without waiting.
    `between_rounds` runs before each round (the command passes Django's
    close_old_connections, so that a connection the database dropped is replaced).
    """

    def __init__(
        self,
        tasks: list[Task],
        *,
        idle_interval: float,
        clock: Callable[[], datetime] = timezone.now,
        sleep: Callable[[float], object] | None = None,
        between_rounds: Callable[[], object] = lambda: None,
    ):
        if idle_interval <= 0:
            raise ValueError("idle_interval must be positive")
        self.idle_interval = idle_interval
        self.clock = clock
        self._stop_requested = False
        self.sleep = sleep or self._sleep_unless_stopped
        self.between_rounds = between_rounds
        start = clock()
        self._scheduled = [_Scheduled(task, task_name(task), start) for task in tasks]
        self.rounds = 0

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def stop(self) -> None:
        """Ask the loop to stop after the call it is in. Safe from a signal handler: it only
        sets a flag. (It set a threading.Event, whose lock the main thread holds for a moment
        in each wait: a signal arriving then made the handler wait for that lock for ever,
        and a SIGTERMed worker hung, about once in many stops.)"""
        self._stop_requested = True

    def _sleep_unless_stopped(self, seconds: float) -> None:
        """Sleep `seconds`, waking within STOP_CHECK_SECONDS once a stop is requested. A
        signal interrupts time.sleep to run its handler, which takes no lock."""
        deadline = time.monotonic() + seconds
        while not self._stop_requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, STOP_CHECK_SECONDS))

    def run(self) -> None:
        while not self.stopping:
            self.sleep(self.run_due())

    def run_due(self) -> float:
        """Call every task that is due now, once; the seconds until the next one is due."""
        self.between_rounds()
        self.rounds += 1
        for scheduled in self._scheduled:
            if self.stopping:
                break
            now = self.clock()
            # A clock set back must not leave a task waiting longer than it asked to.
            scheduled.due = min(scheduled.due, now + timedelta(seconds=scheduled.delay))
            if scheduled.due <= now:
                scheduled.delay = self._call(scheduled, now)
                scheduled.due = now + timedelta(seconds=scheduled.delay)
        now = self.clock()
        wait = (
            min((scheduled.due - now).total_seconds() for scheduled in self._scheduled)
            if self._scheduled
            else self.idle_interval
        )
        return max(0.0, min(wait, self.idle_interval))

    def _call(self, scheduled: _Scheduled, now: datetime) -> float:
        """Run one task; the seconds until it should run again."""
        try:
            next_due_in = scheduled.task(now)
        except Exception:
            scheduled.failures_in_a_row += 1
            metrics.WORKER_TASK_ERRORS.labels(scheduled.name).inc()
            backoff = min(
                self.idle_interval * 2 ** (scheduled.failures_in_a_row - 1),
                max(MAX_ERROR_BACKOFF_SECONDS, self.idle_interval),
            )
            logger.exception(
                "Task %s failed (%d time(s) in a row); next try in %.1f s",
                scheduled.name,
                scheduled.failures_in_a_row,
                backoff,
            )
            return backoff
        if scheduled.failures_in_a_row:
            logger.info(
                "Task %s works again after %d failure(s)", scheduled.name, scheduled.failures_in_a_row
            )
            scheduled.failures_in_a_row = 0
        if next_due_in is None:
            return self.idle_interval
        return min(max(0.0, next_due_in), self.idle_interval)
