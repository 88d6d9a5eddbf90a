"""Serve the service in production: gunicorn (config/gunicorn.conf.py) behind nginx
(deploy/nginx.conf), and the worker (manage.py run_worker), all children of this process,
until SIGTERM or SIGINT.

scripts/serve-production.sh migrates and then runs this; the tests run it directly.
Everything that is this instance's own (nginx's configuration, pid and temporary files,
gunicorn's control socket, its port on 127.0.0.1) lives in a fresh temporary folder, so
that several instances on one host never share a path. When any child exits (gunicorn,
nginx or the worker), the others are stopped too and this process exits with status 1: the
system's supervisor (systemd, Kubernetes) restarts the whole, as for a crash of any part,
rather than this process hiding a worker that keeps dying (docs/operations.md).
"""

import grp
import http.client
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "deploy" / "nginx.conf"
TEMP_FOLDERS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def free_port() -> int:
    # Production code: not devtools.net's, since nothing deployed may depend on dev tooling.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_settings():
    """The service's settings as it reads them (the environment, DJANGO_ENV_FILE)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    return settings


def host_django_accepts(allowed_hosts: list[str]) -> str:
    """A Host header that ALLOWED_HOSTS lets through, for the requests nginx makes itself."""
    for pattern in allowed_hosts:
        if pattern == "*":
            return "localhost"
        if pattern:
            return pattern.lstrip(".")
    return "localhost"


# nginx's connections per worker process, and the open files each needs for them.
WORKER_CONNECTIONS = 4096
FILES_PER_CONNECTION = 2


def nginx_connection_limits(uid: int, hard_file_limit: int) -> tuple[int, int, str | None]:
    """(worker_connections, worker_rlimit_nofile, a warning or None). nginx raises its workers'
    soft limit on open files to worker_rlimit_nofile; only root may go past the hard limit,
    so anyone else gets fewer connections than WORKER_CONNECTIONS when the hard limit is low."""
    wanted = WORKER_CONNECTIONS * FILES_PER_CONNECTION
    if uid == 0 or hard_file_limit == resource.RLIM_INFINITY or hard_file_limit >= wanted:
        return WORKER_CONNECTIONS, wanted, None
    connections = hard_file_limit // FILES_PER_CONNECTION
    return (
        connections,
        hard_file_limit,
        f"deploy/serve.py: the hard limit on open files (ulimit -Hn) is {hard_file_limit}: nginx serves "
        f"at most {connections} connections per worker process instead of {WORKER_CONNECTIONS} "
        f"(raise the hard limit to {wanted} for all of them)",
    )


def nginx_config(run_dir: str, upstream: str, listen: str) -> str:
    env = os.environ
    gunicorn_timeout = int(env.get("GUNICORN_TIMEOUT") or 30)
    settings = service_settings()
    connections, file_limit, warning = nginx_connection_limits(
        os.getuid(), resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    )
    if warning:
        print(warning, file=sys.stderr, flush=True)
    values = {
        "LISTEN": listen,
        "UPSTREAM": upstream,
        "RUN_DIR": run_dir,
        "CLIENT_HEADER_TIMEOUT": env.get("NGINX_CLIENT_HEADER_TIMEOUT") or "10s",
        "CLIENT_BODY_TIMEOUT": env.get("NGINX_CLIENT_BODY_TIMEOUT") or "10s",
        # nginx's limit is the service's own: a body Django would refuse never reaches it.
        "CLIENT_MAX_BODY_SIZE": str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0),
        "ERROR_HOST": host_django_accepts(settings.ALLOWED_HOSTS),
        "WORKER_CONNECTIONS": str(connections),
        "WORKER_RLIMIT_NOFILE": str(file_limit),
        # Longer than gunicorn's, so that a stuck request is gunicorn's to end (and a 502).
        "UPSTREAM_TIMEOUT": f"{gunicorn_timeout + 5}s",
        # Started as root, nginx would hand its workers to an unprivileged user that cannot
        # write this folder: they run as the user that runs the service instead.
        "USER_DIRECTIVE": (
            f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};"
            if os.getuid() == 0
            else ""
        ),
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text


def wait_until_serving(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until a gunicorn worker answers /healthz (its port opens before any worker booted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"gunicorn exited with status {process.returncode} before serving")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    sys.exit(f"gunicorn did not serve on 127.0.0.1:{port} within {timeout:.0f}s")


def write_nginx_config(run_dir: str, upstream: str, listen: str) -> str:
    """nginx's configuration and temporary folders in `run_dir`; the configuration's path."""
    for folder in TEMP_FOLDERS:
        os.makedirs(os.path.join(run_dir, folder), exist_ok=True)
    config_path = os.path.join(run_dir, "nginx.conf")
    Path(config_path).write_text(nginx_config(run_dir, upstream, listen))
    return config_path


def start_nginx(run_dir: str, config_path: str, **popen_options) -> subprocess.Popen:
    """nginx in the foreground, as a child; its error log on standard error. In UTC: its
    error bodies' timestamps are written from its local time."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if nginx is None:
        sys.exit("nginx is not installed (Debian: apt-get install nginx)")
    env = {**popen_options.pop("env", os.environ), "TZ": "UTC"}
    return subprocess.Popen(
        [nginx, "-p", run_dir, "-c", config_path, "-e", "stderr", "-g", "daemon off;"],
        env=env,
        **popen_options,
    )


