"""Schedule arithmetic, daylight saving time included: fast, with the clock given as an
argument (no database, no sleeping)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from executions.monitors.schedules import ScheduleError, check_timezone, parse_schedule

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def local(zone: str, text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def due_moments(schedule: str, zone: str, start: datetime, count: int) -> list[datetime]:
    parsed, moments, after = parse_schedule(schedule), [], start
    for _ in range(count):
        after = parsed.next_due(after, zone)
        moments.append(after)
    return moments


def as_utc(moments: list[datetime]) -> list[str]:
    return [moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for moment in moments]


# --- Spring forward: the moment does not exist, so the job runs once, right after the gap --


@pytest.mark.parametrize(
    ("zone", "day_before", "expected_utc"),
    [
        # Berlin: 02:00 CET becomes 03:00 CEST on 2026-03-29; the job runs at 03:00 CEST.
        (BERLIN, "2026-03-28T12:00", ["2026-03-29 01:00", "2026-03-30 00:30"]),
        # New York: 02:00 EST becomes 03:00 EDT on 2026-03-08; the job runs at 03:00 EDT.
        (NEW_YORK, "2026-03-07T12:00", ["2026-03-08 07:00", "2026-03-09 06:30"]),
    ],
)
def test_a_0230_job_on_the_spring_forward_day_runs_once_at_the_end_of_the_gap(zone, day_before, expected_utc):
    moments = due_moments("30 2 * * *", zone, local(zone, day_before), 2)

    assert as_utc(moments) == expected_utc
    assert moments[0].astimezone(ZoneInfo(zone)).strftime("%H:%M") == "03:00"


# --- Fall back: the moment happens twice, the job runs once, at the first ---------------


@pytest.mark.parametrize(
    ("zone", "schedule", "day_before", "expected_utc"),
    [
        # Berlin: 03:00 CEST becomes 02:00 CET on 2026-10-25: 02:30 happens twice.
        (BERLIN, "30 2 * * *", "2026-10-24T12:00", ["2026-10-25 00:30", "2026-10-26 01:30"]),
        # New York: 02:00 EDT becomes 01:00 EST on 2026-11-01: 01:30 happens twice.
        (NEW_YORK, "30 1 * * *", "2026-10-31T12:00", ["2026-11-01 05:30", "2026-11-02 06:30"]),
    ],
)
def test_a_job_in_the_repeated_hour_of_the_fall_back_day_runs_once(zone, schedule, day_before, expected_utc):
    assert as_utc(due_moments(schedule, zone, local(zone, day_before), 2)) == expected_utc


@pytest.mark.parametrize(
    ("zone", "start", "expected_utc"),
    [
        (
            BERLIN,
            "2026-10-25T01:50",
            ["2026-10-25 00:00", "2026-10-25 00:30", "2026-10-25 01:00", "2026-10-25 01:30"],
        ),
        (
            NEW_YORK,
            "2026-11-01T00:50",
            ["2026-11-01 05:00", "2026-11-01 05:30", "2026-11-01 06:00", "2026-11-01 06:30"],
        ),
    ],
)
def test_a_job_with_any_hour_runs_in_both_passes_of_the_repeated_hour(zone, start, expected_utc):
    # Every 30 minutes by the wall clock: the hour that happens twice has four runs.
    assert as_utc(due_moments("*/30 * * * *", zone, local(zone, start), 4)) == expected_utc


@pytest.mark.parametrize(
    ("zone", "start", "expected_utc"),
    [
        (BERLIN, "2026-03-29T01:50", ["2026-03-29 01:00", "2026-03-29 01:30", "2026-03-29 02:00"]),
        (NEW_YORK, "2026-03-08T01:50", ["2026-03-08 07:00", "2026-03-08 07:30", "2026-03-08 08:00"]),
    ],
)
def test_a_job_with_any_hour_skips_the_hour_that_does_not_exist(zone, start, expected_utc):
    assert as_utc(due_moments("*/30 * * * *", zone, local(zone, start), 3)) == expected_utc


def test_the_same_line_is_read_in_each_monitors_own_time_zone():
    after = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # 14:00 in Berlin, 08:00 in New York

    assert as_utc(due_moments("0 9 * * *", "UTC", after, 1)) == ["2026-06-02 09:00"]
    assert as_utc(due_moments("0 9 * * *", BERLIN, after, 1)) == ["2026-06-02 07:00"]
    assert as_utc(due_moments("0 9 * * *", NEW_YORK, after, 1)) == ["2026-06-01 13:00"]


# --- Intervals -------------------------------------------------------------------------


def test_an_interval_is_due_that_long_after_the_last_start_whatever_the_zone():
    started = datetime(2026, 3, 29, 0, 59, 30, tzinfo=UTC)  # 30 s before Berlin's gap
    schedule = parse_schedule("every 90s")

    assert schedule.next_due_after_start(started, BERLIN, timedelta(seconds=10)) == started + timedelta(
        seconds=90
    )
    assert parse_schedule("every 1h").next_due(started, NEW_YORK) == started + timedelta(hours=1)


# --- Which moment a start counts for ----------------------------------------------------


def test_a_start_a_little_early_counts_for_the_moment_it_was_meant_for():
    schedule = parse_schedule("30 2 * * *")
    grace = timedelta(minutes=5)
    early = datetime(2026, 6, 1, 2, 29, 50, tzinfo=UTC)
    late = datetime(2026, 6, 1, 2, 34, tzinfo=UTC)
    unscheduled = datetime(2026, 6, 1, 14, 0, tzinfo=UTC)

    tomorrow = datetime(2026, 6, 2, 2, 30, tzinfo=UTC)
    assert schedule.next_due_after_start(early, "UTC", grace) == tomorrow
    assert schedule.next_due_after_start(late, "UTC", grace) == tomorrow
    assert schedule.next_due_after_start(unscheduled, "UTC", grace) == tomorrow


def test_a_start_well_before_its_moment_does_not_count_for_it():
    schedule = parse_schedule("30 2 * * *")
    started = datetime(2026, 6, 1, 2, 25, tzinfo=UTC)

    assert schedule.next_due_after_start(started, "UTC", timedelta(hours=1)) == datetime(
        2026, 6, 1, 2, 30, tzinfo=UTC
    )


# --- Parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["every 90s", "every 1h", "every   2d", "*/5 * * * *", "30 2 * * 1-5", "0 0 L * *", "0 9 * * MON"]
)
def test_schedules_that_parse(text):
    assert parse_schedule(text).text == " ".join(text.split())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "every",
        "every 0s",
        "every 90",
        "every 1y",
        "every -5m",
        "every ５m",
        "@daily",
        "* * * *",
        "* * * * * *",  # seconds: cronsim takes 6 fields, monitors take cron's 5
        "61 * * * *",
        "0 0 30 2 *",  # 30 February never happens
        "*/0 * * * *",
        "0 0 * * *\n",
        "0\x00 * * * *",
        "x" * 101,
    ],
)
def test_schedules_that_do_not_parse(text):
    with pytest.raises(ScheduleError):
        parse_schedule(text)


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_known_time_zones(name):
    assert check_timezone(name) == name


@pytest.mark.parametrize(
    "name", ["", "Mars/Olympus", "../../etc/passwd", "/etc/localtime", "europe/berlin", "UTC\x00"]
)
def test_unknown_time_zones(name):
    with pytest.raises(ScheduleError):
        check_timezone(name)
