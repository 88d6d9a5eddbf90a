"""Delivery of the outbox to a real receiver process (tests/webhook_receiver.py), which checks
every signature with the Standard Webhooks reference library: retries, Retry-After, 410,
order per subject, claims, rotation, the delivery log. The worker's tasks run in the test
process with an injected clock, so a retry 2 hours away takes no time."""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from executions.models import (
    RESPONSE_BODY_KEPT_BYTES,
    ChangeChannel,
    DeliveryAttempt,
    ExecutionStatusChange,
    MessageState,
    NotificationEndpoint,
    NotificationMessage,
)
from executions.notifications import transports
from executions.notifications.delivery import (
    ENDPOINT_FAILING_DISABLES_AFTER,
    PER_ENDPOINT_IN_FLIGHT,
    NotificationDelivery,
)
from executions.notifications.services import (
    notification_endpoint_create,
    notification_endpoint_rotate_secret,
)
from executions.services import execution_change_status
from tests.factories import ExecutionFactory, UserFactory
from tests.notifications import receiver_process, run_tasks_until

EVENTS = ["execution.failed", "execution.completed"]


class Clock:
    """The real time, moved forward on request: the delivery's `now`."""

    def __init__(self):
        self.offset = timedelta(0)

    def __call__(self):
        return timezone.now() + self.offset

    def move_to(self, when):
        self.offset = max(self.offset, when - timezone.now())


@pytest.fixture
def receiver(tmp_path):
    with receiver_process(tmp_path) as receiver:
        yield receiver


@pytest.fixture
def owner(db):
    return UserFactory(username="alice", email="alice@example.com")


def webhook(owner, receiver, path="/hook", **answers):
    """An endpoint of `owner` whose receiver answers `path` as `answers` say."""
    endpoint = notification_endpoint_create(
        owner=owner, kind="webhook", url=receiver.url(path), events=EVENTS
    )
    receiver.route(path, endpoint.secret, **answers)
    return endpoint


def message_for(endpoint, subject="s-1", **fields):
    """A message in the outbox, as the fan-out makes them."""
    return NotificationMessage.objects.create(
        endpoint=endpoint,
        event_type=fields.pop("event_type", "execution.failed"),
        subject_id=subject,
        occurred_at=timezone.now(),
        payload=fields.pop("payload", {"id": subject, "name": "job"}),
        **fields,
    )


def refreshed(instance):
    instance.refresh_from_db()
    return instance


def run_until(condition, clock=None, delivery=None, timeout=10.0):
    delivery = delivery or NotificationDelivery()
    run_tasks_until(condition, delivery=delivery, clock=clock or timezone.now, timeout=timeout)
    return delivery


def attempts_of(message):
    return list(DeliveryAttempt.objects.filter(message=message).order_by("attempted_at", "id"))


@pytest.mark.django_db(transaction=True)
def test_a_change_reaches_the_receiver_signed_once_and_is_logged(owner, receiver):
    webhook(owner, receiver, answer="thanks")
    execution = ExecutionFactory(created_by=owner, name="nightly-report")
    execution_change_status(
        execution_id=execution.id, status="failed", channel=ChangeChannel.API, error_info={"exit": 2}
    )

    run_until(lambda: NotificationMessage.objects.filter(state=MessageState.DELIVERED).exists())
    message = NotificationMessage.objects.get()
    [request] = receiver.requests("/hook")
    assert request["verified"], request["error"]
    assert request["webhook_id"] == message.webhook_id and not request["duplicate"]
    assert abs(int(request["timestamp"]) - time.time()) < 30
    assert (request["type"], request["subject"]) == ("execution.failed", str(execution.id))
    [attempt] = attempts_of(message)
    assert (attempt.succeeded, attempt.status_code, attempt.error, attempt.response_body) == (
        True,
        200,
        "",
        "thanks",
    )
    assert 0 <= attempt.latency_ms < 5000
    assert (
        message.state == MessageState.DELIVERED and message.attempts == 1 and message.finished_at is not None
    )
    assert message.claim_token is None