def main() -> int:
    from django.core.exceptions import ImproperlyConfigured

    listen = f"{os.environ.get('HOST') or '127.0.0.1'}:{os.environ.get('PORT') or '8000'}"
    run_dir = tempfile.mkdtemp(prefix="executions-serve-")
    upstream_port = free_port()
    try:
        config_path = write_nginx_config(run_dir, f"127.0.0.1:{upstream_port}", listen)
    except ImproperlyConfigured as error:
        # A missing secret, a malformed DATABASE_URL: one line, as manage.py says it.
        shutil.rmtree(run_dir, ignore_errors=True)
        sys.exit(f"deploy/serve.py: {error}")

    # Behind nginx every client reaches Django from 127.0.0.1: the rate limits and the admin's
    # login lockout find the client in the last X-Forwarded-For entry instead, nginx's own.
    env = {**os.environ, "API_NUM_PROXIES": os.environ.get("API_NUM_PROXIES") or "1"}
    children: list[subprocess.Popen] = []
    names: dict[int, str] = {}  # pid: what it is, for the log
    asked_to_stop = []

    def stop(*_):
        asked_to_stop.append(True)
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        gunicorn = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn",
                "--config", str(REPO_ROOT / "config" / "gunicorn.conf.py"),
                "--bind", f"127.0.0.1:{upstream_port}",
                # gunicorn 27's control socket has one default path per host: this instance's own.
                "--control-socket", os.path.join(run_dir, "gunicorn.ctl"),
            ],
            cwd=REPO_ROOT, env=env,
        )  # fmt: skip
        children.append(gunicorn)
        names[gunicorn.pid] = "gunicorn"
        wait_until_serving(upstream_port, gunicorn)
        nginx = start_nginx(run_dir, config_path)
        children.append(nginx)
        names[nginx.pid] = "nginx"
        # The worker: deadlines, stale executions, the monitors and notifications. Stopped by
        # the same SIGTERM, it finishes its current batch first (within seconds).
        worker = subprocess.Popen([sys.executable, "manage.py", "run_worker"], cwd=REPO_ROOT, env=env)
        children.append(worker)
        names[worker.pid] = "the worker"
        print(
            f"Serving on http://{listen}"
            f" (nginx, then gunicorn on 127.0.0.1:{upstream_port}); instance files in {run_dir}",
            file=sys.stderr,
            flush=True,
        )
        # Until one of them exits (or a signal stops them all), then the others go too.
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = not asked_to_stop
        if failed:
            ended = next(child for child in children if child.poll() is not None)
            print(
                f"{names[ended.pid]} exited with status {ended.returncode}: stopping the others",
                file=sys.stderr,
                flush=True,
            )
        stop()
        for child in children:
            try:
                child.wait(timeout=40)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return 1 if failed else 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
