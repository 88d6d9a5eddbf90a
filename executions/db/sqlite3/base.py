"""Django's SQLite backend, with write transactions queued on an OS file lock.

SQLite admits one writer at a time. The others wait in its busy handler, which polls with
sleeps that grow to 100 ms, so with a few concurrent writers (gunicorn workers, the cleanup
command) most of the time went to sleeping: PATCH throughput fell as workers were added.
Taking an exclusive flock() on a file beside the database before BEGIN IMMEDIATE queues the
writers in the kernel instead, which wakes the next one the moment the lock is released.
Readers never take it (WAL lets them read during a write); a process that dies releases it.

A writer waits at most SQLITE_BUSY_TIMEOUT (the `timeout` option) for its turn, as SQLite's
own busy handler would, then fails with OperationalError (the API's 503). flock() has no
timeout, so a writer that finds the lock taken waits for it in a helper thread of its own,
which still wakes the moment the lock is free.

SQLite's automatic checkpoint (copying the WAL back into the database, then fsync) runs
inside COMMIT, that is while the committing writer still holds the lock: every other writer
waited for its fsync, the slowest step of all. Each connection instead checkpoints
(PASSIVE: it never waits for, nor blocks, readers and writers) after every
CHECKPOINT_EVERY_COMMITS of its write transactions, once the lock is released.
"""

import fcntl
import os
import threading

from django.db import OperationalError
from django.db.backends.sqlite3 import base

# sqlite3.connect's default `timeout`, when the settings give none.
DEFAULT_TIMEOUT = 5
# About as often as SQLite's default (every 1000 WAL pages) with the API's small transactions.
CHECKPOINT_EVERY_COMMITS = 100


class _WriterLockWait:
    """A blocking flock() in a thread, on a file descriptor of its own, that the caller may
    give up on: if it does, the thread lets the lock go again the moment it gets it."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._acquired = threading.Event()
        self._mutex = threading.Lock()
        self._abandoned = False
        threading.Thread(target=self._wait, name="sqlite-writer-lock-wait", daemon=True).start()

    def _wait(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        with self._mutex:
            if self._abandoned:
                os.close(self.fd)  # which releases the lock
            else:
                self._acquired.set()

    def acquired_within(self, timeout: float) -> bool:
        """Whether the lock is held (on self.fd) within `timeout` seconds; if not, never."""
        if self._acquired.wait(timeout):
            return True
        with self._mutex:
            if self._acquired.is_set():
                return True
            self._abandoned = True
            return False


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
        path = f"{self.settings_dict['NAME']}.writer-lock"
        if self._writer_lock_fd is None:
            self._writer_lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._writer_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            timeout = self.settings_dict["OPTIONS"].get("timeout", DEFAULT_TIMEOUT)
            wait = _WriterLockWait(path)
            if not wait.acquired_within(timeout):
                raise OperationalError(
                    f"database is locked: no turn to write within {timeout}s (SQLITE_BUSY_TIMEOUT)"
                ) from None
            # The lock is held on the waiter's descriptor: it becomes this connection's.
            os.close(self._writer_lock_fd)
            self._writer_lock_fd = wait.fd
        self._holds_writer_lock = True

    def _release_writer_lock(self):
        if self._holds_writer_lock:
            self._holds_writer_lock = False
            fcntl.flock(self._writer_lock_fd, fcntl.LOCK_UN)
