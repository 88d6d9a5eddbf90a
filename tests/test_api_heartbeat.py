from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from executions.api.error_codes import ErrorCode
from executions.models import Execution, ExecutionStatus, ExecutionStatusChange

from .api import UNKNOWN_EXECUTION_ID
from .factories import ExecutionFactory


def heartbeat_url(execution_id):
    return f"/api/v1/executions/{execution_id}/heartbeat"


def test_heartbeat_on_running_execution_records_a_sign_of_life(owner_client, running_execution):
    before = timezone.now()
    response = owner_client.post(heartbeat_url(running_execution.id))

    assert response.status_code == 200
    body = response.json()
    assert body["execution_id"] == str(running_execution.id)
    assert body["status"] == "running"
    running_execution.refresh_from_db()
    assert running_execution.last_heartbeat_at >= before
    assert running_execution.updated_at == running_execution.last_heartbeat_at
    assert running_execution.status == "running"
    # What the heartbeat answers is what a reader then sees, ETag included.
    read = owner_client.get(f"/api/v1/executions/{running_execution.id}")
    assert read.json()["last_heartbeat_at"] == body["last_heartbeat_at"]
    assert read["ETag"] == response["ETag"]
    assert not ExecutionStatusChange.objects.exists()


@override_settings(EXECUTIONS_STALE_AFTER=timedelta(minutes=30))
def test_heartbeat_makes_a_stale_execution_fresh(owner_client, owner):
    execution = ExecutionFactory(created_by=owner, created_at=timezone.now() - timedelta(hours=2))
    stale = "/api/v1/executions?stale=true"
    assert [item["id"] for item in owner_client.get(stale).json()["results"]] == [str(execution.id)]

    owner_client.post(heartbeat_url(execution.id))

    assert owner_client.get(stale).json()["results"] == []


@pytest.mark.parametrize(
    "status",
    [
        ExecutionStatus.CANCELLED,
        ExecutionStatus.FAILED,
        ExecutionStatus.COMPLETED,
        ExecutionStatus.INTERRUPTED,
    ],
)
def test_heartbeat_on_a_stopped_execution_is_409_with_its_status(owner_client, owner, status):
    execution = ExecutionFactory(created_by=owner, status=status)
    before = Execution.objects.values().get(pk=execution.pk)

    response = owner_client.post(heartbeat_url(execution.id))

    assert response.status_code == 409
    body = response.json()
    assert body["error_code"] == ErrorCode.EXECUTION_NOT_RUNNING
    assert body["current_status"] == status
    assert {"detail", "correlation_id", "timestamp"} <= set(body)
    assert Execution.objects.values().get(pk=execution.pk) == before


def test_heartbeat_after_an_operator_cancels_tells_the_worker_to_stop(
    client_for, owner, manager, running_execution
):
    worker, operator = client_for(owner), client_for(manager)
    assert worker.post(heartbeat_url(running_execution.id)).status_code == 200
    assert (
        operator.patch(
            f"/api/v1/executions/{running_execution.id}", {"status": "cancelled"}, format="json"
        ).status_code
        == 200
    )

    response = worker.post(heartbeat_url(running_execution.id))
    assert response.status_code == 409
    assert response.json()["current_status"] == "cancelled"


@pytest.mark.parametrize("execution_id", ["not-a-uuid", UNKNOWN_EXECUTION_ID])
def test_heartbeat_on_unknown_ids_is_404(owner_client, execution_id):
    response = owner_client.post(heartbeat_url(execution_id))
    assert response.status_code == 404
    assert response.json()["error_code"] == ErrorCode.EXECUTION_NOT_FOUND


def test_heartbeat_on_someone_elses_execution_is_404_and_changes_nothing(
    client_for, other_user, running_execution
):
    response = client_for(other_user).post(heartbeat_url(running_execution.id))
    assert response.status_code == 404
    running_execution.refresh_from_db()
    assert running_execution.last_heartbeat_at is None


def test_heartbeat_on_someone_elses_stopped_execution_does_not_reveal_its_status(
    client_for, other_user, owner
):
    execution = ExecutionFactory(created_by=owner, status=ExecutionStatus.CANCELLED)
    response = client_for(other_user).post(heartbeat_url(execution.id))
    assert response.status_code == 404
    assert "current_status" not in response.json()


def test_heartbeat_needs_authentication(client, running_execution):
    assert client.post(heartbeat_url(running_execution.id)).status_code == 401


def test_heartbeat_ignores_a_body(owner_client, running_execution):
    # The operation takes no body; one sent anyway is not parsed, so it cannot fail it.
    response = owner_client.generic(
        "POST", heartbeat_url(running_execution.id), b"{not json", content_type="application/json"
    )
    assert response.status_code == 200


def test_heartbeat_is_post_only(owner_client, running_execution):
    response = owner_client.get(heartbeat_url(running_execution.id))
    assert response.status_code == 405
    assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_heartbeats_racing_a_cancel_never_revive_it(client_for, owner, manager):
    import threading

    from django.db import connection

    execution = ExecutionFactory(created_by=owner)
    workers = [client_for(owner) for _ in range(6)]
    operator = client_for(manager)
    barrier = threading.Barrier(len(workers) + 1)
    answers = []

    def run(client, send):
        try:
            barrier.wait()
            answers.append(send(client).status_code)
        finally:
            connection.close()

    heartbeat = lambda client: client.post(heartbeat_url(execution.id))  # noqa: E731
    cancel = lambda client: client.patch(  # noqa: E731
        f"/api/v1/executions/{execution.id}", {"status": "cancelled"}, format="json"
    )
    threads = [threading.Thread(target=run, args=(worker, heartbeat)) for worker in workers]
    threads.append(threading.Thread(target=run, args=(operator, cancel)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert set(answers) <= {200, 409} and len(answers) == len(threads)
    execution.refresh_from_db()
    assert execution.status == "cancelled"
    assert ExecutionStatusChange.objects.filter(execution=execution).count() == 1
    assert client_for(owner).post(heartbeat_url(execution.id)).status_code == 409
