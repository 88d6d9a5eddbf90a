"""Delivery of the outbox: claim what is due, send it from a pool of threads, record every
attempt, and schedule the retries.

- **Claims.** A due message is claimed with a conditional UPDATE that moves its
  `next_attempt_at` past a lease (only if it is still pending and still due): of several
  workers, one wins each message, and a worker killed mid-send leaves a claim that simply
  falls due again when the lease ends, so the message is sent again (receivers
  de-duplicate on `webhook-id`).
- **Nothing blocks the loop.** Sends run in daemon threads with a pooled HTTP client; the
  worker's loop only claims, hands over and records. Each endpoint has at most
  PER_ENDPOINT_IN_FLIGHT messages in flight (FAILING_ENDPOINT_IN_FLIGHT while it fails), so
  one slow or dead receiver holds a few threads and never the others' turn.
- **Order.** A message is claimable only when no earlier message of the same endpoint and
  subject is still pending: the messages about one execution reach an endpoint in the
  order the changes were made (a retry holds back the ones after it).
- **Outcome.** Only 2xx is a success. A failure is tried again on the retry schedule
  (retries.py, Retry-After honoured on 429 and 503) until it is spent; 410 Gone disables the
  endpoint; an endpoint failing for ENDPOINT_FAILING_DISABLES_AFTER is disabled and its
  owner told.
"""

import logging
import queue
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Exists, F, OuterRef
from django.urls import NoReverseMatch, reverse

from ..models import (
    DeliveryAttempt,
    DisabledReason,
    MessageState,
    NotificationEndpoint,
    NotificationMessage,
)
from ..statements import write_transaction
from . import transports
from .events import public_url
from .retries import next_attempt_after_failure
from .transports import Answer, Outgoing

logger = logging.getLogger("executions.notifications")

# Threads sending at once, per worker process.
CONCURRENCY = 64
# Messages one endpoint may have in flight at once, per worker: half the threads, so that a
# slow receiver leaves the other half to everyone else; far fewer while it fails (a receiver
# that times out holds a thread for 15 s per message).
PER_ENDPOINT_IN_FLIGHT = CONCURRENCY // 2
FAILING_ENDPOINT_IN_FLIGHT = 2
# An endpoint whose every attempt failed for this long is disabled (its owner is told).
ENDPOINT_FAILING_DISABLES_AFTER = timedelta(days=5)
# Finished sends are recorded in batches of up to RECORD_BATCH; the delivery waits at most
# WAIT_FOR_RESULTS_SECONDS for a batch to fill before it records what it has and gives the loop
# back. It looks for due messages every POLL_INTERVAL_SECONDS when it found none.
RECORD_BATCH = 16
WAIT_FOR_RESULTS_SECONDS = 0.02
POLL_INTERVAL_SECONDS = 0.25


# Set when this process put new messages in the outbox (the fan-out): the delivery looks for
# due messages at its next call rather than at its next poll.
_new_messages = threading.Event()


def look_for_new_messages() -> None:
    _new_messages.set()


_CLAIMED_FIELDS = (
    "pk",
    "webhook_id",
    "event_type",
    "occurred_at",
    "payload",
    "attempts",
    "endpoint_id",
    "endpoint__kind",
    "endpoint__url",
    "endpoint__emails",
    "endpoint__secret",
    "endpoint__previous_secret",
    "endpoint__previous_secret_expires_at",
    "endpoint__failing_since",
)


@dataclass(frozen=True)
class _Claimed:
    outgoing: Outgoing
    claim_token: uuid.UUID
    attempts_before: int
    # The loop's time when it was handed to a thread, where its send starts at once (there
    # is a free thread for each claim): the attempt's time in the log.
    claimed_at: datetime
    # Whether the endpoint was failing when claimed: a success then ends its failing streak.
    endpoint_was_failing: bool


def earliest_pending_of_its_subject():
    """Messages with no earlier pending message of the same endpoint and subject."""
    earlier = NotificationMessage.objects.filter(
        endpoint=OuterRef("endpoint"),
        subject_id=OuterRef("subject_id"),
        state=MessageState.PENDING,
        pk__lt=OuterRef("pk"),
    )
    return NotificationMessage.objects.filter(~Exists(earlier))


def secrets_in_use(
    secret: str, previous_secret: str, previous_secret_expires_at: datetime | None, now: datetime
) -> tuple[str, ...]:
    """The secrets a message is signed with: an endpoint's current one, and during a rotation
    the one it replaced, until that one expires."""
    if previous_secret and previous_secret_expires_at and previous_secret_expires_at > now:
        return (secret, previous_secret)
    return (secret,)


