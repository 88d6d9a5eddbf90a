"""Django's PostgreSQL backend, with a health check that costs no round trip while the
connection is idle and well, and prepared statements for what every request runs.

With CONN_HEALTH_CHECKS, Django checks a persistent connection before the first query of
each request, and its PostgreSQL backend does it with `SELECT 1`: one round trip to the
server, a third of a PATCH's time on a loaded machine (py-spy, docs/performance.md), where
the whole PATCH is two more (the token, the change with its audit record).

A server that ends a connection (a restart, a shutdown, pg_terminate_backend) sends a FATAL
error and closes the socket; either makes the idle socket readable. An idle connection's
socket has nothing to read otherwise. So a socket with nothing to read is usable without
asking the server; one with something to read gets Django's own check, which reads the error
(or the end of the stream) and reports the connection unusable, or reads a harmless message
(a setting the server reports after a reload) and finds it usable. A server that vanished
without closing anything (a cut network) is not noticed by either check until a query
fails; that request then answers 503 and the next one reconnects, as before.
"""

import select
from contextlib import contextmanager

from django.db.backends.postgresql import base, operations

# psycopg's default, which Django's connection parameters replace with None (never).
PSYCOPG_PREPARE_THRESHOLD = 5
_READABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class PreparedCursor(base.ServerBindingCursor):
    """A psycopg cursor that sends its parameters apart from the statement (server-side
    binding) and prepares each statement on its connection the first time it runs: later
    runs skip the server's parsing and planning."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor, sql, params):
        if isinstance(cursor, PreparedCursor):
            # psycopg keeps no text of a prepared run: the statement as the client would have
            # bound it, for the SQL log (DEBUG) and the tests that read it.
            return self.compose_sql(sql, params)
        return super().last_executed_query(cursor, sql, params)


class DatabaseWrapper(base.DatabaseWrapper):
    """See the module's docstring; and `prepared_statements()`.

    Django turns psycopg's prepared statements off and binds parameters in the client,
    which suits queries of a kind seen once. The few statements every request runs (the
    token lookup, the compare-and-set with its audit record) are the same text each time,
    and the server's parsing and planning of them was about a quarter of a PATCH's time
    (866 -> 1,198 PATCHes a second once prepared: docs/performance.md, issue 19). Within
    `prepared_statements()` they are prepared once per connection (psycopg keeps at most
    100, deallocating the least recently used). The setting PREPARED_STATEMENTS False
    (DATABASE_PREPARED_STATEMENTS=false) turns it off, for a pooler in transaction mode that
    cannot keep a session's prepared statements."""

    ops_class = DatabaseOperations
    _preparing = False

    @contextmanager
    def prepared_statements(self):
        """Cursors made within prepare their statements (see the class)."""
        preparing = self._preparing
        self._preparing = self.settings_dict.get("PREPARED_STATEMENTS", True)
        try:
            yield
        finally:
            self._preparing = preparing

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        if self.settings_dict.get("PREPARED_STATEMENTS", True):
            # Django's None would refuse even PreparedCursor's. Its own cursors still never
            # prepare: they bind parameters in the client.
            connection.prepare_threshold = PSYCOPG_PREPARE_THRESHOLD
        return connection

    def create_cursor(self, name=None):
        if name or not self._preparing:
            return super().create_cursor(name)
        # Django's own (its time zone handling included), of the preparing class.
        factory = self.connection.cursor_factory
        self.connection.cursor_factory = PreparedCursor
        try:
            return super().create_cursor(name)
        finally:
            self.connection.cursor_factory = factory

    def is_usable(self):
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            poller = select.poll()
            poller.register(connection.fileno(), _READABLE)
            pending = poller.poll(0)
        except (OSError, ValueError):
            return False
        return True if not pending else super().is_usable()
