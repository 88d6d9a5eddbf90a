"""The SQL of the status changes, built once from the ORM, and the one way to write.

Building and compiling the compare-and-set UPDATE and the audit INSERT with the ORM cost more
than the rest of a PATCH. Their SQL text depends only on the shape of the request (who may
see what, which fields change, how many If-Match versions), so the ORM builds it once per
shape (`compare_and_set_query` is the ORM form) and each call only runs it with its
parameters. tests/test_services.py proves the two forms give the same SQL and parameters.
The bulk changes' batch statement is here too: the three places that differ by database.
"""

import uuid
from collections.abc import Collection
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.db import connection, models, transaction
from django.db.models import F, Value, sql
from django.db.models.expressions import BaseExpression

from .db.prepared import prepared_statements
from .models import Execution, ExecutionStatusChange
from .selectors import NONE, OWN_OR_MANAGED, Visibility, executions_in


def write_transaction(*, single_statement: bool = False):
    """The transaction every write runs in: use it for every INSERT, UPDATE and DELETE.

    On SQLite it is what queues the writer on the writer lock (executions/db/sqlite3), rather
    than in SQLite's busy handler, whose sleeps cost most of the time under concurrent
    writers; a write outside it skips the queue (tests/test_writes_queue.py catches one).
    On PostgreSQL a write that is a single statement (`single_statement=True`) is atomic by
    itself, so it runs without BEGIN and COMMIT and their round trips."""
    if single_statement and connection.vendor == "postgresql":
        return nullcontext()
    return transaction.atomic()


# SQLite: during a run of many write transactions (a bulk change), copy the WAL back into the
# database (and fsync it) every ~40 MB of changes rather than after a handful of commits
# (executions/db/sqlite3), which cost more than the changes themselves.
SQLITE_BULK_CHECKPOINT_PAGES = 10_000


def prepare_for_many_commits() -> None:
    """Before a run of many write transactions on this connection (see above)."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_BULK_CHECKPOINT_PAGES}")


_SENTINEL_ID = uuid.UUID(int=0)
_SENTINEL_TIME = datetime(2000, 1, 1, tzinfo=UTC)
# Shapes differ by the visibility, the changed fields and the number of If-Match versions; a
# client decides the last one, so the cache of statements is bounded, not keyed without end.
# That number is also rounded up to a power of two (padded_versions): a client's hundreds of
# tag counts are then a dozen shapes, which cannot push the few every PATCH uses out of it.
STATEMENT_SHAPES_CACHED = 64


def padded_versions(versions: list[datetime]) -> list[datetime]:
    """`versions` with its last one repeated up to the next power of two in length: the same
    `updated_at IN (...)` condition (a repeat matches nothing more) in one of few shapes."""
    padded_length = 1 << (len(versions) - 1).bit_length()
    return versions + versions[-1:] * (padded_length - len(versions))


def compare_and_set_query(
    visibility: Visibility, execution_id, source: str, changes: dict, expected_updated_at
):
    """The ORM form of the compare-and-set: UPDATE the execution if it is in `visibility`,
    in `source`, and (when given) at one of the `expected_updated_at` versions."""
    executions = executions_in(visibility).filter(pk=execution_id, status=source)
    if expected_updated_at is not None:
        executions = executions.filter(updated_at__in=expected_updated_at)
    query = executions.query.chain(sql.UpdateQuery)
    query.add_update_values(changes)
    query.clear_select_clause()
    return query


@lru_cache(maxsize=STATEMENT_SHAPES_CACHED)
def compare_and_set_sql(alias: str, kind: str, changed_fields: tuple[str, ...], versions: int | None) -> str:
    expected = None
    if versions is not None:
        expected = [_SENTINEL_TIME + i * timedelta(microseconds=1) for i in range(versions)]
    # Any value but None (which the ORM writes as a NULL literal, not a parameter).
    changes = {
        name: _SENTINEL_TIME if isinstance(Execution._meta.get_field(name), models.DateTimeField) else ""
        for name in changed_fields
    }
    query = compare_and_set_query(Visibility(kind, 0), _SENTINEL_ID, "", changes, expected)
    return query.get_compiler(alias).as_sql()[0]


def compare_and_set_params(visibility, execution_id, source, changes, expected_updated_at) -> list:
    """The parameters of `compare_and_set_sql`, in the order the ORM form compiles them: the
    new values, the visibility's user, the id and status, the expected versions."""
    field = Execution._meta.get_field
    params = [field(name).get_db_prep_save(value, connection) for name, value in changes.items()]
    if visibility.kind == OWN_OR_MANAGED:
        params += [visibility.user_pk] * 3  # created_by, and the permission's two EXISTS
    params.append(field("id").get_db_prep_value(execution_id, connection))
    params.append(source)
    if expected_updated_at is not None:
        updated_at = field("updated_at")
        params += [updated_at.get_db_prep_value(version, connection) for version in expected_updated_at]
    return params


def compare_and_set(
    visibility: Visibility,
    execution_id,
    source: str,
    changes: dict,
    expected_updated_at: Collection[datetime] | None,
    audit_record: ExecutionStatusChange | None = None,
) -> int:
    """Run the compare-and-set; the number of rows it changed (0 or 1). With `audit_record`
    (PostgreSQL only: `change_and_audit_sql`), the same statement writes it when the change
    wins."""
    if visibility.kind == NONE or expected_updated_at == []:
        return 0  # nothing can match
    if expected_updated_at is not None:
        expected_updated_at = padded_versions(list(expected_updated_at))
    shape = (
        connection.alias,
        visibility.kind,
        tuple(changes),
        None if expected_updated_at is None else len(expected_updated_at),
    )
    params = compare_and_set_params(visibility, execution_id, source, changes, expected_updated_at)
    if audit_record is None:
        sql_text = compare_and_set_sql(*shape)
    else:
        sql_text = change_and_audit_sql(*shape)
        params += _audit_insert_params(audit_record)
    with prepared_statements(), connection.cursor() as cursor:
        cursor.execute(sql_text, params)
        return cursor.rowcount


