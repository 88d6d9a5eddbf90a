"""Prepared statements, for the few statements every request runs."""

from contextlib import nullcontext

from django.db import connection


def prepared_statements():
    """Within it, the statements run on the default connection are prepared once per
    connection on PostgreSQL (executions/db/postgresql); SQLite's driver keeps its own cache
    of compiled statements."""
    preparing = getattr(connection, "prepared_statements", None)
    return preparing() if preparing is not None else nullcontext()