class NotificationDelivery:
    """The worker task that delivers the outbox (see the module's docstring). One instance
    per worker process; `send` is the transport dispatcher (tests replace it)."""

    __name__ = "notifications_deliver"

    def __init__(
        self,
        *,
        concurrency: int = CONCURRENCY,
        per_endpoint: int = PER_ENDPOINT_IN_FLIGHT,
        lease: timedelta | None = None,
        send=transports.send,
    ):
        self.concurrency = concurrency
        self.per_endpoint = per_endpoint
        self.lease = lease
        self._send = send
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._finished = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client = None
        self._in_flight = 0
        self._in_flight_per_endpoint: Counter = Counter()
        self._failing_endpoints: set = set()
        self._next_look: datetime | None = None
        self._turn = 0

    # --- The task ---------------------------------------------------------------------

    def __call__(self, now: datetime) -> float:
        if self._in_flight:
            # Record in batches (a few statements per batch, not per message): wait, briefly,
            # for several sends to finish. Never long: a slow receiver's send may take 15 s.
            self._wait_for_results(RECORD_BATCH, WAIT_FOR_RESULTS_SECONDS)
        finished = self._take_finished()
        if finished:
            self._next_look = now  # a finished message may have let the next of its subject go
        if _new_messages.is_set():
            _new_messages.clear()
            self._next_look = now
        free = self.concurrency - self._in_flight
        looking = free > 0 and (self._next_look is None or now >= self._next_look)
        gone = {claimed.outgoing.endpoint_id for claimed, answer in finished if answer.status_code == 410}
        chosen = self._choose(now, free, gone) if looking else []
        token = uuid.uuid4()
        disabled = []
        if finished or chosen:
            # One transaction for both: the outcome of what finished, and the next claims.
            with write_transaction():
                if finished:
                    disabled = _record_attempts(finished, now)
                if chosen:
                    # The compare-and-set: only if still pending and due (no one else's claim).
                    NotificationMessage.objects.filter(
                        pk__in=chosen, state=MessageState.PENDING, next_attempt_at__lte=now
                    ).update(next_attempt_at=now + self._lease(), claim_token=token)
        claimed = self._send_claimed(chosen, token, now) if chosen else 0
        if looking:
            # Claimed as many as there was room for: more may be due. Else nothing is, until
            # a send ends (which frees the next message of its subject) or new messages come.
            self._next_look = now if claimed == free else now + timedelta(seconds=POLL_INTERVAL_SECONDS)
        for endpoint_id in disabled:
            tell_owner_endpoint_disabled(endpoint_id)
        if self._in_flight or not self._done.empty():
            return 0
        return max(0.0, (self._next_look - now).total_seconds())

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _lease(self) -> timedelta:
        return self.lease or settings.NOTIFICATIONS_CLAIM_LEASE

    def _wait_for_results(self, count: int, timeout: float) -> None:
        """Return once `count` finished sends (or all in flight) wait to be recorded, or
        after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self._finished.clear()
            if self._done.qsize() >= min(count, self._in_flight):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._finished.wait(remaining):
                return

    def _take_finished(self) -> list[tuple[_Claimed, Answer]]:
        """The sends that finished since the last call, no longer counted in flight."""
        finished = []
        while not self._done.empty():
            finished.append(self._done.get())
        for claimed, answer in finished:
            self._in_flight -= 1
            endpoint_id = claimed.outgoing.endpoint_id
            self._in_flight_per_endpoint[endpoint_id] -= 1
            if self._in_flight_per_endpoint[endpoint_id] <= 0:
                del self._in_flight_per_endpoint[endpoint_id]
            if answer.succeeded:
                self._failing_endpoints.discard(endpoint_id)
            else:
                self._failing_endpoints.add(endpoint_id)
        return finished

    # --- Claiming ---------------------------------------------------------------------

    def _limit_for(self, endpoint_id) -> int:
        return FAILING_ENDPOINT_IN_FLIGHT if endpoint_id in self._failing_endpoints else self.per_endpoint

    def _choose(self, now: datetime, free: int, excluded: set) -> list[int]:
        """Up to `free` due messages to claim, within each endpoint's limit (reads only).

        By endpoint: first which enabled endpoints below their limit have a due message (an
        index probe each), then each one's earliest due messages. A question over every due
        message would have to pass over a full endpoint's whole backlog (a dead receiver's
        thousands) to find the others'."""
        full = [e for e, count in self._in_flight_per_endpoint.items() if count >= self._limit_for(e)]
        due = NotificationMessage.objects.filter(
            endpoint=OuterRef("pk"), state=MessageState.PENDING, next_attempt_at__lte=now
        )
        ready = list(
            NotificationEndpoint.objects.filter(Exists(due), enabled=True)
            .exclude(pk__in=[*full, *excluded])
            .values_list("pk", flat=True)
        )
        # Endpoints take turns at the head of the line, so that none always gets the last room.
        self._turn += 1
        if ready:
            shift = self._turn % len(ready)
            ready = ready[shift:] + ready[:shift]
        chosen = []
        for endpoint_id in ready:
            room = min(
                self._limit_for(endpoint_id) - self._in_flight_per_endpoint[endpoint_id], free - len(chosen)
            )
            if room <= 0:
                break
            chosen += (
                earliest_pending_of_its_subject()
                .filter(endpoint=endpoint_id, state=MessageState.PENDING, next_attempt_at__lte=now)
                .order_by("next_attempt_at")
                .values_list("pk", flat=True)[:room]
            )
        return chosen

    def _send_claimed(self, chosen: list[int], token: uuid.UUID, now: datetime) -> int:
        """Hand the messages of `chosen` that this claim won to the sending threads; how many.
        (Rows as dicts, in one query with their endpoints': no model instances to build.)"""
        count = 0
        for row in NotificationMessage.objects.filter(pk__in=chosen, claim_token=token).values(
            *_CLAIMED_FIELDS
        ):
            self._start(self._claimed(row, token, now))
            count += 1
        return count

    def _claimed(self, row: dict, token: uuid.UUID, now: datetime) -> _Claimed:
        failing = row["endpoint__failing_since"] is not None
        if failing:
            self._failing_endpoints.add(row["endpoint_id"])
        return _Claimed(
            Outgoing(
                message_id=row["pk"],
                webhook_id=row["webhook_id"],
                event_type=row["event_type"],
                occurred_at=row["occurred_at"],
                payload=row["payload"],
                endpoint_id=row["endpoint_id"],
                kind=row["endpoint__kind"],
                url=row["endpoint__url"],
                emails=tuple(row["endpoint__emails"]),
                secrets=secrets_in_use(
                    row["endpoint__secret"],
                    row["endpoint__previous_secret"],
                    row["endpoint__previous_secret_expires_at"],
                    now,
                ),
            ),
            token,
            row["attempts"],
            now,
            failing,
        )

    # --- Sending (threads) ------------------------------------------------------------

    def _start(self, claimed: _Claimed) -> None:
        if not self._threads:
            self._client = transports.new_http_client(self.concurrency)
            for number in range(self.concurrency):
                # Daemon threads: a worker that stops does not wait for a receiver's answer
                # (what was in flight is sent again once its claim's lease ends).
                thread = threading.Thread(target=self._send_loop, name=f"notify-{number}", daemon=True)
                thread.start()
                self._threads.append(thread)
        self._in_flight += 1
        self._in_flight_per_endpoint[claimed.outgoing.endpoint_id] += 1
        self._jobs.put(claimed)

    def _send_loop(self) -> None:
        while True:
            claimed = self._jobs.get()
            try:
                answer = self._send(self._client, claimed.outgoing)
            except Exception as failure:  # a bug in a transport must not lose the message
                logger.exception("Sending %s failed", claimed.outgoing.webhook_id)
                answer = Answer(False, error=f"{type(failure).__name__}: {failure}"[:500])
            self._done.put((claimed, answer))
            self._finished.set()


