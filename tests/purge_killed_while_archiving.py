"""`manage.py purge_executions ...` that dies (SIGKILL) while it writes its Nth gzip member
of the archive, once the member's first CUT bytes are in the file: the file as a process
killed at that byte leaves it.

    python tests/purge_killed_while_archiving.py N CUT purge_executions --archive PATH ...

CUT: a number of bytes; negative, all of the member but that many; `all`, the whole member,
killed before its fsync (so before its batch is deleted)."""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

django.setup()

from django.core.management import execute_from_command_line  # noqa: E402

from executions.retention.archive import GzipJsonLinesArchive  # noqa: E402

dying_member, cut = int(sys.argv[1]), sys.argv[2]
real_append = GzipJsonLinesArchive.append
real_write_at = GzipJsonLinesArchive._write_at
real_sync = GzipJsonLinesArchive._sync
members = 0
dying = None  # the dying member: where it starts, and its bytes as the archive writes them


def append(self, lines):
    global members, dying
    members += 1
    if members == dying_member:
        dying = (self._end, bytearray())
    real_append(self, lines)


def write_at(self, data, offset):
    if dying is None:
        return real_write_at(self, data, offset)
    dying[1].extend(data)
    return offset + len(data)


def sync(self):
    if dying is None:
        return real_sync(self)
    start, member = dying
    if cut == "all":
        written = len(member)
    else:
        written = int(cut) if int(cut) >= 0 else len(member) + int(cut)
    assert 0 < written <= len(member), (written, len(member))
    real_write_at(self, member[:written], start)
    os.kill(os.getpid(), signal.SIGKILL)


GzipJsonLinesArchive.append = append
GzipJsonLinesArchive._write_at = write_at
GzipJsonLinesArchive._sync = sync
execute_from_command_line(["manage.py", *sys.argv[3:]])
