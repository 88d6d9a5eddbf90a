"""executions-run: run any command as an execution of the executions service.

    executions-run --name nightly-report -- ./report.sh --day yesterday

Creates the execution, starts the command in a process group of its own, heartbeats while
it runs, and reports how it ended: `completed` for exit 0, else `failed` with
{exit_code, signal, stderr_tail}. The command's standard output is untouched; its standard
error is passed through as it comes, and its last 4 KB are kept for the report.

The command matters more than its record: the service being away never stops it. What
decides what, and the exit codes, are in docs/clients.md.
"""

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from .client import ExecutionsClient
from .errors import APIError, ConfigurationError, ConflictError, ServiceUnavailableError
from .models import Execution

HEARTBEAT_VARIABLE = "EXECUTIONS_HEARTBEAT"
# Given to the command: the id of the execution it runs as (absent when it runs untracked).
EXECUTION_ID_VARIABLE = "EXECUTIONS_EXECUTION_ID"
DEFAULT_HEARTBEAT = 30.0
DEFAULT_GRACE = 10.0
DEFAULT_RETRY_FOR = 60.0
STDERR_TAIL_BYTES = 4096

# The wrapper's own exit codes. Otherwise it exits with the command's code, or 128 + N when
# the command was killed by signal N (as shells do).
EXIT_USAGE = 2
EXIT_STOPPED = 120  # the execution was stopped through the service; the command was stopped
EXIT_REFUSED = 121  # the service refused to create the execution; the command was not run
EXIT_CANNOT_EXECUTE = 126  # the command exists but cannot be run (as shells answer)
EXIT_NOT_FOUND = 127  # no such command (as shells answer)


def note(message: str) -> None:
    print(f"executions-run: {message}", file=sys.stderr, flush=True)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def _whole_seconds(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds, 1 or more: {text!r}")
    return int(text)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("not a JSON object")
    return value


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="executions-run",
        description="Run COMMAND as an execution: heartbeat while it runs, report how it ended, "
        "stop it when the execution is cancelled. The token comes from EXECUTIONS_TOKEN only "
        "(a command line is visible to every user of the machine).",
        epilog=f"Exit codes: the command's own; 128+N when it died of signal N; {EXIT_STOPPED} when "
        f"the execution was stopped through the service and the command with it; {EXIT_REFUSED} "
        f"when the service refused to create the execution; {EXIT_CANNOT_EXECUTE}/{EXIT_NOT_FOUND} "
        "when the command cannot be run or is not found.",
    )
    parser.add_argument("--name", help="the execution's name (default: the command's file name)")
    parser.add_argument("--metadata", type=_json_object, default=None, help="a JSON object kept with it")
    parser.add_argument(
        "--max-runtime",
        type=_whole_seconds,
        default=None,
        metavar="SECONDS",
        help="how long the command may run: the service fails the execution if it still runs "
        "then, and the next heartbeat stops the command (default: no limit)",
    )
    parser.add_argument(
        "--monitor",
        default=None,
        metavar="NAME",
        help="make the execution a run of this monitor: its start, and its end the monitor's up or down",
    )
    parser.add_argument(
        "--heartbeat",
        type=_seconds,
        default=os.environ.get(HEARTBEAT_VARIABLE, DEFAULT_HEARTBEAT),
        metavar="SECONDS",
        help=f"seconds between heartbeats (default: ${HEARTBEAT_VARIABLE}, else {DEFAULT_HEARTBEAT:g})",
    )
    parser.add_argument(
        "--grace",
        type=_seconds,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"seconds between SIGTERM and SIGKILL when stopping the command (default {DEFAULT_GRACE:g})",
    )
    parser.add_argument(
        "--retry-for",
        type=_seconds,
        default=DEFAULT_RETRY_FOR,
        metavar="SECONDS",
        help="how long to keep trying to create the execution, and to report its end, while "
        f"the service does not answer (default {DEFAULT_RETRY_FOR:g})",
    )
    parser.add_argument("--url", help="the service's root URL (default: $EXECUTIONS_URL)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGUMENTS...]")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command given: executions-run [OPTIONS] -- COMMAND [ARGUMENTS...]")
    args.name = args.name or args.monitor or os.path.basename(args.command[0])
    return args


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal has no name
        return f"signal {number}"