def _record_attempts(finished: list[tuple[_Claimed, Answer]], now: datetime) -> list:
    """Record each attempt and its message's outcome, and the endpoints' state (inside the
    caller's write transaction); the ids of the endpoints this disabled for failing too long."""
    attempts, delivered_by_token, failures = [], {}, []
    for claimed, answer in finished:
        attempts.append(
            DeliveryAttempt(
                message_id=claimed.outgoing.message_id,
                attempted_at=claimed.claimed_at,
                status_code=answer.status_code,
                latency_ms=answer.latency_ms,
                succeeded=answer.succeeded,
                error=answer.error[:500],
                response_body=answer.body,
            )
        )
        if answer.succeeded:
            delivered_by_token.setdefault(claimed.claim_token, []).append(claimed.outgoing.message_id)
        else:
            failures.append((claimed, answer))
    succeeded_endpoints = {c.outgoing.endpoint_id for c, a in finished if a.succeeded}
    # Only an endpoint known to be failing has a streak to end: no statement for the others.
    recovered_endpoints = {
        c.outgoing.endpoint_id for c, a in finished if a.succeeded and c.endpoint_was_failing
    }
    failed_endpoints = {c.outgoing.endpoint_id for c, a in failures} - succeeded_endpoints
    gone_endpoints = {c.outgoing.endpoint_id for c, a in failures if a.status_code == 410}
    disabled = []
    # An endpoint deleted while its messages were in flight took them along: their attempts
    # have nothing left to belong to.
    still_there = set(
        NotificationMessage.objects.filter(pk__in=[a.message_id for a in attempts]).values_list(
            "pk", flat=True
        )
    )
    DeliveryAttempt.objects.bulk_create([a for a in attempts if a.message_id in still_there])
    for token, ids in delivered_by_token.items():
        # Only while the claim is still this one's: a claim that outlived its lease may
        # have been taken by another worker, whose outcome is the one that counts.
        NotificationMessage.objects.filter(pk__in=ids, claim_token=token).update(
            state=MessageState.DELIVERED, attempts=F("attempts") + 1, finished_at=now, claim_token=None
        )
    for claimed, answer in failures:
        _record_failure(claimed, answer, now, gone=claimed.outgoing.endpoint_id in gone_endpoints)
    if recovered_endpoints:
        NotificationEndpoint.objects.filter(pk__in=recovered_endpoints, failing_since__isnull=False).update(
            failing_since=None
        )
    if failed_endpoints:
        NotificationEndpoint.objects.filter(pk__in=failed_endpoints, failing_since__isnull=True).update(
            failing_since=now
        )
        for endpoint_id in failed_endpoints:
            if (
                NotificationEndpoint.objects.filter(
                    pk=endpoint_id, enabled=True, failing_since__lte=now - ENDPOINT_FAILING_DISABLES_AFTER
                ).update(
                    enabled=False, disabled_reason=DisabledReason.FAILING, disabled_at=now, updated_at=now
                )
                == 1
            ):
                disabled.append(endpoint_id)
    if gone_endpoints:
        NotificationEndpoint.objects.filter(pk__in=gone_endpoints, enabled=True).update(
            enabled=False, disabled_reason=DisabledReason.GONE, disabled_at=now, updated_at=now
        )
        for endpoint_id in gone_endpoints:
            logger.warning("Notification endpoint %s answered 410 Gone: disabled", endpoint_id)
    return disabled


