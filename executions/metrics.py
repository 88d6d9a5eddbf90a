"""Prometheus metrics of the service: what changed, what was refused, heartbeats, requests,
database outages, and how many executions are running and stale.

Counters and histograms live in prometheus_client's registry. Every process of the service
(gunicorn's workers, the worker, the commands) writes its own values to files in one folder,
PROMETHEUS_MULTIPROC_DIR (by default the checkout's var/metrics), and a scrape, whichever web
process answers it, adds up the files of all of them: metrics_files.py says how the values
of processes that ended are kept. The two gauges of executions are not kept in any process:
they are counted in the database when scraped.
"""

import logging
from collections import Counter as Tally

from .metrics_files import archive_ended_processes, configured_folder, folder_lock

# Before prometheus_client is imported: it chooses its mode from the variable then.
METRICS_FOLDER = configured_folder()

from prometheus_client import (  # noqa: E402
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402

logger = logging.getLogger("executions.metrics")

STATUS_CHANGES = Counter(
    "executions_status_changes",
    "Status changes committed, by previous status, new status and channel (api, admin, command, worker).",
    ["previous_status", "new_status", "channel"],
)
STATUS_CHANGES_REFUSED = Counter(
    "executions_status_changes_refused",
    "Status changes asked for and not made, by reason and channel.",
    ["reason", "channel"],
)
HEARTBEATS = Counter(
    "executions_heartbeats",
    "Heartbeats, by result: accepted, not_running (the worker is told to stop), not_found.",
    ["result"],
)
REQUEST_DURATION = Histogram(
    "executions_http_request_duration_seconds",
    "Time to answer an HTTP request, by route name (not the raw path), method and status code.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DATABASE_UNAVAILABLE = Counter(
    "executions_database_unavailable",
    "Requests answered 503 because the database did not answer.",
)
MONITOR_STATE_CHANGES = Counter(
    "executions_monitor_state_changes",
    "Monitor state changes committed, by new state, reason (missed, failed, or empty) and channel.",
    ["new_state", "reason", "channel"],
)
THROTTLE_CACHE_ERRORS = Counter(
    "executions_throttle_cache_errors",
    "Requests let through without a rate-limit check because the cache (Redis) did not answer.",
)
PURGED = Counter(
    "executions_purged",
    "Records the retention purge (purge_executions) deleted, by what: execution, status_change.",
    ["record"],
)
WATCH_TRANSITIONS = Counter(
    "executions_watch_transitions",
    "Status changes the system made on its own, by reason: deadline_exceeded (the worker), "
    "stale (the worker and cleanup_stale_executions).",
    ["reason"],
)
WORKER_LAG = Histogram(
    "executions_worker_lag_seconds",
    "How long after it was due the worker made each transition (a deadline, a stale "
    "execution's cutoff), by task: the promptness the worker keeps, and how far behind it was "
    "when catching up.",
    ["task"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600),
)
WORKER_TASK_ERRORS = Counter(
    "executions_worker_task_errors",
    "Exceptions raised by a worker task (logged with their traceback; the task is retried).",
    ["task"],
)

# The reasons of executions_status_changes_refused, shared by the code and the tests.
REFUSED_INVALID_TRANSITION = "invalid_transition"
REFUSED_NOT_FOUND = "not_found"
REFUSED_PRECONDITION_FAILED = "precondition_failed"
REFUSED_SAME_STATUS = "same_status"

HEARTBEAT_ACCEPTED = "accepted"
HEARTBEAT_NOT_RUNNING = "not_running"
HEARTBEAT_NOT_FOUND = "not_found"


def count_purged(executions: int, status_changes: int) -> None:
    PURGED.labels("execution").inc(executions)
    PURGED.labels("status_change").inc(status_changes)


def count_watch_transitions(reason: str, count: int) -> None:
    if count:
        WATCH_TRANSITIONS.labels(reason).inc(count)


def count_status_changes(transitions: Tally) -> None:
    """`transitions` counts committed changes by (previous_status, new_status, channel)."""
    for (previous_status, new_status, channel), count in transitions.items():
        STATUS_CHANGES.labels(previous_status, new_status, channel).inc(count)


def count_refusal(reason: str, channel: str) -> None:
    """A status change asked for through `channel` and not made, for `reason`."""
    STATUS_CHANGES_REFUSED.labels(reason, channel).inc()


def count_heartbeat(result: str) -> None:
    HEARTBEATS.labels(result).inc()


def count_monitor_state_changes(transitions: Tally) -> None:
    """`transitions` counts committed monitor state changes by (new_state, reason, channel)."""
    for (new_state, reason, channel), count in transitions.items():
        MONITOR_STATE_CHANGES.labels(new_state, reason, channel).inc(count)


class ExecutionsCollector:
    """executions_running and executions_stale, counted in the database at each scrape.

    Both are one COUNT over the partial index on running executions
    (execution_running_seen_idx): its size is the number of running executions, however
    many finished ones the table holds. docs/operations.md gives the cost measured on a
    million rows. A database that does not answer leaves both out of the scrape rather than
    failing it: the counters still tell what happened."""

    def collect(self):
        from django.conf import settings
        from django.db import DatabaseError
        from django.db.models import Count

        from .models import Execution, ExecutionStatus, Monitor, MonitorState
        from .selectors import executions_stale

        try:
            running = Execution.objects.filter(status=ExecutionStatus.RUNNING).count()
            stale = executions_stale(Execution.objects.all(), settings.EXECUTIONS_STALE_AFTER).count()
            # A GROUP BY over the monitors: thousands of rows, not millions.
            monitors_by_state = dict(
                Monitor.objects.order_by()
                .values_list("state")
                .annotate(count=Count("pk"))
                .values_list("state", "count")
            )
        except DatabaseError as error:
            logger.warning("Metrics: executions not counted, the database did not answer: %s", error)
            return
        yield GaugeMetricFamily("executions_running", "Executions in status running.", value=running)
        monitors = GaugeMetricFamily("executions_monitors", "Monitors, by state.", labels=["state"])
        for state in MonitorState.values:
            monitors.add_metric([state], monitors_by_state.get(state, 0))
        yield monitors
        yield GaugeMetricFamily(
            "executions_stale",
            "Running executions with no sign of life for longer than EXECUTIONS_STALE_AFTER.",
            value=stale,
        )


_database_registry = CollectorRegistry(auto_describe=False)
_database_registry.register(ExecutionsCollector())


def exposition() -> bytes:
    """The text a scrape answers: the counters of every process, then the gauges."""
    with folder_lock(METRICS_FOLDER):
        archive_ended_processes(METRICS_FOLDER)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=METRICS_FOLDER)
        counted = generate_latest(registry)
    return counted + generate_latest(_database_registry)


# --- gunicorn hooks (config/gunicorn.conf.py) -------------------------------------------


def gunicorn_on_starting(server) -> None:
    """Before the first worker starts: archive what processes that ended counted (nothing is
    wiped: the worker and the commands count in the same folder, see metrics_files.py)."""
    with folder_lock(METRICS_FOLDER):
        archive_ended_processes(METRICS_FOLDER)


def gunicorn_child_exit(server, worker) -> None:
    """A worker ended (restarted, killed): its counters go to the archive, still counted."""
    gunicorn_on_starting(server)
