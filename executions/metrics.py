"""Prometheus metrics of the service: what changed, what was refused, heartbeats, requests,
database outages, and how many executions are running and stale.

Counters and histograms live in prometheus_client's registry. Under gunicorn's several
worker processes each process writes its own values to files in PROMETHEUS_MULTIPROC_DIR
(set before anything imports prometheus_client: config/gunicorn.conf.py does it) and a
scrape, whichever process answers it, adds up the files of all of them. The two gauges of
executions are not kept in any process: they are counted in the database when scraped.
"""

import logging
import os
from collections import Counter as Tally
from pathlib import Path

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# In multiprocess mode each metric opens its values file when it is created, below: a
# folder that is named but missing (a fresh host, a manage.py command run with the servers'
# environment) would make every import fail.
if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
    os.makedirs(os.environ[MULTIPROCESS_DIR_VARIABLE], exist_ok=True)

from prometheus_client import (  # noqa: E402
    REGISTRY,
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
    "Status changes committed, by previous status, new status and channel (api, admin, command).",
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
THROTTLE_CACHE_ERRORS = Counter(
    "executions_throttle_cache_errors",
    "Requests let through without a rate-limit check because the cache (Redis) did not answer.",
)

# The reasons of executions_status_changes_refused, shared by the code and the tests.
REFUSED_INVALID_TRANSITION = "invalid_transition"
REFUSED_NOT_FOUND = "not_found"
REFUSED_PRECONDITION_FAILED = "precondition_failed"
REFUSED_SAME_STATUS = "same_status"

HEARTBEAT_ACCEPTED = "accepted"
HEARTBEAT_NOT_RUNNING = "not_running"
HEARTBEAT_NOT_FOUND = "not_found"


def count_status_changes(transitions: Tally) -> None:
    """`transitions` counts committed changes by (previous_status, new_status, channel)."""
    for (previous_status, new_status, channel), count in transitions.items():
        STATUS_CHANGES.labels(previous_status, new_status, channel).inc(count)


def count_refusal(reason: str, channel: str) -> None:
    """A status change asked for through `channel` and not made, for `reason`."""
    STATUS_CHANGES_REFUSED.labels(reason, channel).inc()


def count_heartbeat(result: str) -> None:
    HEARTBEATS.labels(result).inc()


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

        from .models import Execution, ExecutionStatus
        from .selectors import executions_stale

        try:
            running = Execution.objects.filter(status=ExecutionStatus.RUNNING).count()
            stale = executions_stale(Execution.objects.all(), settings.EXECUTIONS_STALE_AFTER).count()
        except DatabaseError as error:
            logger.warning("Metrics: executions not counted, the database did not answer: %s", error)
            return
        yield GaugeMetricFamily("executions_running", "Executions in status running.", value=running)
        yield GaugeMetricFamily(
            "executions_stale",
            "Running executions with no sign of life for longer than EXECUTIONS_STALE_AFTER.",
            value=stale,
        )


_database_registry = CollectorRegistry(auto_describe=False)
_database_registry.register(ExecutionsCollector())


def exposition() -> bytes:
    """The text a scrape answers: the counters of every worker process, then the gauges."""
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry) + generate_latest(_database_registry)


# --- gunicorn hooks (config/gunicorn.conf.py) -------------------------------------------


def gunicorn_on_starting(server) -> None:
    """Before the first worker starts: forget the values files of a previous run, as
    prometheus_client asks, so that counters start from zero with the server."""
    folder = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if folder:
        for values_file in Path(folder).glob("*.db"):
            values_file.unlink()


def gunicorn_child_exit(server, worker) -> None:
    """A worker ended (restarted, killed): its counters stay counted, its live gauges go."""
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        multiprocess.mark_process_dead(worker.pid)