def _record_failure(claimed: _Claimed, answer: Answer, now: datetime, *, gone: bool) -> None:
    attempts_made = claimed.attempts_before + 1
    retry_at = (
        None
        if gone
        else next_attempt_after_failure(
            attempts_made=attempts_made,
            now=now,
            status_code=answer.status_code,
            retry_after=answer.retry_after,
        )
    )
    changes = {"attempts": F("attempts") + 1, "claim_token": None}
    if retry_at is None:
        changes.update(state=MessageState.FAILED, finished_at=now)
    else:
        changes.update(next_attempt_at=retry_at)
    NotificationMessage.objects.filter(
        pk=claimed.outgoing.message_id, claim_token=claimed.claim_token
    ).update(**changes)


def tell_owner_endpoint_disabled(endpoint_id) -> None:
    """Tell the owner of an endpoint that failing disabled it: always in the log (and in
    the admin, by its state), and by email when email is configured and the owner has an
    address (Django's email settings: README). In a thread of its own: an SMTP server's
    delay must not hold the loop."""
    endpoint = NotificationEndpoint.objects.select_related("owner").get(pk=endpoint_id)
    logger.warning(
        "Notification endpoint %s (%s) of %s disabled: every delivery failed since %s",
        endpoint.pk,
        endpoint,
        endpoint.owner.get_username(),
        endpoint.failing_since,
    )
    if not endpoint.owner.email:
        return
    subject = "[executions] A notification endpoint was disabled"
    text = (
        f"Your notification endpoint {endpoint} was disabled on {endpoint.disabled_at:%Y-%m-%d %H:%M} UTC:\n"
        f"every delivery to it failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC.\n\n"
        "Its failed messages can be sent again once it works: enable it, then replay them.\n"
    )
    try:
        admin_path = reverse("admin:executions_notificationendpoint_change", args=[endpoint.pk])
        text += f"Admin: {public_url(admin_path)}\n"
    except NoReverseMatch:
        pass  # no admin page for endpoints in this installation

    def send():
        try:
            send_mail(subject, text, None, [endpoint.owner.email])
        except Exception:
            logger.exception(
                "Could not email %s that endpoint %s was disabled", endpoint.owner.email, endpoint.pk
            )

    threading.Thread(target=send, name="notify-owner", daemon=True).start()
