"""executions/db/sqlite3: SQLite writers queue on a file lock instead of failing or polling."""

import fcntl
import inspect
import os
import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.sqlite3.base import DatabaseWrapper as DjangoSQLiteWrapper

from executions.models import Execution

from .factories import ExecutionFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: the writer queue is part of the SQLite backend")


def queue_is_free() -> bool:
    """Whether another process could take the writer queue's lock right now."""
    fd = os.open(f"{connection.settings_dict['NAME']}.writer-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_write_transaction_holds_the_queue_until_commit():
    execution = ExecutionFactory(name="a")
    with transaction.atomic():
        Execution.objects.filter(pk=execution.pk).update(name="b")
        assert not queue_is_free()
    assert queue_is_free()


def test_second_writer_waits_for_the_first_then_proceeds():
    execution = ExecutionFactory(name="a")
    first_holds_lock = threading.Event()
    order = []

    def first_writer():
        try:
            with transaction.atomic():
                Execution.objects.filter(pk=execution.pk).update(name="first")
                first_holds_lock.set()
                time.sleep(0.3)
                order.append("first commits")
        finally:
            connections.close_all()

    def second_writer():
        try:
            first_holds_lock.wait()
            with transaction.atomic():
                order.append("second begins")
                Execution.objects.filter(pk=execution.pk).update(name="second")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first_writer), threading.Thread(target=second_writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert order == ["first commits", "second begins"]
    execution.refresh_from_db()
    assert execution.name == "second"


def test_lock_is_released_when_a_transaction_rolls_back():
    execution = ExecutionFactory(name="a")
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            Execution.objects.filter(pk=execution.pk).update(name="rolled back")
            raise RuntimeError("boom")
    assert queue_is_free()

    done = threading.Event()

    def another_writer():
        try:
            with transaction.atomic():
                Execution.objects.filter(pk=execution.pk).update(name="after")
            done.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=another_writer)
    thread.start()
    thread.join(timeout=10)
    assert done.is_set()
    execution.refresh_from_db()
    assert execution.name == "after"


# executions/db/sqlite3/base.py overrides these private hooks of Django's SQLite backend. A Django
# upgrade that renames one, or stops calling it from the public method, would silently turn
# the queue off (or leave the lock held): this fails first, and says which hook moved.
PRIVATE_HOOKS_AND_THEIR_CALLERS = [
    ("_start_transaction_under_autocommit", "set_autocommit"),
    ("_commit", "commit"),
    ("_rollback", "rollback"),
    ("_close", "close"),
]


@pytest.mark.parametrize(("hook", "caller"), PRIVATE_HOOKS_AND_THEIR_CALLERS)
def test_django_still_has_the_private_hooks_the_writer_queue_overrides(hook, caller):
    assert callable(getattr(DjangoSQLiteWrapper, hook, None)), (
        f"Django's SQLite backend no longer has {hook}(), which executions/db/sqlite3/base.py overrides"
    )
    assert f"self.{hook}(" in inspect.getsource(getattr(BaseDatabaseWrapper, caller)), (
        f"Django's {caller}() no longer calls {hook}(), which executions/db/sqlite3/base.py overrides"
    )


def cancel(client, execution):
    return client.patch(f"/api/v1/executions/{execution.id}", {"status": "cancelled"}, format="json")


def test_a_queued_write_gives_up_after_the_busy_timeout_with_the_json_503(
    owner_client, running_execution, settings
):
    # Another process's writer holds the queue and does not let go.
    fd = os.open(f"{connection.settings_dict['NAME']}.writer-lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    connection.settings_dict["OPTIONS"]["timeout"] = 1  # SQLITE_BUSY_TIMEOUT=1
    answers = []
    try:
        # In a thread, so that a write that waits forever fails this test instead of hanging it.
        thread = threading.Thread(target=lambda: answers.append(cancel(owner_client, running_execution)))
        thread.start()
        thread.join(timeout=60)
        assert answers, "the write was still waiting for the queue after 60 s"
    finally:
        connection.settings_dict["OPTIONS"]["timeout"] = settings.DATABASES["default"]["OPTIONS"]["timeout"]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    response = answers[0]
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["error_code"] == "SERVICE_UNAVAILABLE"
    assert response["Retry-After"]
    running_execution.refresh_from_db()
    assert running_execution.status == "running"
    # Once the queue is free again, the same write goes through.
    assert cancel(owner_client, running_execution).json()["success"]
