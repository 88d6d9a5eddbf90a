"""Database functions the service uses in its queries, each with its SQL per database."""

import json
from uuid import UUID

from django.db.models import BigIntegerField, CharField, Func


class CurrentTransactionId(Func):
    """PostgreSQL: the id of the transaction that evaluates it (assigning one if it has none
    yet). SQLite: 0, because there writes are serialized and id order is commit order."""

    output_field = BigIntegerField()
    arity = 0

    def as_sql(self, compiler, connection, **extra_context):
        return "0", []

    def as_postgresql(self, compiler, connection, **extra_context):
        # xid8 has no cast to bigint; its text form is the 64-bit number.
        return "pg_current_xact_id()::text::bigint", []


class OldestRunningTransactionId(Func):
    """PostgreSQL: the oldest transaction id still running (xmin of a snapshot taken now).
    Every transaction with a smaller id has committed or rolled back, so the set of rows
    they wrote can no longer grow. Only meaningful on PostgreSQL."""

    output_field = BigIntegerField()
    arity = 0

    def as_sql(self, compiler, connection, **extra_context):
        raise NotImplementedError("transaction ids are a PostgreSQL feature")

    def as_postgresql(self, compiler, connection, **extra_context):
        return "pg_snapshot_xmin(pg_current_snapshot())::text::bigint", []


def utc_isoformat_sql(vendor: str, timestamp: str) -> str:
    """SQL giving the text datetime.isoformat() gives for the timestamp `timestamp` (an SQL
    expression) in UTC ("2026-11-29T03:12:44.120000+00:00", no fraction when it is zero).
    On PostgreSQL `timestamp` appears in it UTC_ISOFORMAT_USES times, on SQLite once."""
    if vendor == "postgresql":
        utc = f"(({timestamp}) AT TIME ZONE 'UTC')"
        # One to_char a value (the slow part: the archive formats five a row).
        return (
            f"(CASE WHEN date_trunc('second', {utc}) = {utc} THEN to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
            f" ELSE to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US') END || '+00:00')"
        )
    # Django stores "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC.
    return f"(REPLACE({timestamp}, ' ', 'T') || '+00:00')"


UTC_ISOFORMAT_USES = 4


class UtcIsoformat(Func):
    """A timestamp as the text datetime.isoformat() gives for it in UTC (utc_isoformat_sql),
    in SQL, so that the database writes the reason for a whole batch, or the archive's lines,
    without a row passing through Python."""

    arity = 1
    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return utc_isoformat_sql(connection.vendor, sql), tuple(params) * UTC_ISOFORMAT_USES

    def as_sqlite(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return utc_isoformat_sql(connection.vendor, sql), params


def in_ids_sql(vendor: str, column: str) -> str:
    """SQL: `column` (an SQL expression) is one of the ids given as a single parameter
    (ids_parameter). One parameter for a whole batch: a thousand placeholders cost more to
    build, send and parse than the statement's work (issue 19's profile of the purge)."""
    if vendor == "postgresql":
        return f"{column} = ANY(%s::uuid[])"
    return f"{column} IN (SELECT value FROM json_each(%s))"


def ids_parameter(vendor: str, ids) -> object:
    """`ids` (UUIDs, or as the database gives them) as the parameter of in_ids_sql: an
    array on PostgreSQL; on SQLite, which stores a UUID as its 32 hex digits, a JSON array."""
    if vendor == "postgresql":
        return list(ids)
    return json.dumps([pk.hex if isinstance(pk, UUID) else pk for pk in ids])
