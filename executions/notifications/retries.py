"""When to try a message again: Svix's schedule with jitter, and a receiver's Retry-After."""

import random
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

# The delay before each attempt: the first at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h
# and 10 h after the one before (Svix's schedule): 8 attempts over about 28 hours.
RETRY_SCHEDULE = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_SCHEDULE)
# Each delay is moved by up to this fraction either way, so that the retries of many
# messages that failed together (a receiver's outage) do not all come back at one instant.
JITTER = 0.1
# A receiver's Retry-After is honoured within these bounds: at least a second (a 0 would
# spend the attempts in a burst), at most the schedule's longest step.
RETRY_AFTER_MIN = timedelta(seconds=1)
RETRY_AFTER_MAX = max(RETRY_SCHEDULE)
# Only these answers carry a Retry-After worth honouring (RFC 9110, 10.2.3).
RETRY_AFTER_STATUSES = frozenset({429, 503})


def delay_before_attempt(attempt: int, rng: random.Random | None = None) -> timedelta | None:
    """The delay before attempt number `attempt` (1 is the first), after the one before,
    with jitter; None once the schedule is spent."""
    if attempt > MAX_ATTEMPTS:
        return None
    delay = RETRY_SCHEDULE[attempt - 1]
    return delay * (1 + (rng or random).uniform(-JITTER, JITTER))


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A Retry-After header (seconds, or an HTTP date) as a delay from `now`, within
    [RETRY_AFTER_MIN, RETRY_AFTER_MAX]; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        delay = timedelta(seconds=int(value[:9]))  # nine digits: 31 years, no overflow
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        delay = when - now
    return min(max(delay, RETRY_AFTER_MIN), RETRY_AFTER_MAX)


def next_attempt_after_failure(
    *,
    attempts_made: int,
    now: datetime,
    status_code: int | None = None,
    retry_after: str | None = None,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again after the `attempts_made`-th attempt failed; None: give up.

    A 429 or 503 with a readable Retry-After is tried again when the receiver asks (within
    the bounds above) instead of at the schedule's next step; it still counts as an attempt,
    so a receiver that always asks to wait cannot keep a message forever."""
    delay = delay_before_attempt(attempts_made + 1, rng)
    if delay is None:
        return None
    if status_code in RETRY_AFTER_STATUSES:
        asked = parse_retry_after(retry_after, now)
        if asked is not None:
            delay = asked
    return now + delay