def test_the_first_kilobyte_of_an_answer_is_kept(owner, receiver):
    message = message_for(webhook(owner, receiver, answer="é" * 5000))
    run_until(lambda: refreshed(message).state == MessageState.DELIVERED)
    [attempt] = attempts_of(message)
    assert attempt.response_body == "é" * (RESPONSE_BODY_KEPT_BYTES // 2)


@pytest.mark.parametrize("status", [302, 301, 500, 404])
def test_only_2xx_is_a_success_and_a_redirect_is_never_followed(owner, receiver, status):
    message = message_for(webhook(owner, receiver, statuses=[status]))
    clock = Clock()
    run_until(lambda: refreshed(message).attempts == 1, clock=clock)
    [attempt] = attempts_of(message)
    assert (attempt.succeeded, attempt.status_code, attempt.error) == (False, status, f"HTTP {status}")
    assert message.state == MessageState.PENDING
    # The next attempt is the schedule's second step, 5 s (with jitter) after this one.
    assert timedelta(seconds=4) < message.next_attempt_at - attempt.attempted_at < timedelta(seconds=6)
    assert [request["path"] for request in receiver.requests()] == ["/hook"]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(owner, receiver, status):
    message = message_for(webhook(owner, receiver, statuses=[status, 200], retry_after="120"))
    clock = Clock()
    delivery = run_until(lambda: refreshed(message).attempts == 1, clock=clock)
    first_answered_at = clock()
    assert timedelta(seconds=119) < message.next_attempt_at - first_answered_at < timedelta(seconds=121)

    # Not before it is due...
    delivery(clock())
    time.sleep(0.2)
    delivery(clock())
    assert len(receiver.requests()) == 1
    # ...then at once.
    clock.move_to(message.next_attempt_at)
    run_until(lambda: refreshed(message).state == MessageState.DELIVERED, clock=clock, delivery=delivery)
    first, second = receiver.requests()
    assert first["webhook_id"] == second["webhook_id"] == message.webhook_id
    assert first["verified"] and second["verified"]
    assert [a.status_code for a in attempts_of(message)] == [status, 200]


def test_a_receiver_that_keeps_failing_gets_eight_attempts_then_the_message_fails(owner, receiver):
    message = message_for(webhook(owner, receiver, statuses=[500]))
    clock = Clock()
    delivery = NotificationDelivery()
    for attempt in range(1, 9):
        run_until(lambda n=attempt: refreshed(message).attempts == n, clock=clock, delivery=delivery)
        clock.move_to(message.next_attempt_at + timedelta(seconds=1))
    assert message.state == MessageState.FAILED and message.finished_at is not None
    assert [a.status_code for a in attempts_of(message)] == [500] * 8
    gaps = [
        (b.attempted_at - a.attempted_at).total_seconds()
        for a, b in zip(attempts_of(message), attempts_of(message)[1:], strict=False)
    ]
    planned = [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert all(p * 0.9 <= gap <= p * 1.1 + 2 for p, gap in zip(planned, gaps, strict=True)), gaps
    requests = receiver.requests()
    assert len(requests) == 8 and {r["webhook_id"] for r in requests} == {message.webhook_id}
    delivery(clock() + timedelta(days=1))
    assert len(receiver.requests()) == 8  # no ninth


def test_410_gone_disables_the_endpoint_and_nothing_more_is_sent(owner, receiver):
    endpoint = webhook(owner, receiver, statuses=[410])
    first = message_for(endpoint, subject="a")
    run_until(lambda: refreshed(first).state == MessageState.FAILED)
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "gone")
    assert endpoint.disabled_at is not None
    later = message_for(endpoint, subject="b")
    delivery = NotificationDelivery()
    for _ in range(5):
        delivery(timezone.now())
    assert refreshed(later).state == MessageState.PENDING and len(receiver.requests()) == 1


def test_an_endpoint_failing_for_five_days_is_disabled_and_its_owner_told(owner, receiver, settings):
    endpoint = webhook(owner, receiver, statuses=[500])
    started_failing = timezone.now() - ENDPOINT_FAILING_DISABLES_AFTER + timedelta(minutes=1)
    NotificationEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=started_failing)
    message = message_for(endpoint)
    clock = Clock()
    delivery = run_until(lambda: refreshed(message).attempts == 1, clock=clock)
    assert refreshed(endpoint).enabled and endpoint.failing_since == started_failing  # 4 days 23:59

    clock.move_to(message.next_attempt_at + timedelta(minutes=1))
    run_until(lambda: refreshed(message).attempts == 2, clock=clock, delivery=delivery)
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "failing")
    deadline = time.monotonic() + 5
    while not mail.outbox and time.monotonic() < deadline:
        time.sleep(0.02)
    [email] = mail.outbox
    assert email.to == ["alice@example.com"]
    assert "was disabled" in email.body and endpoint.url in email.body


def test_a_success_ends_an_endpoints_failing_streak(owner, receiver):
    endpoint = webhook(owner, receiver, statuses=[500, 200])
    message = message_for(endpoint)
    clock = Clock()
    delivery = run_until(lambda: refreshed(message).attempts == 1, clock=clock)
    assert refreshed(endpoint).failing_since is not None
    clock.move_to(message.next_attempt_at)
    run_until(lambda: refreshed(message).state == MessageState.DELIVERED, clock=clock, delivery=delivery)
    assert refreshed(endpoint).failing_since is None


