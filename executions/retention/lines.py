"""The archive's lines, written by the database: each execution with its audit records as
one line of JSON text, in one query, read in one pass.

Reading the rows through the ORM (every JSON value and timestamp made into Python objects,
then serialized again) took a 16 KiB JSON value to some 700 KB of memory, so a batch of
such rows took gigabytes, and it was most of the purge's time even for small rows. Here the
database builds each line (json_build_object on PostgreSQL, json_object on SQLite), the JSON
columns go into it as stored, and Python only passes the text on, ARCHIVE_FETCH_ROWS rows
at a time (a server-side cursor on PostgreSQL). The ORM's reading of the same records is
purge.executions_with_history; tests/test_purge_command.py proves the two agree.
"""

from collections.abc import Iterator
from functools import lru_cache

from django.db import connection, models

from ..db.functions import utc_isoformat_sql
from ..models import Execution, ExecutionStatusChange

# What an archive line holds of an execution and of each of its audit records, in order.
ARCHIVED_EXECUTION_FIELDS = (
    "id",
    "name",
    "status",
    "error_info",
    "metadata",
    "created_by_id",
    "created_at",
    "updated_at",
    "finished_at",
    "last_heartbeat_at",
)
ARCHIVED_STATUS_CHANGE_FIELDS = (
    "id",
    "previous_status",
    "new_status",
    "error_info",
    "actor_id",
    "actor_username",
    "channel",
    "correlation_id",
    "created_at",
)

# JSON lets these stand unescaped in strings, and the databases leave them so, but some
# readers of lines take them for line breaks (Python's str.splitlines, for one): escaped, so
# that a line is one line to every reader. (Both databases escape every control character.)
OTHER_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}

# Rows fetched at a time. Within the API's limits (16 KiB per JSON object as sent) a line is
# at most some 150 KB, so a fetch stays within ~15 MB.
ARCHIVE_FETCH_ROWS = 100


def _json_value_sql(vendor: str, field: models.Field, column: str) -> str:
    """SQL for the field's value as its JSON object member: JSON as stored, timestamps in
    ISO 8601 in UTC, ids with their dashes."""
    if vendor == "postgresql":
        # json_build_object writes a timestamp in ISO 8601 in the session's time zone (UTC
        # on Django's connections), the fraction of a second without its trailing zeros:
        # formatting it as isoformat() does instead (to_char) took half of the query's time.
        return column
    # SQLite
    if isinstance(field, models.DateTimeField):
        return utc_isoformat_sql(vendor, column)
    if isinstance(field, models.JSONField):
        # As JSON, not as a string holding its text; text SQLite cannot read as JSON (NaN,
        # written around the service) as a string, rather than stop the purge.
        return f"CASE WHEN json_valid({column}) THEN json({column}) ELSE json_quote({column}) END"
    if isinstance(field, models.UUIDField):  # stored as 32 hex digits
        parts = [(1, 8), (9, 4), (13, 4), (17, 4), (21, 12)]
        return " || '-' || ".join(f"substr({column}, {start}, {length})" for start, length in parts)
    return column


def _json_object_sql(vendor: str, model, alias: str, names, extra: tuple[tuple[str, str], ...] = ()) -> str:
    quote = connection.ops.quote_name
    members = []
    for name in names:
        field = model._meta.get_field(name)
        members += [f"'{name}'", _json_value_sql(vendor, field, f"{alias}.{quote(field.column)}")]
    for name, sql in extra:
        members += [f"'{name}'", sql]
    function = "json_build_object" if vendor == "postgresql" else "json_object"
    return f"{function}({', '.join(members)})"


@lru_cache(maxsize=8)  # per database vendor and number of ids
def archive_lines_sql(vendor: str, count: int) -> str:
    """SELECT id, updated_at (as stored) and the line's JSON text of `count` executions
    given as parameters, by id (so that the database walks the primary key and sorts no wide
    row: ids are time-ordered)."""
    quote = connection.ops.quote_name
    execution_id = f"e.{quote(Execution._meta.pk.column)}"
    created_by = Execution._meta.get_field("created_by")
    users = created_by.related_model._meta
    change_of = ExecutionStatusChange._meta.get_field("execution").column
    change = _json_object_sql(vendor, ExecutionStatusChange, "c", ARCHIVED_STATUS_CHANGE_FIELDS)
    changes_table = quote(ExecutionStatusChange._meta.db_table)
    order = (
        f"c.{quote(ExecutionStatusChange._meta.get_field('created_at').column)},"
        f" c.{quote(ExecutionStatusChange._meta.pk.column)}"
    )
    if vendor == "postgresql":
        status_changes = (
            f"COALESCE((SELECT json_agg({change} ORDER BY {order}) FROM {changes_table} c"
            f" WHERE c.{quote(change_of)} = {execution_id}), '[]'::json)"
        )
    else:
        # json() again: a JSON object loses its JSON type on its way out of a subquery.
        status_changes = (
            f"(SELECT json_group_array(json(change)) FROM (SELECT {change} AS change FROM {changes_table} c"
            f" WHERE c.{quote(change_of)} = {execution_id} ORDER BY {order}))"
        )
    line = _json_object_sql(
        vendor,
        Execution,
        "e",
        ARCHIVED_EXECUTION_FIELDS,
        (
            (
                "created_by_username",
                f"(SELECT u.{quote(users.get_field('username').column)} FROM {quote(users.db_table)} u"
                f" WHERE u.{quote(users.pk.column)} = e.{quote(created_by.column)})",
            ),
            ("status_changes", status_changes),
        ),
    )
    if vendor == "postgresql":
        line += "::text"
    updated_at = f"e.{quote(Execution._meta.get_field('updated_at').column)}"
    table, pk = quote(Execution._meta.db_table), quote(Execution._meta.pk.column)
    ids = ", ".join(["%s"] * count)
    if vendor == "postgresql":
        # The rows are put in order first, as they are stored (OFFSET 0 keeps PostgreSQL
        # from merging the two SELECTs): a large JSON value is a pointer in that sort, not its
        # text. (SQLite walks the primary key in order: there is no sort.)
        rows = f"(SELECT * FROM {table} WHERE {pk} IN ({ids}) ORDER BY {pk} OFFSET 0) e"
    else:
        rows = f"{table} e WHERE {execution_id} IN ({ids})"
    return f"SELECT {execution_id}, {updated_at}, {line} FROM {rows} ORDER BY {execution_id}"


def executions_archive_lines(execution_ids: list) -> Iterator[tuple[object, object, str]]:
    """Each execution of `execution_ids` that is still there, as (its id and its updated_at,
    both as the database gives them, its archive line ending in a newline)."""
    if not execution_ids:
        return
    pk = Execution._meta.pk
    if connection.features.has_native_uuid_field:
        params = list(execution_ids)
    else:  # what UUIDField.get_db_prep_value gives, at a tenth of its cost
        params = [pk.to_python(execution_id).hex for execution_id in execution_ids]
    with connection.chunked_cursor() as cursor:
        cursor.execute(archive_lines_sql(connection.vendor, len(params)), params)
        while rows := cursor.fetchmany(ARCHIVE_FETCH_ROWS):
            for execution_id, updated_at, line in rows:
                if not line.isascii():
                    for character, escaped in OTHER_LINE_BREAKS.items():
                        if character in line:
                            line = line.replace(character, escaped)
                yield execution_id, updated_at, line + "\n"
