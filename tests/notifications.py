"""What the notification tests share: a real webhook receiver process (tests/webhook_receiver.py)
and a way to run the worker's notification tasks in the test process until something holds."""

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

from django.utils import timezone

from executions.notifications.delivery import NotificationDelivery
from executions.notifications.fanout import notifications_fan_out

RECEIVER_SCRIPT = Path(__file__).with_name("webhook_receiver.py")


class Receiver:
    """A webhook receiver process on a free port of 127.0.0.1 (see webhook_receiver.py)."""

    def __init__(self, folder: Path):
        self.routes_path = folder / "routes.json"
        self.log_path = folder / "requests.jsonl"
        self.routes: dict = {}
        self._write_routes()
        self.log_path.touch()
        self.process = subprocess.Popen(
            [sys.executable, str(RECEIVER_SCRIPT), str(self.routes_path), str(self.log_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.process.kill()
            raise RuntimeError(f"the receiver did not start: {line!r}")
        self.port = int(line.split()[-1])

    def _write_routes(self) -> None:
        temporary = self.routes_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.routes))
        temporary.replace(self.routes_path)  # never half a file for the receiver to read

    def route(self, path: str, secret: str, **answers) -> str:
        """Answer `path` as `answers` say (statuses, delay, retry_after); its URL."""
        self.routes[path] = {"secret": secret, **answers}
        self._write_routes()
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self, path: str | None = None) -> list[dict]:
        lines = self.log_path.read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        return [entry for entry in entries if path is None or entry["path"] == path]

    def arrivals(self) -> list[str]:
        """The webhook-id of each request that arrived, answered or not (in flight)."""
        path = self.log_path.with_name(self.log_path.name + ".arrivals")
        return path.read_text().splitlines() if path.exists() else []

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()


@contextlib.contextmanager
def receiver_process(folder: Path):
    receiver = Receiver(folder)
    try:
        yield receiver
    finally:
        receiver.close()


def run_tasks_until(condition, *, delivery: NotificationDelivery, timeout: float = 10.0, clock=timezone.now):
    """Run the fan-out and `delivery` (the worker's notification tasks) in this process, as
    the worker's loop would, until `condition()` holds; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        now = clock()
        notifications_fan_out(now)
        wait = delivery(now)
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(min(wait, 0.02))