def test_messages_about_one_subject_arrive_in_order_and_others_do_not_wait(owner, receiver):
    """The first message about s-1 fails once (503, Retry-After 1 s); the two after it wait
    for it, while a message about s-2 goes at once."""
    endpoint = webhook(owner, receiver, statuses=[503, 200], retry_after="1")
    first, second, third = (message_for(endpoint, subject="s-1") for _ in range(3))
    clock = Clock()
    delivery = run_until(lambda: refreshed(first).attempts == 1, clock=clock)
    other = message_for(endpoint, subject="s-2")
    run_until(lambda: refreshed(other).state == MessageState.DELIVERED, clock=clock, delivery=delivery)
    assert refreshed(second).attempts == 0 and refreshed(third).attempts == 0

    clock.move_to(first.next_attempt_at)
    run_until(lambda: refreshed(third).state == MessageState.DELIVERED, clock=clock, delivery=delivery)
    order = [request["webhook_id"] for request in receiver.requests()]
    assert order == [
        first.webhook_id,
        other.webhook_id,
        first.webhook_id,
        second.webhook_id,
        third.webhook_id,
    ]


def test_during_a_rotation_either_secret_verifies_and_after_24_hours_only_the_new_one(owner, receiver):
    endpoint = webhook(owner, receiver, path="/old")
    old_secret = endpoint.secret
    new_secret = notification_endpoint_rotate_secret(endpoint)
    assert new_secret != old_secret and endpoint.previous_secret == old_secret
    receiver.route("/new", new_secret)
    clock = Clock()
    for path in ("/old", "/new"):
        NotificationEndpoint.objects.filter(pk=endpoint.pk).update(url=receiver.url(path))
        message = message_for(endpoint, subject=path)
        run_until(lambda m=message: refreshed(m).state == MessageState.DELIVERED, clock=clock)
    assert [(r["path"], r["verified"]) for r in receiver.requests()] == [("/old", True), ("/new", True)]

    clock.move_to(endpoint.previous_secret_expires_at + timedelta(seconds=1))
    NotificationEndpoint.objects.filter(pk=endpoint.pk).update(url=receiver.url("/old"))
    message = message_for(endpoint, subject="after")
    run_until(lambda: refreshed(message).attempts == 1, clock=clock)
    last = receiver.requests()[-1]
    assert not last["verified"] and "No matching signature" in last["error"]


def test_two_deliveries_never_send_one_message_at_the_same_time(owner, receiver):
    """Two delivery tasks (two workers) take turns over 40 due messages while each send
    takes 0.2 s: the claims let each message go out once, never twice at once."""
    endpoint = webhook(owner, receiver, delay=0.2)
    messages = [message_for(endpoint, subject=f"s-{n}") for n in range(40)]
    first, second = NotificationDelivery(per_endpoint=8), NotificationDelivery(per_endpoint=8)
    deadline = time.monotonic() + 20
    while NotificationMessage.objects.filter(state=MessageState.PENDING).exists():
        assert time.monotonic() < deadline
        first(timezone.now())
        second(timezone.now())
    requests = receiver.requests()
    assert sorted(r["webhook_id"] for r in requests) == sorted(m.webhook_id for m in messages)
    assert not any(r["duplicate"] for r in requests)
    assert DeliveryAttempt.objects.count() == 40


def test_a_claim_that_outlives_its_lease_is_sent_again_and_the_late_answer_changes_nothing(owner, receiver):
    """A worker that hangs mid-send (or died: its claim is the same) leaves the message
    claimed; after the lease another worker sends it. When the first one's answer comes at
    last, its attempt is logged, but the message stays as the second one left it."""
    endpoint = webhook(owner, receiver)
    message = message_for(endpoint)
    release = threading.Event()

    def hanging_send(client, outgoing):
        release.wait(10)
        return transports.Answer(False, 500, error="HTTP 500")

    stuck = NotificationDelivery(send=hanging_send, lease=timedelta(seconds=30))
    stuck(timezone.now())
    assert stuck.in_flight == 1
    assert refreshed(message).claim_token is not None

    rescuer = NotificationDelivery()
    rescuer(timezone.now())
    assert receiver.requests() == []  # still claimed
    later = Clock()
    later.move_to(message.next_attempt_at + timedelta(seconds=1))
    run_until(lambda: refreshed(message).state == MessageState.DELIVERED, clock=later, delivery=rescuer)

    release.set()
    run_until(lambda: stuck.in_flight == 0, delivery=stuck)
    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED and message.attempts == 1
    assert sorted(a.status_code for a in attempts_of(message)) == [200, 500]


