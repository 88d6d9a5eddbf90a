"""Monitors with real parts: gunicorn serving the test database, the real worker process
(`manage.py run_worker`), and `executions-run --monitor` wrapping a real command, with a
short schedule (every 2 s, grace 1 s). The monitor goes up after a success, down/missed when
no run starts, down/failed after a failing run, and up again after a success."""

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.servers import REPO_ROOT
from executions.models import Execution, Monitor, MonitorStateChange

from ..factories import UserFactory, api_key_for, monitor_for
from .test_executions_run import EXECUTIONS_RUN, service, wait_until  # noqa: F401

pytestmark = pytest.mark.slow


class Worker:
    """manage.py run_worker against the service's database, in a process of its own."""

    def __init__(self, env, log_path: Path):
        self._log = open(log_path, "wb")
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_worker"],
            cwd=REPO_ROOT,
            env={**env, "WORKER_IDLE_INTERVAL": "0.2", "LOG_LEVEL": "INFO"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> int:
        self.process.terminate()
        code = self.process.wait(timeout=30)
        self._log.close()
        return code


def state_of(monitor):
    return Monitor.objects.values_list("state", "state_reason").get(pk=monitor.pk)


def run_wrapped(served, token, monitor_name: str, exit_code: int):
    """executions-run --monitor NAME -- sh -c 'exit N', to its end."""
    result = subprocess.run(
        [
            str(EXECUTIONS_RUN),
            "--monitor",
            monitor_name,
            "--heartbeat",
            "1",
            "--",
            "sh",
            "-c",
            f"exit {exit_code}",
        ],
        env={"PATH": "/usr/bin:/bin", "EXECUTIONS_URL": served.url, "EXECUTIONS_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == exit_code, result.stderr
    return result


@pytest.mark.django_db(transaction=True)
def test_a_wrapped_cron_job_watched_by_the_worker_goes_up_down_and_up_again(service, tmp_path):  # noqa: F811
    owner = UserFactory(username="cron")
    token = api_key_for(owner)
    monitor = monitor_for(owner, name="every-2s", schedule="every 2s", grace_seconds=1)
    worker = Worker(service.env, tmp_path / "worker.log")
    try:
        # A success: up.
        run_wrapped(service, token, "every-2s", 0)
        wait_until(lambda: state_of(monitor) == ("up", None), "monitor up after a success")

        # No run starts within 2 s + 1 s: down, missed (the worker's sweep).
        wait_until(lambda: state_of(monitor) == ("down", "missed"), "monitor down/missed without a run")

        # A run that fails: down, failed.
        run_wrapped(service, token, "every-2s", 3)
        wait_until(lambda: state_of(monitor) == ("down", "failed"), "monitor down/failed after a failure")

        # A success again: up (recovered).
        run_wrapped(service, token, "every-2s", 0)
        wait_until(lambda: state_of(monitor) == ("up", None), "monitor up again after a success")
    finally:
        exit_code = worker.stop()
    assert exit_code == 0, worker.log_path.read_text()

    runs = list(Execution.objects.filter(monitor=monitor).order_by("created_at"))
    assert [run.status for run in runs] == ["completed", "failed", "completed"]
    assert runs[1].error_info["exit_code"] == 3
    changes = [
        (change.previous_state, change.new_state, change.reason, change.channel, change.execution_id)
        for change in MonitorStateChange.objects.filter(monitor=monitor).order_by("id")
    ]
    # Each transition once, with who or what made it and the run that did. After the miss a
    # run may start and the next miss come before it ends (every 2 s): those are allowed in
    # between, each recorded once too.
    assert changes[0] == ("new", "up", None, "api", runs[0].id)
    assert ("up", "down", "missed", "worker", None) in changes
    assert ("down", "down", "failed", "api", runs[1].id) in changes or (
        "up",
        "down",
        "failed",
        "api",
        runs[1].id,
    ) in changes
    assert changes[-1] == ("down", "up", None, "api", runs[2].id)
    assert len(changes) == len(set(changes))
