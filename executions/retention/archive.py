"""The purge's archive: gzip-compressed JSON Lines, one execution with its history a line.

Each batch is one complete gzip member, written with one write() and fsync'ed before the
purge deletes its rows: a process killed at any moment leaves a file of whole members (every
gzip reader reads concatenated members as one stream), and a later run appends members of
its own to the same file. A batch archived but not deleted (killed between the two) is
archived again by the next run: an execution may then appear twice, identically.
"""

import gzip
import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime

GZIP_MAGIC = b"\x1f\x8b"


class ArchiveError(Exception):
    pass


def json_default(value):
    # Full precision: DjangoJSONEncoder would cut datetimes to milliseconds.
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class GzipJsonLinesArchive:
    """Appends batches of records to `path` (created if missing, never truncated)."""

    def __init__(self, path: str):
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as error:
            raise ArchiveError(f"cannot open {path} for appending: {error.strerror}") from None
        with open(path, "rb") as existing:
            start = existing.read(2)
        if start and start != GZIP_MAGIC:
            os.close(self._fd)
            raise ArchiveError(f"{path} exists and is not a gzip file; choose another path")
        self.path = path

    def append(self, records: list[dict]) -> None:
        lines = "".join(json.dumps(record, default=json_default) + "\n" for record in records)
        member = memoryview(gzip.compress(lines.encode()))
        while member:
            written = os.write(self._fd, member)
            member = member[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def read_archive(path: str) -> Iterator[dict]:
    """Every record of an archive, in the order written."""
    with gzip.open(path, "rt") as lines:
        for line in lines:
            yield json.loads(line)
