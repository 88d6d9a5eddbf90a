"""The webhook receiver docs/clients.md shows, run exactly as written there, in a process of
its own: it verifies the service's real deliveries (signed by the worker's own tasks), prints
each event once even when the service sends it again (a replay, same webhook-id), and refuses
a request that was not signed with the endpoint's secret."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devtools.net import free_port
from executions.models import NotificationMessage
from executions.notifications.delivery import NotificationDelivery

from ..factories import ExecutionFactory
from ..notifications import run_tasks_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLIENTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"
ENDPOINTS = "/api/v1/notification-endpoints"


def the_documented_receiver() -> str:
    blocks = re.findall(r"```python\n(.*?)```", CLIENTS_DOC.read_text(), re.S)
    [receiver] = [block for block in blocks if "verify_webhook(self.headers" in block]
    return receiver


def test_the_documented_receiver_is_short():
    lines = [line for line in the_documented_receiver().splitlines() if line.strip()]
    assert len(lines) <= 17


@pytest.fixture
def receiver(tmp_path):
    """Start the documented receiver; `start(secret)` returns (its URL, a reader of its output)."""
    script = tmp_path / "receiver.py"
    script.write_text(the_documented_receiver())
    output = tmp_path / "output.txt"
    processes = []

    def start(secret: str):
        port = free_port()
        with output.open("w") as stdout:
            process = subprocess.Popen(
                [sys.executable, str(script)],
                env={**os.environ, "WEBHOOK_SECRET": secret, "PORT": str(port)},
                stdout=stdout,
                stderr=subprocess.DEVNULL,
            )
        processes.append(process)
        url = f"http://127.0.0.1:{port}/hooks/executions"
        deadline = time.monotonic() + 10
        while True:  # until it listens
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.05)
        return url, lambda: output.read_text().splitlines()

    yield start
    for process in processes:
        process.kill()
        process.wait()


def delivered_again(count: int):
    attempts = NotificationMessage.objects.filter(state="delivered", delivery_attempts__succeeded=True)
    return lambda: attempts.count() >= count


def test_the_documented_receiver_verifies_de_duplicates_and_refuses_forgeries(owner_client, owner, receiver):
    # The endpoint first, for its secret; then the receiver, which needs it; then its URL.
    created = owner_client.post(
        ENDPOINTS,
        {"kind": "webhook", "url": "https://placeholder.example/", "events": ["execution.failed"]},
        format="json",
    ).json()
    url, printed = receiver(created["secret"])
    owner_client.patch(f"{ENDPOINTS}/{created['id']}", {"url": url}, format="json")

    execution = ExecutionFactory(created_by=owner, name="nightly-report")
    owner_client.patch(f"/api/v1/executions/{execution.pk}", {"status": "failed"}, format="json")
    run_tasks_until(delivered_again(1), delivery=NotificationDelivery(), timeout=20)
    assert printed() == ["execution.failed nightly-report"]

    # The same message again: answered 2xx (delivered), handled once.
    message = NotificationMessage.objects.get()
    assert (
        owner_client.post(f"{ENDPOINTS}/{created['id']}/deliveries/{message.webhook_id}/replay").status_code
        == 202
    )
    run_tasks_until(delivered_again(2), delivery=NotificationDelivery(), timeout=20)
    assert printed() == ["execution.failed nightly-report"]
    attempts = owner_client.get(f"{ENDPOINTS}/{created['id']}/deliveries").json()["results"][0][
        "delivery_attempts"
    ]
    assert [attempt["status_code"] for attempt in attempts] == [204, 204]

    # A request signed with another secret, or not at all, is refused and printed nowhere.
    forged = httpx.post(
        url,
        content=b'{"type": "execution.failed", "data": {"name": "forged"}}',
        headers={
            "webhook-id": "msg_forged",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,AAAA",
        },
    )
    assert forged.status_code == 400
    assert httpx.post(url, content=b"{}").status_code == 400
    assert printed() == ["execution.failed nightly-report"]
