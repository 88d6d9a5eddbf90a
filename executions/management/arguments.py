"""argparse types for the commands' arguments: bad input is a one-line error, not a traceback."""

import argparse

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from executions.durations import parse_duration
from executions.text import has_control_characters

# Bounds the commands share: a batch is one transaction, so it stays a size a database commits
# quickly; a limit above a billion is a typo.
MAX_BATCH_SIZE = 10_000
MAX_LIMIT = 1_000_000_000


def text_argument(value: str) -> str:
    """Text as the database can take it. A command line that is not UTF-8 reaches Python with
    surrogate escapes, which no database encodes; PostgreSQL refuses NUL."""
    if any("\ud800" <= char <= "\udfff" for char in value):
        raise argparse.ArgumentTypeError("not valid UTF-8 text")
    if "\x00" in value:
        raise argparse.ArgumentTypeError("may not contain NUL")
    return value


def whole_number(maximum: int):
    """A type for a whole number from 1 to `maximum`, in ASCII digits."""

    def parse(value: str) -> int:
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= maximum:
            raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {maximum}")
        return int(value)

    return parse


def add_batch_arguments(parser, verb: str) -> None:
    """--batch-size and --limit, as the bulk commands (cleanup, purge) all take them; `verb`
    says what the command does to an execution ("Change", "Delete")."""
    parser.add_argument(
        "--batch-size",
        type=whole_number(MAX_BATCH_SIZE),
        default=None,
        help=f"Executions per transaction, at most {MAX_BATCH_SIZE} "
        "(default: the EXECUTIONS_BULK_BATCH_SIZE setting).",
    )
    parser.add_argument(
        "--limit", type=whole_number(MAX_LIMIT), help=f"{verb} at most this many executions in this run."
    )


EXPIRES_HELP = "Refuse the key after this long: 90d, 12w, 6h... (default: never)."


def duration_argument(text: str):
    """A duration (90s, 30m, 6h, 2d, 12w), in ASCII digits."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def user_named(username: str):
    """The user of that username, or a CommandError saying there is none."""
    User = get_user_model()
    try:
        return User.objects.get_by_natural_key(username)
    except User.DoesNotExist:
        raise CommandError(f"No user named {username!r}") from None


def checked_name(name: str, max_length: int) -> str:
    """A --name as the API would take it (1 to `max_length` characters, no control
    characters), so that what one channel refuses the other does too."""
    if not 1 <= len(name) <= max_length:
        raise CommandError(f"--name must be 1 to {max_length} characters")
    if has_control_characters(name):
        raise CommandError("--name may not contain control characters")
    return name
