"""executions/db/postgresql: the statements every request runs (the token lookup, the
compare-and-set with its audit record) are prepared once per connection; revocation still
takes effect at the next request, and DATABASE_PREPARED_STATEMENTS=false turns it off."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions.models import ExecutionStatusChange
from executions.tokens import tokens_revoke

from .api import execution_url, patch_status
from .factories import ExecutionFactory

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def prepared_statements() -> list[str]:
    """The statements prepared on this connection (the tests' requests run on it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements ORDER BY prepare_time")
        return [statement for (statement,) in cursor.fetchall()]


@pytest.fixture
def fresh_connection():
    """A new connection, with no statement prepared on it yet."""
    connection.close()
    yield
    connection.close()


def test_a_patch_and_a_heartbeat_run_prepared_statements(fresh_connection, owner, owner_client):
    executions = ExecutionFactory.create_batch(3, created_by=owner)

    for execution in executions[:2]:
        assert patch_status(owner_client, execution).status_code == 200
    assert owner_client.post(f"{execution_url(executions[2])}/heartbeat").status_code == 200

    statements = prepared_statements()
    assert any(' FROM "executions_apitoken" t' in statement for statement in statements)
    assert any(
        statement.startswith('WITH changed AS (UPDATE "executions_execution"') for statement in statements
    )
    assert any(
        statement.startswith('UPDATE "executions_execution" SET "last_heartbeat_at"')
        for statement in statements
    )
    # Prepared once: the second PATCH ran the first one's statement again.
    assert len(statements) == len(set(statements))
    assert ExecutionStatusChange.objects.filter(new_status="cancelled").count() == 2


def test_the_sql_log_shows_a_prepared_statement_with_its_values(fresh_connection, owner, owner_client):
    execution = ExecutionFactory(created_by=owner)

    with CaptureQueriesContext(connection) as queries:
        assert patch_status(owner_client, execution).status_code == 200

    assert len(queries) <= 3
    [change] = [query["sql"] for query in queries if query["sql"].startswith("WITH changed")]
    assert execution.pk.hex in change.replace("-", "") and "'cancelled'" in change


def test_a_revoked_token_is_refused_at_the_next_request_although_its_lookup_is_prepared(
    fresh_connection, owner, owner_client
):
    first, second = ExecutionFactory.create_batch(2, created_by=owner)
    assert patch_status(owner_client, first).status_code == 200

    tokens_revoke(owner.api_tokens.all())

    response = patch_status(owner_client, second)
    assert response.status_code == 401
    second.refresh_from_db()
    assert second.status == "running"


def test_prepared_statements_can_be_turned_off(fresh_connection, owner, owner_client, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "PREPARED_STATEMENTS", False)
    executions = ExecutionFactory.create_batch(2, created_by=owner)

    for execution in executions:
        assert patch_status(owner_client, execution).status_code == 200

    assert prepared_statements() == []
    assert ExecutionStatusChange.objects.filter(new_status="cancelled").count() == 2
