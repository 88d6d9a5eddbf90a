"""Real servers for the reliability tests and bench/soak.py: a throwaway PostgreSQL that a
test may stop and start again, and gunicorn serving the service on 127.0.0.1.

The same steps as scripts/with-postgres.sh (initdb in a temporary folder, as a non-root
user, on a free port), in Python so that a test can stop the server halfway through.
"""

import contextlib
import glob
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> str | None:
    """The PostgreSQL server binaries' folder (PG_BIN, else the newest installed), or None."""
    candidates = (
        [os.environ["PG_BIN"]]
        if os.environ.get("PG_BIN")
        else sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(path.split("/")[-2]))
    )
    for folder in reversed(candidates):
        if os.access(os.path.join(folder, "initdb"), os.X_OK):
            return folder
    return None


class ThrowawayPostgres:
    """A PostgreSQL server of its own in a temporary folder; `stop()` and `start()` may be
    called any number of times; `destroy()` stops it and deletes the folder."""

    def __init__(self, bin_dir: str | None = None, durable: bool = False):
        # Durable: a commit that was acknowledged survives `stop()` (a crash of PostgreSQL,
        # not of the machine, so fsync may stay off). Not durable: faster, for load only.
        self.durable = durable
        self.bin_dir = bin_dir or postgres_bin()
        if self.bin_dir is None:
            raise RuntimeError("No PostgreSQL server binaries found (set PG_BIN)")
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="executions-pg-")
        os.chmod(self.workdir, 0o755)
        self.run_as: list[str] = []
        if os.getuid() == 0:
            # initdb and postgres refuse to run as root.
            user = os.environ.get("PG_OS_USER", "postgres")
            if subprocess.run(["id", user], capture_output=True).returncode != 0:
                subprocess.run(["useradd", "--system", "--no-create-home", user], check=True)
            shutil.chown(self.workdir, user)
            self.run_as = ["runuser", "-u", user, "--"]
        self.data = os.path.join(self.workdir, "data")
        self._pg(["initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        self.start()

    def url(self, database: str = "executions") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _pg(self, args: list[str]) -> None:
        command = [*self.run_as, os.path.join(self.bin_dir, args[0]), *args[1:]]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.workdir} "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        if not self.durable:
            options += " -c synchronous_commit=off"
        self._pg(
            [
                "pg_ctl",
                "-D",
                self.data,
                "-l",
                os.path.join(self.workdir, "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ]
        )

    def stop(self) -> None:
        """Stop at once, as a crash would: every open connection is cut."""
        self._pg(["pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"])

    def create_database(self, name: str = "executions") -> None:
        self._pg(["createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name])

    def query(self, sql: str, params=(), database: str = "executions") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database)) as connection:
            return connection.execute(sql, params).fetchall()

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment the service runs with: production settings, a throwaway secret."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_SECRET_KEY="reliability-tests-not-a-secret",
        DJANGO_DEBUG="false",
        DATABASE_URL=database_url,
        LOG_LEVEL="WARNING",
        # Off: one token here sends far more than one user's production rate (600/min).
        API_THROTTLE_USER="",
        API_THROTTLE_ANON="",
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


def request(port: int, method: str, path: str, body=None, headers=None, timeout: float = 30):
    """One HTTP request to 127.0.0.1:port: (status, headers, parsed JSON or raw bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json"} if payload is not None else {}
        all_headers.update(headers or {})
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        return response.status, dict(response.getheaders()), parsed
    finally:
        connection.close()


class Gunicorn:
    """gunicorn serving config.wsgi on a free port of 127.0.0.1 (a context manager)."""

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
        self._own_log = log_path is None  # a log of our own is deleted with the server
        self.log_path = log_path or os.path.join(
            tempfile.gettempdir(), f"executions-gunicorn-{self.port}.log"
        )
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
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
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_serving()

    def _wait_until_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}: {self.log()}")
            with contextlib.suppress(OSError):
                if request(self.port, "GET", "/api/schema/", timeout=5)[0] == 200:
                    return
            time.sleep(0.2)
        self.close()
        raise RuntimeError(f"gunicorn did not serve within {timeout}s: {self.log()}")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def log(self) -> str:
        self._log.flush()
        return Path(self.log_path).read_text(errors="replace")[-5000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
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


class ProductionServer:
    """The production setup, as scripts/serve-production.sh runs it after migrating:
    deploy/serve.py (nginx in front of gunicorn) on a free port of 127.0.0.1. A context manager."""

    def __init__(self, env: dict[str, str], log_path: str | None = None):
        self.port = free_port()
        self.log_path = log_path or os.path.join(tempfile.gettempdir(), f"executions-serve-{self.port}.log")
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "deploy/serve.py"],
            cwd=REPO_ROOT,
            env={**env, "HOST": "127.0.0.1", "PORT": str(self.port)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"deploy/serve.py exited with {self.process.returncode}: {self.log()}")
            with contextlib.suppress(OSError):
                if request(self.port, "GET", "/healthz", timeout=5)[0] == 200:
                    return
            time.sleep(0.2)
        self.close()
        raise RuntimeError(f"the production setup did not serve within 60s: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return Path(self.log_path).read_text(errors="replace")[-5000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.log_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class SlowClients:
    """`count` connections to 127.0.0.1:port that each send `head`, then `trickle`, one byte
    per second (from one thread), as a slow or hostile client would. `closed_after` holds,
    per connection, the seconds after it opened at which the server closed it (None: open)."""

    def __init__(self, port: int, count: int, head: bytes, trickle: bytes):
        self.sockets = []
        self.opened_at = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.setblocking(False)
            self.sockets.append(sock)
            self.opened_at.append(time.monotonic())
            if head:
                sock.sendall(head)
        self.trickle = trickle
        self.closed_after: list[float | None] = [None] * count
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        position = 0
        while not self._stop:
            for index, sock in enumerate(self.sockets):
                if self.closed_after[index] is None and self._server_closed(sock):
                    self.closed_after[index] = time.monotonic() - self.opened_at[index]
                elif self.closed_after[index] is None and position < len(self.trickle):
                    with contextlib.suppress(BlockingIOError):
                        sock.send(self.trickle[position : position + 1])
            position += 1
            # A second until the next byte, noticing closed connections meanwhile.
            for _ in range(10):
                if self._stop:
                    return
                time.sleep(0.1)
                for index, sock in enumerate(self.sockets):
                    if self.closed_after[index] is None and self._server_closed(sock):
                        self.closed_after[index] = time.monotonic() - self.opened_at[index]

    @staticmethod
    def _server_closed(sock) -> bool:
        """Closed, reset, or answered (an answer to a request not yet sent ends it too)."""
        try:
            sock.recv(65536)
            return True
        except BlockingIOError:
            return False
        except OSError:
            return True

    def still_open(self) -> int:
        return sum(1 for closed in self.closed_after if closed is None)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        for sock in self.sockets:
            sock.close()


def slowest_answers(port: int, seconds: float, requests: list[tuple]) -> dict[str, tuple[float, list]]:
    """Send each (name, method, path, body, headers) in turn, again and again for `seconds`,
    one at a time; per name, the slowest answer's seconds and every status seen. A request
    that got no answer within 10 s counts as 10 s with status None."""
    slowest: dict[str, tuple[float, list]] = {name: (0.0, []) for name, *_ in requests}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, method, path, body, headers in requests:
            started = time.monotonic()
            try:
                status = request(port, method, path, body=body, headers=headers, timeout=10)[0]
            except OSError:
                status = None
            elapsed = time.monotonic() - started
            worst, statuses = slowest[name]
            slowest[name] = (max(worst, elapsed), [*statuses, status])
            time.sleep(0.1)
    return slowest


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
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.workdir,
             "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {Path(self.workdir, 'redis.log').read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self._log.close()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
