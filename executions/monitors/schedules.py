"""Schedules: when a monitor's job is due next.

A schedule is an interval ("every 90s", "every 1h": the next run is due that long after the
last one started) or a 5-field cron line ("30 2 * * *") read in the monitor's time zone by
cronsim (docs/dependencies.md says why cronsim rather than croniter).

Time zones with daylight saving time follow Debian's cron, as cronsim implements it:
- a moment that does not exist (02:30 on a spring-forward day in Europe/Berlin or
  America/New_York) is due once, at the first valid instant after the gap (03:00);
- a moment that happens twice (01:30 in New York, 02:30 in Berlin on the fall-back day) is
  due once, at its first occurrence (still on summer time);
- a line whose hour field is `*` (e.g. `*/30 * * * *`) is due at every moment that happens,
  also in the repeated hour: it runs hourly by the clock on the wall, which runs twice.
tests/test_monitor_schedules.py checks each of these for both zones on both transition days.
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

from ..durations import parse_duration

MAX_SCHEDULE_LENGTH = 100
MAX_TIMEZONE_LENGTH = 64
# A run that starts this much (or the grace, if smaller) before its cron moment counts for
# that moment: the clocks of the hosts that run cron drift. Cron moments are at least a
# minute apart, so one start never counts for two of them.
EARLY_START_TOLERANCE = timedelta(seconds=30)

_INTERVAL = re.compile(r"every (?P<duration>\S+)")


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; the message is fit for a user."""


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: `interval` for "every ...", else `cron` (a 5-field line)."""

    text: str
    interval: timedelta | None = None
    cron: str | None = None

    def next_due(self, after: datetime, timezone: str) -> datetime:
        """The first moment the job is due strictly after `after` (aware), as an aware
        datetime in `timezone`. Raises ScheduleError when the cron line never matches again
        (cronsim gives up after 50 years without a match)."""
        if self.interval is not None:
            return after + self.interval
        zone = ZoneInfo(timezone)
        try:
            return next(CronSim(self.cron, after.astimezone(zone)))
        except StopIteration:
            raise ScheduleError(f"{self.text!r} is never due again") from None

    def next_due_after_start(self, started_at: datetime, timezone: str, grace: timedelta) -> datetime:
        """When the run after one that started at `started_at` is due: an interval after it,
        or the next cron moment after it (a start up to EARLY_START_TOLERANCE, or the grace,
        before a moment counts for that moment)."""
        if self.interval is not None:
            return started_at + self.interval
        return self.next_due(started_at + min(grace, EARLY_START_TOLERANCE), timezone)


def parse_schedule(text: str) -> Schedule:
    """ "every 90s", "every 1h" or a 5-field cron line. Raises ScheduleError."""
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError("A schedule is required: 'every 90s', 'every 1h', or a 5-field cron line")
    if len(text) > MAX_SCHEDULE_LENGTH:
        raise ScheduleError(f"A schedule has at most {MAX_SCHEDULE_LENGTH} characters")
    if not text.isascii() or not text.isprintable():
        raise ScheduleError("A schedule is printable ASCII text")
    text = " ".join(text.split())
    interval = _INTERVAL.fullmatch(text)
    if interval:
        try:
            return Schedule(text, interval=parse_duration(interval["duration"]))
        except ValueError as error:
            raise ScheduleError(str(error)) from None
    if len(text.split(" ")) != 5:
        raise ScheduleError(
            f"{text!r} is not a schedule: write 'every 90s', 'every 1h' (s, m, h, d or w), "
            "or a cron line of 5 fields: minute hour day-of-month month day-of-week"
        )
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as error:
        raise ScheduleError(f"{text!r} is not a valid cron line: {error}") from None
    return Schedule(text, cron=text)


def check_timezone(name: str) -> str:
    """An IANA time zone name that this machine knows ("Europe/Berlin", "UTC"). Raises
    ScheduleError. Only names from the database's list: ZoneInfo would also open files
    given a path-like key."""
    if not isinstance(name, str) or len(name) > MAX_TIMEZONE_LENGTH or name not in _known_timezones():
        raise ScheduleError(f"{name!r} is not an IANA time zone name (e.g. 'UTC', 'Europe/Berlin')")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{name!r} is not an IANA time zone name") from None
    return name


_TIMEZONES: frozenset[str] | None = None


def _known_timezones() -> frozenset[str]:
    global _TIMEZONES
    if _TIMEZONES is None:
        _TIMEZONES = frozenset(available_timezones()) | {"UTC"}
    return _TIMEZONES
