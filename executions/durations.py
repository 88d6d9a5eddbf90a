"""Durations as operators write them: "90s", "30m", "6h", "2d", "1w"."""

import re
from datetime import timedelta

# ASCII digits only: \d would also take "５m" (a full-width 5) and other scripts' digits.
_DURATION = re.compile(r"(?P<amount>[0-9]{1,7})(?P<unit>[smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# Past this a duration is surely a typo.
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    """ "30m" -> timedelta(minutes=30). Raises ValueError with a message fit for a user."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(
            f"{text!r} is not a duration: write a whole number and a unit, s, m, h, d or w (e.g. 30m, 6h, 2d)"
        )
    duration = timedelta(**{_UNITS[match["unit"]]: int(match["amount"])})
    if not timedelta(0) < duration <= MAX_DURATION:
        raise ValueError(f"{text!r} is out of range: more than 0 and at most {MAX_DURATION.days} days")
    return duration


def format_duration(duration: timedelta) -> str:
    """timedelta(hours=6) -> "6h": the largest unit that divides it, as parse_duration reads it."""
    seconds = int(duration.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
