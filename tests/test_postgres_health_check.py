"""executions/db/postgresql: the health check of a persistent connection asks the server
nothing while the connection is idle and well, and still notices one the server ended."""

import time

import pytest
from django.db import connection, connections

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def second_connection():
    """A connection of its own, as a gunicorn worker holds one between requests."""
    wrapper = connections.create_connection("default")
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


def test_an_idle_healthy_connection_is_usable_without_a_query(second_connection, monkeypatch):
    def no_query(*args, **kwargs):
        raise AssertionError("the health check sent a query")

    monkeypatch.setattr(second_connection.connection, "cursor", no_query)
    monkeypatch.setattr(second_connection.connection, "execute", no_query)
    assert second_connection.is_usable() is True


def test_a_connection_the_server_ended_is_replaced_at_the_next_request(second_connection):
    with second_connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    old = second_connection.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert cursor.fetchone() == (True,)

    deadline = time.monotonic() + 10
    while second_connection.is_usable() and time.monotonic() < deadline:
        time.sleep(0.01)  # the server ends the backend asynchronously
    assert second_connection.is_usable() is False

    # What Django does at the start of a request, then the request's first query.
    second_connection.close_if_unusable_or_obsolete()
    with second_connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [new_pid] = cursor.fetchone()
    assert new_pid != pid
    assert second_connection.connection is not old
