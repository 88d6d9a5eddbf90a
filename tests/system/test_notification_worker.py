"""Notifications through the real worker process (`manage.py run_worker`) to a real receiver
process that verifies every signature with the Standard Webhooks reference library: a worker
killed mid-delivery loses nothing, two workers never send one message at the same time, a
slow receiver never delays a fast one, and SIGTERM stops a worker with sends in flight."""

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from django.db import connection

from devtools.servers import REPO_ROOT, service_env
from executions.models import ChangeChannel, ExecutionStatusChange, MessageState, NotificationMessage
from executions.notifications.services import notification_endpoint_create
from executions.services import execution_change_status

from ..factories import ExecutionFactory, UserFactory
from ..notifications import receiver_process

# A system test (real servers, processes or a browser): outside the quick loop, `pytest -m "not slow"`.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEADLINE_SECONDS = 60


def _database_url_of_this_test() -> str:
    """The test database as a DATABASE_URL, for the worker in its own process."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    return (
        f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD'] or ''}@{settings_dict['HOST']}:"
        f"{settings_dict['PORT']}/{settings_dict['NAME']}"
    )


def start_worker(tmp_path, name: str, **settings: str) -> subprocess.Popen:
    """`manage.py run_worker` in a process of its own, once it says it has started."""
    env = service_env(
        _database_url_of_this_test(), NOTIFICATIONS_ALLOW_PRIVATE_TARGETS="true", LOG_LEVEL="INFO", **settings
    )
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "run_worker"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: "Worker started" in log_path.read_text(), f"{name} to start", timeout=30)
    return worker


def stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.kill()
        worker.wait()


def wait_for(condition, what: str, timeout: float = DEADLINE_SECONDS):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited too long for {what}"
        time.sleep(0.05)


def settled(count, quiet: float = 0.5) -> int:
    """`count()` once it has not changed for `quiet` seconds."""
    last, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.05)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
    return last


def fail_executions(owner, count: int, pause: float = 0.0) -> list:
    executions = ExecutionFactory.create_batch(count, created_by=owner)
    for execution in executions:
        execution_change_status(execution_id=execution.id, status="failed", channel=ChangeChannel.API)
        time.sleep(pause)
    return executions


def webhook(owner, receiver, path, **answers):
    endpoint = notification_endpoint_create(
        owner=owner, kind="webhook", url=receiver.url(path), events=["execution.failed"]
    )
    receiver.route(path, endpoint.secret, **answers)
    return endpoint


def all_delivered(count: int):
    return lambda: NotificationMessage.objects.filter(state=MessageState.DELIVERED).count() == count


def test_a_worker_killed_mid_delivery_loses_nothing(tmp_path):
    """Each request takes 1 s at the receiver; the worker is killed (SIGKILL) as soon as its
    first requests arrive there. A second worker sends them again once the claims' lease (3 s) ends:
    the receiver, de-duplicating on webhook-id, has every message, each verified."""
    owner = UserFactory(username="alice")
    with receiver_process(tmp_path) as receiver:
        webhook(owner, receiver, "/hook", delay=1.0)
        executions = fail_executions(owner, 30)
        first = start_worker(tmp_path, "first", NOTIFICATIONS_CLAIM_LEASE="3s")
        try:
            wait_for(receiver.arrivals, "a request at the receiver")
            first.send_signal(signal.SIGKILL)
            first.wait()
            # Requests the dead worker had written may still be read by the receiver's
            # threads after the kill: what was in flight is what has arrived once that settles.
            in_flight = settled(lambda: len(receiver.arrivals()))
        finally:
            stop(first)
        second = start_worker(tmp_path, "second", NOTIFICATIONS_CLAIM_LEASE="3s")
        try:
            wait_for(all_delivered(30), "every message delivered")
        finally:
            stop(second)
        requests = receiver.requests("/hook")

    messages = {m.webhook_id: m for m in NotificationMessage.objects.all()}
    assert len(messages) == 30 and in_flight > 0
    assert {m.subject_id for m in messages.values()} == {str(e.id) for e in executions}
    assert all(r["verified"] for r in requests), [r["error"] for r in requests if not r["verified"]]
    accepted = [r["webhook_id"] for r in requests if not r["duplicate"]]
    assert sorted(accepted) == sorted(messages)  # each once, as the receiver de-duplicates
    resent = len(requests) - len(accepted)
    assert resent == in_flight  # what was in flight when it died, sent again: nothing else
    print(f"\nkilled with {in_flight} in flight; {len(requests)} requests, {resent} sent again")


def test_two_workers_never_send_one_message_at_the_same_time(tmp_path):
    """Two workers deliver 300 messages at once (each request takes 20 ms): every message
    reaches the receiver exactly once, so never twice at the same time."""
    owner = UserFactory(username="alice")
    with receiver_process(tmp_path) as receiver:
        webhook(owner, receiver, "/hook", delay=0.02)
        fail_executions(owner, 300)
        workers = [start_worker(tmp_path, f"worker-{n}") for n in range(2)]
        try:
            wait_for(all_delivered(300), "every message delivered")
        finally:
            for worker in workers:
                stop(worker)
        requests = receiver.requests("/hook")

    by_id = defaultdict(list)
    for request in requests:
        by_id[request["webhook_id"]].append((request["received_at"], request["answered_at"]))
    assert len(by_id) == 300 and all(r["verified"] for r in requests)
    overlapping = [ids for ids, spans in by_id.items() if len(spans) > 1]
    assert overlapping == [] and len(requests) == 300
    print(f"\n{len(requests)} requests for 300 messages from 2 workers, none twice")


def test_a_slow_receiver_never_delays_a_fast_one_and_sigterm_still_stops_the_worker(tmp_path):
    """Every change goes to two endpoints: one sleeps 30 s per request, one answers at once.
    Each change reaches the fast one within a second; then SIGTERM stops the worker within
    5 s although the slow one's requests are still in flight."""
    owner = UserFactory(username="alice")
    with receiver_process(tmp_path) as receiver:
        webhook(owner, receiver, "/slow", delay=30)
        webhook(owner, receiver, "/fast")
        worker = start_worker(tmp_path, "worker")
        try:
            executions = fail_executions(owner, 20, pause=0.2)
            fast = lambda: receiver.requests("/fast")  # noqa: E731
            wait_for(lambda: len(fast()) == 20, "the fast receiver's 20 messages")
            changed_at = {
                str(execution_id): at.timestamp()
                for execution_id, at in ExecutionStatusChange.objects.values_list(
                    "execution_id", "created_at"
                )
            }
            latencies = [entry["answered_at"] - changed_at[entry["subject"]] for entry in fast()]
            print("\nin order:", [round(latency, 3) for latency in latencies])
            latencies.sort()
            assert (
                NotificationMessage.objects.filter(endpoint__url__endswith="/slow", attempts=0).count() == 20
            )
            stopping = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=10)
            stopped_in = time.monotonic() - stopping
        finally:
            stop(worker)
        assert receiver.requests("/slow") == []

    assert len(executions) == len(latencies) == 20
    assert latencies[-1] < 1.0, latencies
    assert stopped_in < 5, stopped_in
    print(
        f"\nfast receiver: median {latencies[10] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms after the "
        f"change; SIGTERM with the slow one in flight: stopped in {stopped_in:.2f} s"
    )
    assert os.path.exists(tmp_path / "worker.log")
