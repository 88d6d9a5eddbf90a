"""The archive's lines, written by the database: each execution with its audit records as
one line of JSON text, in one query, read in one pass.

Reading the rows through the ORM (every JSON value and timestamp made into Python objects,
then serialized again) took a 16 KiB JSON value to some 700 KB of memory, so a batch of
such rows took gigabytes, and it was most of the purge's time even for small rows. Here the
database writes each line, values escaped by its own JSON functions (to_json on PostgreSQL,
json_quote on SQLite), the JSON columns as stored, and Python only passes the text on,
ARCHIVE_FETCH_ROWS rows at a time (a server-side cursor on PostgreSQL). The ORM's reading
of the same records is purge.executions_with_history; tests/test_purge_command.py proves
the two agree.
"""

from collections.abc import Iterator
from functools import lru_cache

from django.db import connection, models

from ..db.functions import ids_parameter, in_ids_sql, utc_isoformat_sql
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


def _json_text_sql(vendor: str, field: models.Field, column: str) -> str:
    """SQL for the JSON text of the field's value: strings escaped by the database's own
    JSON function, JSON columns as stored, timestamps in ISO 8601 in UTC, ids with dashes."""
    postgresql = vendor == "postgresql"
    if isinstance(field, models.JSONField):
        if postgresql:  # `json`: the text as written (models/fields.py)
            return f"COALESCE({column}::text, 'null')"
        # (Django's CHECK constraint keeps it valid JSON; json() also takes out whitespace.)
        return f"COALESCE(json({column}), 'null')"
    if isinstance(field, models.DateTimeField):
        if postgresql:
            # ISO 8601 in the session's time zone (UTC on Django's connections), the fraction
            # of a second without its trailing zeros: formatting it as isoformat() does
            # (to_char) took half of the query's time.
            return f"COALESCE(to_json({column})::text, 'null')"
        return f"COALESCE('\"' || {utc_isoformat_sql(vendor, column)} || '\"', 'null')"
    if isinstance(field, models.UUIDField):
        if postgresql:
            return f"'\"' || {column} || '\"'"
        parts = [(1, 8), (9, 4), (13, 4), (17, 4), (21, 12)]  # SQLite stores 32 hex digits
        return (
            "'\"' || "
            + " || '-' || ".join(f"substr({column}, {start}, {length})" for start, length in parts)
            + " || '\"'"
        )
    if isinstance(field, models.CharField | models.TextField):
        # json_quote(NULL) is 'null' already; to_json(NULL) is NULL.
        return f"COALESCE(to_json({column})::text, 'null')" if postgresql else f"json_quote({column})"
    return f"COALESCE(CAST({column} AS text), 'null')"  # ids and foreign keys: numbers


def _json_object_sql(members: list[tuple[str, str]]) -> str:
    """SQL concatenating a JSON object's text from (key, SQL of the value's JSON text): the
    databases' object builders (json_build_object, json_object) cost twice as much."""
    parts = [f'"{key}": \' || {value}' for key, value in members]
    return "'{" + " || ', ".join(parts) + " || '}'"


def _json_members(vendor: str, model, alias: str, names) -> list[tuple[str, str]]:
    quote = connection.ops.quote_name
    members = []
    for name in names:
        field = model._meta.get_field(name)
        members.append((name, _json_text_sql(vendor, field, f"{alias}.{quote(field.column)}")))
    return members


@lru_cache(maxsize=2)  # per database vendor
def archive_lines_sql(vendor: str) -> str:
    """SELECT id, updated_at (as stored) and the line's JSON text of the executions whose
    ids are its one parameter (ids_parameter), by id (so that the database walks the
    primary key and sorts no wide row: ids are time-ordered)."""
    quote = connection.ops.quote_name
    execution_id = f"e.{quote(Execution._meta.pk.column)}"
    created_by = Execution._meta.get_field("created_by")
    users = created_by.related_model._meta
    change_of = ExecutionStatusChange._meta.get_field("execution").column
    change = _json_object_sql(
        _json_members(vendor, ExecutionStatusChange, "c", ARCHIVED_STATUS_CHANGE_FIELDS)
    )
    changes_table = quote(ExecutionStatusChange._meta.db_table)
    order = (
        f"c.{quote(ExecutionStatusChange._meta.get_field('created_at').column)},"
        f" c.{quote(ExecutionStatusChange._meta.pk.column)}"
    )
    of_this_execution = f"FROM {changes_table} c WHERE c.{quote(change_of)} = {execution_id}"
    if vendor == "postgresql":
        changes = f"(SELECT string_agg({change}, ', ' ORDER BY {order}) {of_this_execution})"
    else:  # (SQLite 3.40 has no ORDER BY in an aggregate: it takes the rows in their order)
        ordered = f"SELECT {change} AS change {of_this_execution} ORDER BY {order}"
        changes = f"(SELECT group_concat(change, ', ') FROM ({ordered}))"
    username = users.get_field("username")
    owner = (
        f"(SELECT u.{quote(username.column)} FROM {quote(users.db_table)} u"
        f" WHERE u.{quote(users.pk.column)} = e.{quote(created_by.column)})"
    )
    line = _json_object_sql(
        [
            *_json_members(vendor, Execution, "e", ARCHIVED_EXECUTION_FIELDS),
            ("created_by_username", _json_text_sql(vendor, username, owner)),
            ("status_changes", f"'[' || COALESCE({changes}, '') || ']'"),
        ]
    )
    updated_at = f"e.{quote(Execution._meta.get_field('updated_at').column)}"
    table, pk = quote(Execution._meta.db_table), quote(Execution._meta.pk.column)
    ids = in_ids_sql(vendor, pk)
    if vendor == "postgresql":
        # The rows are put in order first, as they are stored (OFFSET 0 keeps PostgreSQL
        # from merging the two SELECTs): a large JSON value is a pointer in that sort, not its
        # text. (SQLite walks the primary key in order: there is no sort.)
        rows = f"(SELECT * FROM {table} WHERE {ids} ORDER BY {pk} OFFSET 0) e"
    else:
        rows = f"{table} e WHERE {in_ids_sql(vendor, execution_id)}"
    return f"SELECT {execution_id}, {updated_at}, {line} FROM {rows} ORDER BY {execution_id}"


def executions_archive_lines(execution_ids: list) -> Iterator[tuple[object, object, str]]:
    """Each execution of `execution_ids` that is still there, as (its id and its updated_at,
    both as the database gives them, its archive line ending in a newline)."""
    if not execution_ids:
        return
    vendor = connection.vendor
    with connection.chunked_cursor() as cursor:
        cursor.execute(archive_lines_sql(vendor), [ids_parameter(vendor, execution_ids)])
        while rows := cursor.fetchmany(ARCHIVE_FETCH_ROWS):
            for execution_id, updated_at, line in rows:
                if "\n" in line or "\r" in line:
                    # Only a JSON column's text, written around the service, can hold them,
                    # and there only as whitespace (both databases refuse them in strings).
                    line = line.replace("\n", " ").replace("\r", " ")
                if not line.isascii():
                    for character, escaped in OTHER_LINE_BREAKS.items():
                        if character in line:
                            line = line.replace(character, escaped)
                yield execution_id, updated_at, line + "\n"
