"""The status service: the one place that changes a status, for one execution or many."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from executions import statements
from executions.errors import ExecutionNotFound, InvalidStatusTransition
from executions.models import ALLOWED_TRANSITIONS, ChangeChannel, Execution, ExecutionStatusChange
from executions.selectors import ALL, OWN_OR_MANAGED, Visibility
from executions.services import execution_change_status, execution_change_status_bulk
from executions.signals import execution_status_changed

from .factories import ExecutionFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_only_running_changes_in_the_table():
    assert set(ALLOWED_TRANSITIONS) == {"running"}
    assert ALLOWED_TRANSITIONS["running"] == {"cancelled", "failed", "completed", "interrupted"}


def test_system_can_interrupt_a_running_execution():
    execution = ExecutionFactory()

    result = execution_change_status(
        execution_id=execution.id, status="interrupted", channel=ChangeChannel.COMMAND
    )

    assert (result.success, result.previous_status, result.current_status) == (True, "running", "interrupted")
    record = ExecutionStatusChange.objects.get()
    assert (record.actor, record.actor_username, record.channel) == (None, "", "command")


def test_nothing_becomes_running_again():
    finished = ExecutionFactory(status="failed")
    with pytest.raises(InvalidStatusTransition):
        execution_change_status(execution_id=finished.id, status="running", channel=ChangeChannel.API)
    finished.refresh_from_db()
    assert finished.status == "failed"
    assert not ExecutionStatusChange.objects.exists()


def test_scope_limits_what_can_be_changed():
    owner, stranger = UserFactory(), UserFactory()
    execution = ExecutionFactory(created_by=owner)

    with pytest.raises(ExecutionNotFound):
        execution_change_status(
            execution_id=execution.id,
            status="cancelled",
            channel=ChangeChannel.API,
            actor=stranger,
            visible_to=stranger,
        )
    execution.refresh_from_db()
    assert execution.status == "running"


# --- Bulk ---------------------------------------------------------------------------------


def test_bulk_changes_running_and_skips_the_rest_in_batches():
    running = [ExecutionFactory() for _ in range(5)]
    finished = ExecutionFactory(status="completed")
    ExecutionFactory()  # not selected
    selected = Execution.objects.filter(pk__in=[e.id for e in running] + [finished.id])
    totals_seen = []

    result = execution_change_status_bulk(
        executions=selected,
        status="cancelled",
        channel=ChangeChannel.ADMIN,
        batch_size=2,
        on_batch=lambda totals: totals_seen.append(totals.changed + totals.skipped),
    )

    assert (result.changed, result.skipped, result.batches) == (5, 1, 3)
    assert totals_seen == [2, 4, 6]
    assert set(Execution.objects.filter(status="cancelled").values_list("id", flat=True)) == {
        e.id for e in running
    }
    finished.refresh_from_db()
    assert finished.status == "completed"
    assert Execution.objects.filter(status="running").count() == 1
    assert ExecutionStatusChange.objects.filter(channel="admin", new_status="cancelled").count() == 5


def test_bulk_uses_one_statement_that_changes_rows_per_batch():
    executions = [ExecutionFactory() for _ in range(6)]

    with CaptureQueriesContext(connection) as queries:
        execution_change_status_bulk(
            executions=Execution.objects.filter(pk__in=[e.id for e in executions]),
            status="failed",
            channel=ChangeChannel.COMMAND,
            batch_size=3,
        )

    # PostgreSQL: WITH moved AS (UPDATE ...) INSERT ...; SQLite: INSERT ... SELECT, then UPDATE.
    updates = [q for q in queries.captured_queries if q["sql"].startswith(("UPDATE", "WITH"))]
    assert len(updates) == 2


def test_bulk_writes_one_error_info_for_all_to_the_executions_and_their_audit_records():
    executions = [ExecutionFactory() for _ in range(3)]

    execution_change_status_bulk(
        executions=Execution.objects.all(),
        status="failed",
        channel=ChangeChannel.ADMIN,
        error_info={"reason": "disk full: ü"},
        batch_size=2,
    )

    for execution in executions:
        execution.refresh_from_db()
        assert execution.error_info == {"reason": "disk full: ü"}
        assert execution.status_changes.get().error_info == {"reason": "disk full: ü"}


def test_bulk_signals_once_per_change_after_commit(django_capture_on_commit_callbacks):
    executions = [ExecutionFactory() for _ in range(3)]
    received = []
    handler = lambda sender, **kwargs: received.append(kwargs["execution_id"])  # noqa: E731
    execution_status_changed.connect(handler)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            execution_change_status_bulk(
                executions=Execution.objects.all(), status="cancelled", channel=ChangeChannel.ADMIN
            )
    finally:
        execution_status_changed.disconnect(handler)
    assert sorted(received) == sorted(e.id for e in executions)


# Concurrency: tests/system/test_races.py (16 concurrent PATCHes against a live server, both databases).


# --- The compare-and-set's SQL, built once, against its ORM form ---------------------------


@pytest.mark.parametrize("kind", [ALL, OWN_OR_MANAGED])
@pytest.mark.parametrize("error_info", [None, {"reason": "ünïcode", "n": [1, 2.5, None]}])
@pytest.mark.parametrize("versions", [None, 1, 2])
def test_compare_and_set_sql_is_what_the_orm_compiles(kind, error_info, versions):
    user = UserFactory()
    visibility = Visibility(kind, user.pk if kind == OWN_OR_MANAGED else None)
    execution_id = uuid.uuid4()
    now = timezone.now()
    changes = {"status": "failed", "finished_at": now, "updated_at": now}
    if error_info is not None:
        changes["error_info"] = error_info
    expected = None if versions is None else [now - timedelta(seconds=n) for n in range(versions)]

    cached_sql = statements.compare_and_set_sql(
        connection.alias, kind, tuple(changes), None if expected is None else len(expected)
    )
    cached_params = statements.compare_and_set_params(visibility, execution_id, "running", changes, expected)
    orm_sql, orm_params = (
        statements.compare_and_set_query(visibility, execution_id, "running", changes, expected)
        .get_compiler(connection.alias)
        .as_sql()
    )

    assert cached_sql == orm_sql
    assert [_comparable(p) for p in cached_params] == [_comparable(p) for p in orm_params]


def _comparable(param):
    # psycopg wraps JSON in a Jsonb object without equality: compare what it wraps.
    return getattr(param, "obj", param)


def test_audit_insert_sql_is_what_the_orm_writes():
    execution = ExecutionFactory()
    actor = UserFactory(username="auditor")
    execution_change_status(
        execution_id=execution.id,
        status="failed",
        channel=ChangeChannel.API,
        actor=actor,
        error_info={"why": "ü"},
        correlation_id="corr-1",
    )
    written = ExecutionStatusChange.objects.values().get()
    made_by_orm = ExecutionStatusChange.objects.create(
        execution=execution,
        previous_status="running",
        new_status="failed",
        error_info={"why": "ü"},
        actor=actor,
        actor_username="auditor",
        channel="api",
        correlation_id="corr-1",
        created_at=written["created_at"],
    )
    assert {**written, "id": None} == {
        **ExecutionStatusChange.objects.values().get(pk=made_by_orm.pk),
        "id": None,
    }


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_on_postgresql_the_change_and_its_audit_record_are_one_statement():
    execution = ExecutionFactory()
    with CaptureQueriesContext(connection) as queries:
        execution_change_status(execution_id=execution.id, status="failed", channel=ChangeChannel.API)
    [statement] = [query["sql"] for query in queries.captured_queries]
    assert statement.startswith("WITH changed AS (UPDATE") and "INSERT INTO" in statement
    assert ExecutionStatusChange.objects.filter(execution=execution, new_status="failed").count() == 1

    # The compare-and-set lost (the execution is failed now): the same statement writes no audit record.
    with pytest.raises(InvalidStatusTransition):
        execution_change_status(execution_id=execution.id, status="cancelled", channel=ChangeChannel.API)
    assert ExecutionStatusChange.objects.filter(execution=execution).count() == 1
