"""Django's SQLite backend, with write transactions queued on an OS file lock.

SQLite admits one writer at a time. The others wait in its busy handler, which polls with
sleeps that grow to 100 ms, so with a few concurrent writers (gunicorn workers, the cleanup
command) most of the time went to sleeping: PATCH throughput fell as workers were added.
Taking an exclusive flock() on a file beside the database before BEGIN IMMEDIATE queues the
writers in the kernel instead, which wakes the next one the moment the lock is released.
Readers never take it (WAL lets them read during a write); a process that dies releases it.

SQLite's automatic checkpoint (copying the WAL back into the database, then fsync) runs
inside COMMIT, that is while the committing writer still holds the lock: every other writer
waited for its fsync, the slowest step of all. Each connection instead checkpoints
(PASSIVE: it never waits for, nor blocks, readers and writers) after every
CHECKPOINT_EVERY_COMMITS of its write transactions, once the lock is released.
"""

import fcntl
import os

from django.db.backends.sqlite3 import base


# About as often as SQLite's default (every 1000 WAL pages) with the API's small transactions.
CHECKPOINT_EVERY_COMMITS = 100


class DatabaseWrapper(base.DatabaseWrapper):
    _writer_lock_fd: int | None = None
    _holds_writer_lock = False
    _commits_since_checkpoint = 0

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        connection.execute("PRAGMA wal_autocheckpoint = 0")
        return connection

    def _start_transaction_under_autocommit(self):
        self._acquire_writer_lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_writer_lock()
            raise

    def _commit(self):
        wrote = self._holds_writer_lock
        try:
            return super()._commit()
        finally:
            self._release_writer_lock()
            if wrote:
                self._checkpoint_now_and_then()

    def _checkpoint_now_and_then(self):
        self._commits_since_checkpoint += 1
        if self._commits_since_checkpoint >= CHECKPOINT_EVERY_COMMITS and self.connection is not None:
            self._commits_since_checkpoint = 0
            self.connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

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