# The database fills in the rest (the id, and transaction_id from its db_default).
_AUDIT_FIELDS = [
    field
    for field in ExecutionStatusChange._meta.local_concrete_fields
    if not field.primary_key and not field.has_db_default()
]


@lru_cache(maxsize=4)  # one per database alias
def audit_insert_sql(alias: str) -> str:
    query = sql.InsertQuery(ExecutionStatusChange)
    query.insert_values(_AUDIT_FIELDS, [ExecutionStatusChange(execution_id=_SENTINEL_ID)])
    [(sql_text, _)] = query.get_compiler(alias).as_sql()
    return sql_text


def _audit_insert_params(record: ExecutionStatusChange) -> list:
    return [field.get_db_prep_save(field.pre_save(record, True), connection) for field in _AUDIT_FIELDS]


def insert_audit_record(record: ExecutionStatusChange) -> None:
    with prepared_statements(), connection.cursor() as cursor:
        cursor.execute(audit_insert_sql(connection.alias), _audit_insert_params(record))


@lru_cache(maxsize=STATEMENT_SHAPES_CACHED)
def change_and_audit_sql(alias: str, kind: str, changed_fields: tuple[str, ...], versions: int | None) -> str:
    """PostgreSQL: the compare-and-set and the audit INSERT, both as compiled above, joined into
    one statement: the INSERT copies its one row from what the UPDATE changed, so it writes
    the audit record exactly when the compare-and-set won."""
    update = compare_and_set_sql(alias, kind, changed_fields, versions)
    insert_into, values = audit_insert_sql(alias).split(" VALUES ", 1)
    assert values.startswith("(") and values.endswith(")"), values  # one row, no RETURNING
    return f"WITH changed AS ({update} RETURNING 1) {insert_into} SELECT {values[1:-1]} FROM changed"


def change_batch_with_audit(
    batch: models.QuerySet, changes: dict, audit_values: dict, error_info, *, returning_ids: bool
) -> tuple[int, list[int]]:
    """Apply `changes` to the rows of `batch` and copy one audit record per changed row (its
    fields `audit_values`, plus `error_info`: None, a value, or an expression of the row);
    how many changed, and the new audit records' ids when `returning_ids`. Runs inside the
    caller's write transaction. No row passes through Python."""
    opts, quote = ExecutionStatusChange._meta, connection.ops.quote_name
    returning = f" RETURNING {quote(opts.pk.column)}" if returning_ids else ""
    if connection.vendor == "postgresql":
        # Lock in id order (concurrent runs wait rather than deadlock; a row that changed
        # meanwhile no longer matches once its lock is granted), change, and copy, in one.
        locked = batch.select_for_update().order_by("pk").values("pk")
        update = Execution.objects.filter(pk__in=locked).query.chain(sql.UpdateQuery)
        update.add_update_values(changes)
        update_sql, update_params = update.get_compiler(connection.alias).as_sql()
        table = quote(Execution._meta.db_table)
        execution_id = f"{table}.{quote(Execution._meta.pk.column)}"
        execution_error_info = f"{table}.{quote(Execution._meta.get_field('error_info').column)}"
        audit_error_info = "moved.error_info" if error_info is not None else "NULL"
        columns = ", ".join(
            quote(opts.get_field(name).column) for name in ["execution", *audit_values, "error_info"]
        )
        statement = (
            f"WITH moved AS ({update_sql}"
            f" RETURNING {execution_id} AS id, {execution_error_info} AS error_info)"
            f" INSERT INTO {quote(opts.db_table)} ({columns})"
            # In id order, as on SQLite: the audit ids (and the change feed) follow the walk.
            f" SELECT moved.id, {', '.join(['%s'] * len(audit_values))}, {audit_error_info}"
            f" FROM moved ORDER BY moved.id{returning}"
        )
        audit_params = [
            opts.get_field(name).get_db_prep_save(value.value, connection)
            for name, value in audit_values.items()
        ]
        with connection.cursor() as cursor:
            cursor.execute(statement, [*update_params, *audit_params])
            changed = cursor.rowcount
            record_ids = [row[0] for row in cursor.fetchall()] if returning_ids else []
        return changed, record_ids
    # SQLite, which holds the write lock from BEGIN IMMEDIATE and has no UPDATE in a WITH:
    # the INSERT ... SELECT reads the rows still unchanged (their error_info expression
    # included), then the UPDATE changes the same range.
    if not isinstance(error_info, BaseExpression):
        error_info = Value(error_info, output_field=models.JSONField())
    audit_fields = {"execution": F("pk"), **audit_values, "error_info": error_info}
    source_rows = batch.values(**{f"audit_{name}": value for name, value in audit_fields.items()})
    select_sql, params = source_rows.query.sql_with_params()
    columns = ", ".join(quote(opts.get_field(name).column) for name in audit_fields)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(opts.db_table)} ({columns}) {select_sql}{returning}", params)
        record_ids = [row[0] for row in cursor.fetchall()] if returning_ids else []
        inserted = len(record_ids) if returning_ids else cursor.rowcount
    changed = batch.update(**changes)
    if changed != inserted:
        # Under the write lock nothing else changes the rows between the two statements.
        raise RuntimeError(f"{inserted} audit records for {changed} changes")
    return changed, record_ids
