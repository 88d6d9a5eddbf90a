"""The retry schedule (Svix's, with jitter) and Retry-After, with an injected clock and
random source."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from executions.notifications.retries import (
    JITTER,
    MAX_ATTEMPTS,
    RETRY_SCHEDULE,
    delay_before_attempt,
    next_attempt_after_failure,
    parse_retry_after,
)

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
SVIX = [0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600]


def test_the_schedule_is_svixs_eight_attempts():
    assert [delay.total_seconds() for delay in RETRY_SCHEDULE] == SVIX
    assert MAX_ATTEMPTS == 8


@pytest.mark.parametrize("attempt", range(1, 9))
def test_each_delay_is_within_its_jitter(attempt):
    rng = random.Random(attempt)
    delays = [delay_before_attempt(attempt, rng).total_seconds() for _ in range(200)]
    planned = SVIX[attempt - 1]
    assert all(planned * (1 - JITTER) <= delay <= planned * (1 + JITTER) for delay in delays)
    if planned:
        assert len(set(delays)) > 150  # spread, not one instant for every message


def test_after_the_eighth_failure_it_gives_up():
    assert next_attempt_after_failure(attempts_made=7, now=NOW) is not None
    assert next_attempt_after_failure(attempts_made=8, now=NOW) is None
    assert next_attempt_after_failure(attempts_made=8, now=NOW, status_code=503, retry_after="1") is None


def test_a_failure_is_tried_again_at_the_next_step():
    retry_at = next_attempt_after_failure(attempts_made=1, now=NOW, status_code=500)
    assert timedelta(seconds=4.5) <= retry_at - NOW <= timedelta(seconds=5.5)
    retry_at = next_attempt_after_failure(attempts_made=3, now=NOW, status_code=None)
    assert timedelta(minutes=27) <= retry_at - NOW <= timedelta(minutes=33)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_on_429_and_503(status):
    assert next_attempt_after_failure(
        attempts_made=1, now=NOW, status_code=status, retry_after="120"
    ) == NOW + (timedelta(seconds=120))
    date = "Sat, 05 Dec 2026 10:30:00 GMT"
    assert next_attempt_after_failure(
        attempts_made=2, now=NOW, status_code=status, retry_after=date
    ) == NOW + timedelta(minutes=30)


def test_retry_after_is_ignored_on_other_statuses():
    retry_at = next_attempt_after_failure(attempts_made=1, now=NOW, status_code=500, retry_after="3600")
    assert retry_at - NOW < timedelta(seconds=6)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0", timedelta(seconds=1)),  # at least a second: a 0 would spend the attempts at once
        ("7", timedelta(seconds=7)),
        (" 7 ", timedelta(seconds=7)),
        ("999999999999999999999", timedelta(hours=10)),  # at most the schedule's longest step
        ("Sat, 05 Dec 2026 09:00:00 GMT", timedelta(seconds=1)),  # a date in the past
        ("Sun, 06 Dec 2026 10:00:00 GMT", timedelta(hours=10)),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("５", None),  # a full-width digit
        ("", None),
        (None, None),
    ],
)
def test_retry_after_values(header, expected):
    assert parse_retry_after(header, NOW) == expected
