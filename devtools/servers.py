"""The service's processes on 127.0.0.1 for the tests and the benchmarks: its environment,
manage.py commands, gunicorn, the production setup (deploy/serve.py), the worker
(manage.py run_worker), and redis-server."""

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devtools.net import free_port, request

REPO_ROOT = Path(__file__).resolve().parent.parent


def _metrics_folder() -> str:
    folder = tempfile.mkdtemp(prefix="executions-metrics-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment the service runs with against `database_url`: production settings
    (DEBUG off), a throwaway secret, this checkout importable, no rate limits; `extra` on top
    (e.g. DATABASE_CONN_MAX_AGE="600", persistent connections as in production)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_SECRET_KEY="devtools-not-a-secret-" + "x" * 40,  # 50+ characters, as check --deploy wants
        DJANGO_DEBUG="false",
        # Never the developer's .env (scripts/serve.sh writes one): only what is set here counts.
        DJANGO_ENV_FILE="",
        # The servers listen on 127.0.0.1 only, whatever the caller's shell says.
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        PYTHONPATH=str(REPO_ROOT),
        LOG_LEVEL="WARNING",
        # Off: one token here sends far more than one user's production rate (600/min); the
        # benchmarks measure the service, not its rate limits (docs/security.md).
        API_THROTTLE_USER="",
        API_THROTTLE_ANON="",
        # The metrics of every process started with this environment (servers, the worker,
        # commands) add up in a folder of their own, never the checkout's var/metrics.
        PROMETHEUS_MULTIPROC_DIR=_metrics_folder(),
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """Run a manage.py command in its own process; its standard output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def create_user_with_token(env: dict[str, str], username: str, superuser: bool = False) -> str:
    """A user (a superuser if asked) and their API token."""
    code = (
        "from django.contrib.auth.models import User;"
        "from executions.tokens import token_create;"
        f"user = User.objects.create_user({username!r}, is_superuser={superuser}, is_staff={superuser});"
        "print(token_create(user=user, name='tests')[1])"
    )
    # The last line: `shell` may print a line of its own about automatic imports first.
    return manage(env, "shell", "-c", code).strip().splitlines()[-1]


class _ServerProcess:
    """A server in a child process on self.port of 127.0.0.1, its output in a log file (one of
    its own, deleted with the server, unless `log_path` is given). A context manager."""

    label = "server"  # in error messages and the log's name
    ready_path = "/"  # answers 200 once it serves
    stop_timeout = 30

    def _start(self, command: list[str], env: dict[str, str], log_path: str | None) -> None:
        self._own_log = log_path is None
        self.log_path = log_path or os.path.join(
            tempfile.gettempdir(), f"executions-{self.label.replace('/', '-')}-{self.port}.log"
        )
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_until_serving()

    def _wait_until_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.process.returncode}: {self.log()}")
            with contextlib.suppress(OSError):
                if request(self.port, "GET", self.ready_path, timeout=5)[0] == 200:
                    return
            time.sleep(0.2)
        self.close()
        raise RuntimeError(f"{self.label} did not serve within {timeout}s: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return Path(self.log_path).read_text(errors="replace")[-5000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        if self._own_log:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.log_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class Gunicorn(_ServerProcess):
    """gunicorn serving config.wsgi on a free port of 127.0.0.1 (a context manager)."""

    label = "gunicorn"
    ready_path = "/api/schema/"

    def __init__(
        self,
        env: dict[str, str],
        workers: int = 2,
        threads: int = 4,
        log_path: str | None = None,
        worker_class: str = "gthread",
        port: int | None = None,
    ):
        # A port of its own, or the one of a server it replaces (a restart, as clients see it).
        self.port = port or free_port()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            worker_class,
            "--timeout",
            "60",
            # Several servers may run at once (tests, soak): none needs gunicorn's control socket.
            "--no-control-socket",
        ]
        self._start(command, env, log_path)

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []


class ProductionServer(_ServerProcess):
    """The production setup, as scripts/serve-production.sh runs it after migrating:
    deploy/serve.py (nginx in front of gunicorn) on a free port of 127.0.0.1. A context manager."""

    label = "deploy/serve.py"
    ready_path = "/healthz"
    stop_timeout = 60

    def __init__(self, env: dict[str, str], log_path: str | None = None):
        self.port = free_port()
        self._start(
            [sys.executable, "deploy/serve.py"],
            {**env, "HOST": "127.0.0.1", "PORT": str(self.port)},
            log_path,
        )


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


class RedisServer:
    """redis-server on a free port of 127.0.0.1, in a temporary folder, nothing persisted;
    `stop()` and `start()` may be called any number of times (a restarted server is empty);
    `destroy()` stops it and deletes the folder."""

    def __init__(self):
        self.binary = redis_server_binary()
        if self.binary is None:
            raise RuntimeError("redis-server not found (Debian: apt-get install redis-server)")
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="executions-redis-")
        self.process = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._log = open(os.path.join(self.workdir, "redis.log"), "ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.workdir,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not start: {Path(self.workdir, 'redis.log').read_text()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self._log.close()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class WorkerProcess:
    """`manage.py run_worker` in a child process, its log (standard error, where it logs) in a
    file of its own; started once its "Worker started" line is written. A context manager:
    leaving it stops the worker with SIGTERM (SIGKILL if it is still there after 30 s)."""

    STARTED = "Worker started"

    def __init__(self, env: dict[str, str], timeout: float = 60):
        self._log_file = tempfile.NamedTemporaryFile(prefix="executions-worker-", suffix=".log", delete=False)
        self.log_path = self._log_file.name
        self._final_log = None
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_worker"],
            cwd=REPO_ROOT,
            # INFO: the "Worker started" line, and what it did, are what the callers read.
            env={**env, "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while self.STARTED not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"run_worker exited with {self.process.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"run_worker did not start within {timeout}s: {self.log()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """What it logged so far (all of it, once closed)."""
        if self._final_log is not None:
            return self._final_log
        return Path(self.log_path).read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `signum` (if it still runs) and wait for it; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def close(self) -> None:
        if self._final_log is not None:
            return
        self.stop()
        self._final_log = self.log()
        self._log_file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.log_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
