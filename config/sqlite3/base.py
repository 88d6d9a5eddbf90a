"""Django's SQLite backend, with write transactions queued on an OS file lock.

SQLite admits one writer at a time. The others wait in its busy handler, which polls with
sleeps that grow to 100 ms, so with a few concurrent writers (gunicorn workers, the cleanup
command) most of the time went to sleeping: PATCH throughput fell as workers were added.
Taking an exclusive flock() on a file beside the database before BEGIN IMMEDIATE queues the
writers in the kernel instead, which wakes the next one the moment the lock is released.
Readers never take it (WAL lets them read during a write); a process that dies releases it.
"""

import fcntl
import os

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    _writer_lock_fd: int | None = None
    _holds_writer_lock = False

    def _start_transaction_under_autocommit(self):
        self._acquire_writer_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_writer_lock()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_writer_lock()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_writer_lock()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._release_writer_lock()
            if self._writer_lock_fd is not None:
                os.close(self._writer_lock_fd)
                self._writer_lock_fd = None

    def _acquire_writer_lock(self):
        if self.is_in_memory_db():
            return
        if self._writer_lock_fd is None:
            path = f"{self.settings_dict['NAME']}.writer-lock"
            self._writer_lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._writer_lock_fd, fcntl.LOCK_EX)
        self._holds_writer_lock = True

    def _release_writer_lock(self):
        if self._holds_writer_lock:
            self._holds_writer_lock = False
            fcntl.flock(self._writer_lock_fd, fcntl.LOCK_UN)
