"""The purge's archive: gzip-compressed JSON Lines, one execution with its history a line.

The archive is the only copy of what the purge deleted, so it stays readable whatever
happens to the process or to the disk:
- each batch is one gzip member, compressed as its lines arrive (memory does not grow with
  the batch or its rows) and written after the last complete member; the purge deletes the
  batch only once the member is complete and fsync'ed (and, for a new file, its directory);
- a member that fails (full disk, I/O error, the database failing while its lines are read)
  is cut off again at once, and a new file left with nothing complete is removed;
- a member left behind by a killed process, or one that could not be cut off, is cut off by
  the next run, which before writing finds the end of the last complete member (each
  member's CRC and length checked, as gzip -t does) and truncates the file there;
- a run holds an exclusive lock on the file (flock), so two runs never write one file;
- a path that is empty, not a regular file, in no writable folder, or a file that is not
  gzip or is damaged before its end, is refused before anything is deleted.
So after any run (a killed one: after the next run) `zcat` and `gzip -t` accept the file,
and every gzip reader reads its members as one stream. A batch archived but not deleted
(killed between the two) is archived again by the next run: an execution may then appear
twice, identically.
"""

import contextlib
import fcntl
import gzip
import json
import os
import stat
import uuid
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime

GZIP_MAGIC = b"\x1f\x8b"
# How a gzip member starts: the magic and "deflate", the only method gzip defines.
GZIP_MEMBER_START = GZIP_MAGIC + b"\x08"
# gzip -1: four times as fast as zlib's default (6) on the archive's lines, for 13% more bytes.
COMPRESS_LEVEL = 1
# Compressed bytes gathered before a write, and read at a time while checking the file.
IO_CHUNK_BYTES = 1 << 20


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
    """Appends batches of JSON lines to `path`, each batch one gzip member (see above).
    Opening it checks the path and repairs what an interrupted run left; the file itself is
    created with the first member, so a run with nothing to archive leaves no file."""

    def __init__(self, path: str):
        if not path.strip():
            raise ArchiveError("the path is empty")
        if path.endswith(os.sep):
            raise ArchiveError(f"{path} names a folder, not a file")
        self.path = path
        self._fd: int | None = None
        self._end = 0  # where the last complete member ends: the next one starts there
        self._created = False  # by this run, so its folder entry must be made durable
        self.cut_bytes = 0  # what opening cut off: an incomplete member an earlier run left
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            self._check_folder()
            return
        except OSError as error:
            raise ArchiveError(f"cannot open {path}: {error.strerror}") from None
        if stat.S_ISDIR(mode):
            raise ArchiveError(f"{path} is a directory")
        if not stat.S_ISREG(mode):
            raise ArchiveError(f"{path} is not a regular file")
        self._open(create=False)

    def _check_folder(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise ArchiveError(f"cannot create {self.path}: no folder {folder}")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ArchiveError(f"cannot create {self.path}: {folder} is not writable")

    def _open(self, *, create: bool) -> None:
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.path, flags, 0o640)
        except OSError as error:
            raise ArchiveError(f"cannot open {self.path} for writing: {error.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ArchiveError(f"another purge is writing to {self.path}") from None
            size = os.fstat(fd).st_size
            if size == 0 and create:
                self._fd, self._created = fd, True
                return
            self._end = self._repair(fd, size)
        except OSError as error:  # a filesystem without locks, an I/O error
            os.close(fd)
            raise ArchiveError(f"cannot check {self.path}: {error.strerror}") from None
        except BaseException:
            os.close(fd)
            raise
        if self._end == 0:
            # Nothing complete in it: the file goes, and the first member makes it again.
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(fd)
            return
        self._fd = fd

    def _repair(self, fd: int, size: int) -> int:
        """Where the complete members of the open file end, once anything after them (what an
        interrupted run left) is cut off; refuses a file that is not gzip or damaged before
        its end, changing nothing."""
        start = os.pread(fd, len(GZIP_MAGIC), 0)
        if start != GZIP_MAGIC[: len(start)]:
            raise ArchiveError(f"{self.path} exists and is not a gzip file; choose another path")
        end = complete_members_end(fd, size)
        if end == size:
            return end
        following = next_complete_member(fd, end + 1, size)
        if following is not None:
            raise ArchiveError(
                f"{self.path} is damaged: bytes {end} to {following} are not a complete gzip member, "
                "and complete members follow (docs/operations.md says how to read it); choose another path"
            )
        os.ftruncate(fd, end)
        os.fsync(fd)
        self.cut_bytes = size - end
        return end

    def append(self, lines: Iterable[str]) -> None:
        """Write `lines` (each ending in a newline) as one gzip member after the last complete
        one, and make it durable: what they hold may be deleted once this returns. If anything
        fails meanwhile, the member is cut off again and the error raised."""
        if self._fd is None:
            self._open(create=True)
        start = offset = self._end
        compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 31)  # 31: gzip's framing
        pending = bytearray()
        try:
            for line in lines:
                pending += compressor.compress(line.encode())
                if len(pending) >= IO_CHUNK_BYTES:
                    offset = self._write_at(pending, offset)
                    pending.clear()
            pending += compressor.flush()
            offset = self._write_at(pending, offset)
            if os.fstat(self._fd).st_size > offset:  # what a failed member's cut left behind
                os.ftruncate(self._fd, offset)
            self._sync()
        except BaseException:
            self._cut_back(start)
            raise
        self._end = offset

    def _write_at(self, data: bytes | bytearray, offset: int) -> int:
        """Write all of `data` at `offset`; the offset after it."""
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written
        return offset

    def _sync(self) -> None:
        os.fsync(self._fd)
        if self._created:
            # A new file's name is durable only once its folder is.
            folder = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
            self._created = False

    def _cut_back(self, end: int) -> None:
        """After a failed member: the file as it was before it (best effort: what cannot be
        cut now, the next member overwrites or the next run cuts)."""
        with contextlib.suppress(OSError):
            if end == 0:
                os.unlink(self.path)
                os.close(self._fd)
                self._fd, self._created = None, False
            else:
                os.ftruncate(self._fd, end)
                os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def member_end(fd: int, offset: int, size: int) -> int | None:
    """Where the gzip member starting at `offset` ends, if it is complete: whole, with its
    trailer's CRC-32 and length matching what it decompresses to. None otherwise."""
    decompressor = zlib.decompressobj(31)
    position = offset
    while position < size:
        chunk = os.pread(fd, min(IO_CHUNK_BYTES, size - position), position)
        if not chunk:
            return None
        position += len(chunk)
        try:
            while chunk and not decompressor.eof:
                # Bounded output: a member of repetitive JSON expands a thousandfold.
                decompressor.decompress(chunk, IO_CHUNK_BYTES)
                chunk = decompressor.unconsumed_tail
        except zlib.error:
            return None
        if decompressor.eof:
            return position - len(decompressor.unused_data) - len(chunk)
    return None


def complete_members_end(fd: int, size: int) -> int:
    """Where the run of complete gzip members at the start of the file ends."""
    end = 0
    while end < size:
        following = member_end(fd, end, size)
        if following is None:
            break
        end = following
    return end


def next_complete_member(fd: int, start: int, size: int) -> int | None:
    """The offset of the first complete gzip member starting at or after `start`, if any."""
    position = start
    while position < size:
        # Overlapping reads, so that a member start across two chunks is seen.
        chunk = os.pread(fd, IO_CHUNK_BYTES + len(GZIP_MEMBER_START) - 1, position)
        found = chunk.find(GZIP_MEMBER_START)
        while found != -1:
            if member_end(fd, position + found, size) is not None:
                return position + found
            found = chunk.find(GZIP_MEMBER_START, found + 1)
        position += IO_CHUNK_BYTES
    return None


def read_archive(path: str) -> Iterator[dict]:
    """Every record of an archive, in the order written."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)