@pytest.mark.django_db(transaction=True)
def test_a_slow_receiver_never_delays_a_fast_one(owner, receiver):
    """One endpoint takes 30 s per request, another answers at once: with the slow one's
    messages in flight, each change reaches the fast one within a second."""
    slow = webhook(owner, receiver, path="/slow", delay=30)
    NotificationEndpoint.objects.filter(pk=slow.pk).update(events=["execution.completed"])
    fast = notification_endpoint_create(
        owner=owner, kind="webhook", url=receiver.url("/fast"), events=["execution.failed"]
    )
    receiver.route("/fast", fast.secret)
    for n in range(PER_ENDPOINT_IN_FLIGHT * 2):
        message_for(slow, subject=f"slow-{n}")
    delivery = NotificationDelivery()
    delivery(timezone.now())
    assert delivery.in_flight == PER_ENDPOINT_IN_FLIGHT  # the slow endpoint's limit, reached
    for execution in ExecutionFactory.create_batch(5, created_by=owner):
        execution_change_status(execution_id=execution.id, status="failed", channel=ChangeChannel.API)
        run_until(
            lambda e=execution: NotificationMessage.objects.filter(
                subject_id=str(e.id), state=MessageState.DELIVERED
            ).exists(),
            delivery=delivery,
            timeout=5,
        )
    changed_at = {
        str(subject): at.timestamp()
        for subject, at in ExecutionStatusChange.objects.values_list("execution_id", "created_at")
    }
    latencies = [entry["answered_at"] - changed_at[entry["subject"]] for entry in receiver.requests("/fast")]
    assert len(latencies) == 5 and max(latencies) < 1.0, latencies
    assert receiver.requests("/slow") == []  # none answered yet: all still sleeping


def test_an_email_endpoint_sends_a_plain_text_email(owner):
    endpoint = notification_endpoint_create(
        owner=owner, kind="email", emails=["ops@example.com", "dev@example.com"], events=EVENTS
    )
    message = message_for(
        endpoint,
        payload={
            "id": "e-1",
            "name": "nightly-report",
            "previous_status": "running",
            "current_status": "failed",
            "actor": None,
            "channel": "command",
            "links": {"execution": "http://127.0.0.1:8000/api/v1/executions/e-1"},
        },
    )
    run_until(lambda: refreshed(message).state == MessageState.DELIVERED)
    [email] = mail.outbox
    assert email.to == ["ops@example.com", "dev@example.com"]
    assert email.subject == (
        '[executions] Execution "nightly-report" failed (was running, by the system through command)'
    )
    assert "Execution: http://127.0.0.1:8000/api/v1/executions/e-1" in email.body
    [attempt] = attempts_of(message)
    assert attempt.succeeded and attempt.status_code is None


def test_a_slack_endpoint_posts_slacks_json(owner, monkeypatch):
    """The Slack transport's one outside call, http_post, replaced: what it would POST."""
    sent = []
    monkeypatch.setattr(
        transports,
        "http_post",
        lambda client, url, body, headers: sent.append((url, body)) or transports.Answer(True, 200),
    )
    endpoint = notification_endpoint_create(
        owner=owner, kind="slack", url="https://hooks.slack.example/services/T/B/X", events=EVENTS
    )
    message = message_for(
        endpoint,
        payload={
            "id": "e-1",
            "name": "nightly-report",
            "previous_status": "running",
            "current_status": "failed",
            "actor": "alice",
            "channel": "api",
            "links": {"execution": "http://127.0.0.1:8000/api/v1/executions/e-1"},
        },
    )
    run_until(lambda: refreshed(message).state == MessageState.DELIVERED)
    [(url, body)] = sent
    assert url == "https://hooks.slack.example/services/T/B/X"
    posted = json.loads(body)
    assert posted["text"].startswith('Execution "nightly-report" failed (was running, by alice through api)')
    assert "<http://127.0.0.1:8000/api/v1/executions/e-1|execution>" in posted["text"]
    assert posted["blocks"] == [{"type": "section", "text": {"type": "mrkdwn", "text": posted["text"]}}]


def test_an_endpoint_deleted_while_its_messages_are_in_flight_breaks_nothing(owner, receiver):
    """Its messages go with it; the answers that come back afterwards are dropped, and the
    other endpoint's, finished in the same batch, are recorded as usual."""
    doomed, kept = webhook(owner, receiver, path="/doomed"), webhook(owner, receiver, path="/kept")
    release = threading.Event()

    def send(client, outgoing):
        release.wait(10)
        return transports.Answer(True, 200)

    delivery = NotificationDelivery(send=send)
    message_for(doomed)
    kept_message = message_for(kept)
    delivery(timezone.now())
    assert delivery.in_flight == 2
    doomed.delete()
    release.set()
    run_until(lambda: delivery.in_flight == 0, delivery=delivery)
    assert refreshed(kept_message).state == MessageState.DELIVERED
    assert list(DeliveryAttempt.objects.values_list("message_id", flat=True)) == [kept_message.pk]
