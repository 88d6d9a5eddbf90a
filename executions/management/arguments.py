"""argparse types for the commands' arguments: bad input is a one-line error, not a traceback."""

import argparse

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
