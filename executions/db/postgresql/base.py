"""Django's PostgreSQL backend, with a health check that costs no round trip while the
connection is idle and well.

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

from django.db.backends.postgresql import base

_READABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class DatabaseWrapper(base.DatabaseWrapper):
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
