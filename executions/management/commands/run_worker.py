"""The worker process: runs the tasks of executions/worker/tasks.py until SIGTERM or SIGINT."""

import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connections

from executions.worker.loop import WorkerLoop, task_name
from executions.worker.tasks import TASKS

logger = logging.getLogger("executions.worker")


class Command(BaseCommand):
    help = (
        "Run the worker: fail executions past their deadline, interrupt stale ones, and the "
        "other tasks of executions/worker/tasks.py, until SIGTERM or SIGINT. Several may run "
        "on one database: each transition happens once."
    )

    def handle(self, *args, **options):
        loop = WorkerLoop(
            TASKS, idle_interval=settings.WORKER_IDLE_INTERVAL, between_rounds=close_old_connections
        )
        received = []

        def stop(signum, frame):
            if received:
                # A second signal: stop now. The batch in progress rolls back as a whole.
                raise SystemExit(f"Worker stopped at once by a second {signal.Signals(signum).name}")
            received.append(signal.Signals(signum).name)
            logger.info("Worker: %s received, stopping after the current batch", received[0])
            loop.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        logger.info(
            "Worker started: tasks %s; idle interval %g s, batches of %d",
            ", ".join(task_name(task) for task in TASKS) or "(none)",
            settings.WORKER_IDLE_INTERVAL,
            settings.WORKER_BATCH_SIZE,
        )
        try:
            loop.run()
        finally:
            connections.close_all()
        logger.info("Worker stopped (%s) after %d round(s)", received[0] if received else "done", loop.rounds)