@dataclass
class Outcome:
    """How the command ended. `returncode` is Popen's: the exit code, or -N for signal N."""

    returncode: int
    stderr_tail: bytes

    @property
    def exit_code(self) -> int | None:
        return self.returncode if self.returncode >= 0 else None

    @property
    def signal(self) -> str | None:
        return None if self.returncode >= 0 else _signal_name(-self.returncode)

    @property
    def wrapper_exit_code(self) -> int:
        return self.returncode if self.returncode >= 0 else 128 - self.returncode

    def describe(self) -> str:
        return f"exited with {self.exit_code}" if self.signal is None else f"was killed by {self.signal}"

    def error_info(self) -> dict:
        # The service stores text: undecodable bytes and NUL (no database column takes it) become U+FFFD.
        tail = self.stderr_tail.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        return {"exit_code": self.exit_code, "signal": self.signal, "stderr_tail": tail}


class Job:
    """The command in its own process group, its standard error passed through and its tail
    kept, and the way to stop it: a signal to the whole group, and SIGKILL to whatever of the
    group still runs `grace` seconds later."""

    def __init__(self, command: list[str], grace: float, env: dict[str, str] | None = None):
        self.grace = grace
        self._kill_timer: threading.Timer | None = None
        self._stop_lock = threading.Lock()
        self._tail = bytearray()
        # Its own process group: a stop reaches everything it started, and a Ctrl-C on the
        # terminal reaches only the wrapper, which passes it on (so the run is always reported).
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, process_group=0, env=env)
        self._pump = threading.Thread(target=self._pass_stderr_through, daemon=True)
        self._pump.start()

    def _pass_stderr_through(self) -> None:
        source = self.process.stderr.fileno()
        sink = sys.stderr.buffer
        while chunk := os.read(source, 65536):
            try:
                sink.write(chunk)
                sink.flush()
            except (OSError, ValueError):
                pass  # the wrapper's own standard error is gone: keep reading, or the command blocks
            self._tail += chunk
            del self._tail[:-STDERR_TAIL_BYTES]

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Send `signum` to the process group; SIGKILL follows after `grace` seconds."""
        # The timer first: called from the heartbeat thread, the signal can end the command and
        # wake wait() in the main thread before the next line runs, and wait() must then find
        # the timer, or the wrapper exits before what the command started is killed.
        with self._stop_lock:
            if self._kill_timer is None:
                self._kill_timer = threading.Timer(self.grace, self._signal_group, (signal.SIGKILL,))
                self._kill_timer.daemon = True
                self._kill_timer.start()
        self._signal_group(signum)

    def _signal_group(self, signum: int) -> bool:
        """Whether the group still had a member to signal (signal 0 only asks)."""
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def wait(self) -> Outcome:
        returncode = self.process.wait()
        if self._kill_timer is not None:
            # Stopping: what the command started has the rest of the grace period, then SIGKILL.
            while self._kill_timer.is_alive() and self._signal_group(0):
                time.sleep(0.05)
            self._kill_timer.cancel()
        # What the command wrote last, unless something it started still holds the pipe open.
        self._pump.join(timeout=2)
        return Outcome(returncode, bytes(self._tail))


class Heartbeats:
    """Heartbeats every `interval` seconds in a thread of their own, one try each: a missed
    one is simply missed. A 409 EXECUTION_NOT_RUNNING stops the job."""

    def __init__(self, client: ExecutionsClient, execution: Execution, job: Job, interval: float):
        self.client = client
        self.execution = execution
        self.job = job
        self.interval = interval
        self.stopped_as: str | None = None  # the status the service stopped the execution with
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        failing_since = None
        while not self._done.wait(self.interval):
            try:
                self.client.heartbeat(self.execution.id)
            except ConflictError as error:
                if self._done.is_set():
                    return  # the command ended meanwhile: its end is what gets reported
                self.stopped_as = error.current_status or "not running"
                note(f"execution {self.execution.id} is {self.stopped_as}: stopping the command")
                self.job.stop(signal.SIGTERM)
                return
            except (ServiceUnavailableError, APIError) as error:
                if failing_since is None:
                    failing_since = time.monotonic()
                    every = f"{self.interval:g}s"
                    note(f"heartbeat failed ({error}); the command keeps running, trying every {every}")
            else:
                if failing_since is not None:
                    outage = time.monotonic() - failing_since
                    note(f"the service answers again after {outage:.0f}s: heartbeats resumed")
                    failing_since = None

    def finish(self) -> None:
        self._done.set()
        self._thread.join()


def create_execution(args: argparse.Namespace) -> Execution | None:
    """The new execution; None when the service could not be reached (the command runs
    untracked). Raises APIError when the service refused."""
    with ExecutionsClient(args.url, retry_for=args.retry_for) as client:
        try:
            return client.create(
                args.name, args.metadata, max_runtime_seconds=args.max_runtime, monitor=args.monitor
            )
        except ServiceUnavailableError as error:
            note(f"could not create the execution ({error}); running the command untracked")
            return None


def report(args: argparse.Namespace, execution: Execution, outcome: Outcome) -> None:
    status = "completed" if outcome.exit_code == 0 else "failed"
    error_info = None if status == "completed" else outcome.error_info()
    with ExecutionsClient(args.url, retry_for=args.retry_for) as client:
        try:
            client.update_status(execution.id, status, error_info)
        except ServiceUnavailableError as error:
            note(
                f"could not report that the command {outcome.describe()}: the service did not answer "
                f"({error}); execution {execution.id} stays running until the cleanup interrupts it"
            )
        except APIError as error:
            note(f"the service did not take the report that the command {outcome.describe()}: {error}")


class Interrupted(Exception):
    """SIGTERM or SIGINT while the execution was being created: the command is not started."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    # Retries of the client are worth a line on standard error: they say why the wrapper waits.
    client_log = logging.getLogger("executions_client")
    client_log.addHandler(logging.StreamHandler())
    client_log.handlers[-1].setFormatter(logging.Formatter("executions-run: %(message)s"))

    # SIGTERM and SIGINT: while creating, give up (the create may be retrying for a minute);
    # once the execution exists, the command is started and they are passed on to it.
    job: Job | None = None
    created = False
    pending: list[int] = []

    def on_signal(signum, frame):
        if job is not None:
            job.stop(signum)
        elif created:
            pending.append(signum)
        else:
            raise Interrupted(signum)

    # Installed even where the wrapper was started with them ignored (`&` in a script).
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        execution = create_execution(args)
    except ConfigurationError as error:
        note(str(error))
        return EXIT_USAGE
    except APIError as error:
        note(f"the service refused to create the execution: {error}; the command was not run")
        return EXIT_REFUSED
    except Interrupted as interrupted:
        name = signal.Signals(interrupted.signum).name
        note(f"{name} while creating the execution: the command was not run")
        return 128 + interrupted.signum
    created = True
    env = None
    if execution is not None:
        # Which execution this is, so that a person can cancel it and the command can know it.
        note(f"execution {execution.id} ({execution.name}) started")
        env = {**os.environ, EXECUTION_ID_VARIABLE: str(execution.id)}

    try:
        job = Job(args.command, args.grace, env)
    except OSError as error:
        code = EXIT_NOT_FOUND if isinstance(error, FileNotFoundError) else EXIT_CANNOT_EXECUTE
        note(f"cannot run {args.command[0]}: {error}")
        if execution is not None:
            report(args, execution, Outcome(code, f"executions-run: {error}".encode()))
        return code
    for signum in pending:
        job.stop(signum)

    heartbeats = None
    if execution is not None:
        heartbeat_client = ExecutionsClient(args.url, retry_for=0, timeout=min(args.heartbeat, 10.0))
        heartbeats = Heartbeats(heartbeat_client, execution, job, args.heartbeat)
    outcome = job.wait()
    if heartbeats is None:
        return outcome.wrapper_exit_code
    heartbeats.finish()
    heartbeat_client.close()
    if heartbeats.stopped_as is not None:
        note(f"the command {outcome.describe()} after the execution was {heartbeats.stopped_as}")
        return EXIT_STOPPED
    report(args, execution, outcome)
    return outcome.wrapper_exit_code


if __name__ == "__main__":
    sys.exit(main())
