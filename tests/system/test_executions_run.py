"""executions-run end to end: the installed console script runs tests/wrapped_job.py against
gunicorn serving the test database, and the tests read what it recorded there.

The server is stopped and started again on the same port to play an outage. Intervals are
short (heartbeats every 0.3-0.5 s, a grace of 1 s); every wait has a generous deadline so that
a broken wrapper fails a test instead of hanging it, and no assertion is about time.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test import Client
from executions_client.run import EXIT_REFUSED, EXIT_STOPPED, STDERR_TAIL_BYTES

from devtools.net import free_port
from devtools.servers import Gunicorn, WorkerProcess, service_env
from executions.models import ChangeChannel, Execution, ExecutionStatus

from ..factories import UserFactory, api_key_for

pytestmark = pytest.mark.slow

EXECUTIONS_RUN = Path(sys.executable).parent / "executions-run"
JOB = Path(__file__).parent.parent / "wrapped_job.py"
DEADLINE_SECONDS = 60


class Service:
    """gunicorn on the test database; stop() and start() keep its port."""

    def __init__(self, env):
        self.env = env
        self.gunicorn = Gunicorn(env, workers=1, threads=4)
        self.port = self.gunicorn.port
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.gunicorn.close()

    def start(self):
        self.gunicorn = Gunicorn(self.env, workers=1, threads=4, port=self.port)


def served_database_url() -> str:
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    return f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"


@pytest.fixture(scope="module")
def service(django_db_setup, django_db_blocker):
    assert EXECUTIONS_RUN.exists(), (
        "executions-run is not installed: scripts/bootstrap.sh requirements/test.txt"
    )
    with django_db_blocker.unblock():
        url = served_database_url()
    # No connection kept between requests: the test database is emptied after each test.
    service = Service(service_env(url, DATABASE_CONN_MAX_AGE="0"))
    yield service
    service.stop()


@pytest.fixture
def token(transactional_db):
    return api_key_for(UserFactory(username="alice"))


class Wrapper:
    """executions-run around tests/wrapped_job.py, its standard error collected as it comes."""

    def __init__(self, service, token, tmp_path, options, exit_code=0, job_options=(), url=None):
        self.state = tmp_path
        env = {**os.environ, "EXECUTIONS_URL": url or service.url, "EXECUTIONS_TOKEN": token}
        command = [sys.executable, str(JOB), str(tmp_path), str(exit_code), *job_options]
        self.process = subprocess.Popen(
            [str(EXECUTIONS_RUN), *options, "--", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._stderr = bytearray()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self):
        while chunk := os.read(self.process.stderr.fileno(), 65536):
            self._stderr += chunk

    @property
    def stderr(self) -> str:
        return self._stderr.decode(errors="replace")

    def wait_for_stderr(self, text):
        wait_until(lambda: text in self.stderr, f"{text!r} on the wrapper's standard error")

    def release(self):
        (self.state / "release").write_text("go")

    def trace(self, name) -> str | None:
        path = self.state / name
        return path.read_text() if path.exists() else None

    def finish(self):
        try:
            stdout = self.process.stdout.read()
            self.process.wait(timeout=DEADLINE_SECONDS)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._reader.join(timeout=5)
        return self.process.returncode, stdout.decode(), self.stderr


def wait_until(condition, what):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"no {what} within {DEADLINE_SECONDS}s")


def execution_named(name, **conditions):
    return wait_until(
        lambda: Execution.objects.filter(name=name, **conditions).first(),
        f"execution {name} {conditions or ''}",
    )


def process_gone(pid: str) -> bool:
    """Not running any more: no such process, or a zombie nobody reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def stderr_text(size: int) -> str:
    """What tests/wrapped_job.py writes with --stderr-bytes size."""
    return "".join(f"line {n:06d}\n" for n in range(size // 12 + 1))[:size]


def test_success_is_reported_completed(service, token, tmp_path):
    wrapper = Wrapper(
        service,
        token,
        tmp_path,
        ["--name", "e2e-success", "--heartbeat", "0.3"],
        job_options=["--stderr-bytes", "50"],
    )
    execution_named("e2e-success", last_heartbeat_at__isnull=False)
    wrapper.release()

    code, stdout, stderr = wrapper.finish()

    assert code == 0, stderr
    assert stdout == "job output\n"
    execution = Execution.objects.get(name="e2e-success")
    # Which execution it is, first (so that a person can cancel it), then the job's own
    # standard error passed through; and the job was told its id.
    assert stderr == f"executions-run: execution {execution.id} (e2e-success) started\n" + stderr_text(50)
    assert wrapper.trace("execution_id") == str(execution.id)
    assert (execution.status, execution.error_info) == (ExecutionStatus.COMPLETED, None)
    [change] = execution.status_changes.all()
    assert (change.previous_status, change.new_status, change.channel, change.actor.username) == (
        ExecutionStatus.RUNNING,
        ExecutionStatus.COMPLETED,
        ChangeChannel.API,
        "alice",
    )


def test_failure_stores_the_stderr_tail(service, token, tmp_path):
    wrapper = Wrapper(
        service,
        token,
        tmp_path,
        ["--name", "e2e-failure", "--heartbeat", "0.3"],
        exit_code=3,
        job_options=["--stderr-bytes", "10000"],
    )
    execution_named("e2e-failure")
    wrapper.release()

    code, _, stderr = wrapper.finish()

    assert code == 3
    assert stderr_text(10000) in stderr
    execution = Execution.objects.get(name="e2e-failure")
    expected = {"exit_code": 3, "signal": None, "stderr_tail": stderr_text(10000)[-STDERR_TAIL_BYTES:]}
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_info == expected
    assert execution.status_changes.get().error_info == expected


def test_cancel_from_the_admin_stops_the_job_and_what_it_started(service, token, tmp_path):
    # The job ignores SIGTERM, and so does the process it started: only SIGKILL, after the
    # grace period, ends them before they are released (which never happens here).
    wrapper = Wrapper(
        service,
        token,
        tmp_path,
        ["--name", "e2e-cancel", "--heartbeat", "0.5", "--grace", "1"],
        job_options=["--ignore-sigterm"],
    )
    execution = execution_named("e2e-cancel")
    wait_until(lambda: wrapper.trace("pid"), "job started")
    operator = UserFactory(username="operator", is_staff=True, is_superuser=True)
    admin = Client()
    admin.force_login(operator)

    response = admin.post(
        "/admin/executions/execution/",
        {"action": "cancel_selected", "index": 0, ACTION_CHECKBOX_NAME: [str(execution.pk)]},
        follow=True,
    )
    code, _, stderr = wrapper.finish()

    assert "Cancelled 1 execution." in response.content.decode()
    assert code == EXIT_STOPPED, stderr
    assert f"execution {execution.pk} is cancelled: stopping the command" in stderr
    assert wrapper.trace("sigterm") == "received"
    assert process_gone(wrapper.trace("pid"))
    assert process_gone(wrapper.trace("grandchild"))
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.CANCELLED
    [change] = execution.status_changes.all()
    assert (change.channel, change.actor.username) == (ChangeChannel.ADMIN, "operator")


def test_sigterm_to_the_wrapper_is_passed_on_and_reported(service, token, tmp_path):
    wrapper = Wrapper(
        service, token, tmp_path, ["--name", "e2e-sigterm", "--heartbeat", "0.3", "--grace", "1"]
    )
    execution_named("e2e-sigterm")
    wait_until(lambda: wrapper.trace("pid"), "job started")

    wrapper.process.send_signal(signal.SIGTERM)
    code, _, stderr = wrapper.finish()

    assert code == 128 + signal.SIGTERM, stderr
    assert wrapper.trace("sigterm") == "received"
    assert process_gone(wrapper.trace("grandchild"))  # deaf to SIGTERM: SIGKILLed after the grace period
    execution = Execution.objects.get(name="e2e-sigterm")
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_info == {"exit_code": None, "signal": "SIGTERM", "stderr_tail": ""}


def test_a_service_restart_in_the_middle_of_a_run(service, token, tmp_path):
    wrapper = Wrapper(
        service, token, tmp_path, ["--name", "e2e-restart", "--heartbeat", "0.3", "--retry-for", "60"]
    )
    execution_named("e2e-restart", last_heartbeat_at__isnull=False)

    service.stop()
    try:
        wrapper.wait_for_stderr("heartbeat failed")
        # The job ends while the service is away; the wrapper keeps trying to report it.
        wrapper.release()
        wrapper.wait_for_stderr("retrying in")
    finally:
        service.start()
    code, stdout, stderr = wrapper.finish()

    assert code == 0, stderr
    assert stdout == "job output\n"
    assert Execution.objects.get(name="e2e-restart").status == ExecutionStatus.COMPLETED


def test_a_service_that_never_comes_back_keeps_the_jobs_exit_code(service, token, tmp_path):
    wrapper = Wrapper(
        service,
        token,
        tmp_path,
        ["--name", "e2e-gone", "--heartbeat", "0.3", "--retry-for", "2"],
        exit_code=5,
    )
    execution = execution_named("e2e-gone")
    wait_until(lambda: wrapper.trace("pid"), "job started")

    service.stop()
    try:
        wrapper.release()
        code, stdout, stderr = wrapper.finish()
    finally:
        service.start()

    assert code == 5
    assert stdout == "job output\n"
    assert "could not report that the command exited with 5: the service did not answer" in stderr
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.RUNNING


def test_an_unreachable_service_at_the_start_runs_the_job_untracked(token, tmp_path):
    (tmp_path / "release").write_text("go")
    nothing_there = f"http://127.0.0.1:{free_port()}"
    wrapper = Wrapper(
        None, token, tmp_path, ["--name", "e2e-untracked", "--retry-for", "1"], exit_code=4, url=nothing_there
    )

    code, stdout, stderr = wrapper.finish()

    assert code == 4
    assert stdout == "job output\n"
    assert "running the command untracked" in stderr


def test_sigterm_while_creating_gives_up_without_running_the_job(token, tmp_path):
    nothing_there = f"http://127.0.0.1:{free_port()}"
    wrapper = Wrapper(
        None, token, tmp_path, ["--name", "e2e-interrupted", "--retry-for", "60"], url=nothing_there
    )
    wrapper.wait_for_stderr("retrying in")

    wrapper.process.send_signal(signal.SIGTERM)
    code, _, stderr = wrapper.finish()

    assert code == 128 + signal.SIGTERM
    assert "SIGTERM while creating the execution: the command was not run" in stderr
    assert wrapper.trace("pid") is None


def test_a_refused_create_does_not_run_the_job(service, transactional_db, tmp_path):
    wrapper = Wrapper(service, "not-a-token", tmp_path, ["--name", "e2e-refused"])

    code, _, stderr = wrapper.finish()

    assert code == EXIT_REFUSED
    assert "the service refused to create the execution: 401 AUTHENTICATION_FAILED" in stderr
    assert wrapper.trace("pid") is None
    assert not Execution.objects.filter(name="e2e-refused").exists()


def test_a_command_that_cannot_be_found_is_reported_failed(service, token, tmp_path):
    result = subprocess.run(
        [str(EXECUTIONS_RUN), "--name", "e2e-missing", "--", str(tmp_path / "no-such-command")],
        env={**os.environ, "EXECUTIONS_URL": service.url, "EXECUTIONS_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        check=False,
    )

    assert result.returncode == 127
    execution = Execution.objects.get(name="e2e-missing")
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_info["exit_code"] == 127
    assert "No such file or directory" in execution.error_info["stderr_tail"]


def test_a_passed_deadline_fails_the_execution_and_stops_the_job(service, token, tmp_path):
    """The whole path: executions-run creates the execution with --max-runtime, the real
    worker process fails it when its deadline passes, the next heartbeat is answered 409 and
    the wrapper stops the command."""
    with WorkerProcess(service.env) as worker:
        wrapper = Wrapper(
            service,
            token,
            tmp_path,
            ["--name", "e2e-deadline", "--max-runtime", "2", "--heartbeat", "0.3", "--grace", "1"],
        )
        execution = execution_named("e2e-deadline")
        wait_until(lambda: wrapper.trace("pid"), "job started")
        code, _, stderr = wrapper.finish()

    assert code == EXIT_STOPPED, stderr
    assert f"execution {execution.pk} is failed: stopping the command" in stderr
    assert wrapper.trace("sigterm") == "received"
    assert process_gone(wrapper.trace("pid"))
    # Deaf to SIGTERM, SIGKILLed after the grace period, before the wrapper exits.
    assert process_gone(wrapper.trace("grandchild"))
    execution.refresh_from_db()
    assert execution.max_runtime_seconds == 2
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_info == {
        "reason": "deadline_exceeded",
        "deadline_at": execution.deadline_at.isoformat(),
        "max_runtime_seconds": 2,
        "detected_by": "run_worker",
    }
    [change] = execution.status_changes.all()
    assert (change.channel, change.actor, change.new_status) == (ChangeChannel.WORKER, None, "failed")
    assert change.correlation_id.endswith(f":{worker.pid}")
    assert "fail_executions_past_deadline: 1 execution(s) failed past their deadline" in worker.log()
