from datetime import timedelta

import pytest
from django.utils import timezone

from executions.models import ChangeChannel, Execution, ExecutionStatus, ExecutionStatusChange
from executions.services import execution_change_status_bulk

from .api import UNKNOWN_EXECUTION_ID
from .factories import ExecutionFactory


def history_url(execution_id):
    return f"/api/v1/executions/{execution_id}/history"


def test_history_of_a_running_execution_is_empty(owner_client, running_execution):
    response = owner_client.get(history_url(running_execution.id))
    assert response.status_code == 200
    assert response.json() == {"execution_id": str(running_execution.id), "results": []}


def test_history_records_who_changed_what_through_which_channel(owner_client, running_execution):
    owner_client.patch(
        f"/api/v1/executions/{running_execution.id}",
        {"status": "failed", "error_info": {"reason": "disk full"}},
        format="json",
        HTTP_X_REQUEST_ID="req-42",
    )

    response = owner_client.get(history_url(running_execution.id))

    assert response.status_code == 200
    [change] = response.json()["results"]
    assert change["previous_status"] == "running"
    assert change["new_status"] == "failed"
    assert change["error_info"] == {"reason": "disk full"}
    assert change["actor"] == "owner"
    assert change["channel"] == "api"
    assert change["correlation_id"] == "req-42"
    assert (
        change["created_at"]
        == owner_client.get(f"/api/v1/executions/{running_execution.id}").json()["finished_at"]
    )


def test_history_of_a_system_change_has_no_actor(owner_client, running_execution):
    execution_change_status_bulk(
        executions=Execution.objects.filter(pk=running_execution.id),
        status=ExecutionStatus.INTERRUPTED,
        channel=ChangeChannel.COMMAND,
        error_info={"reason": "stale"},
    )
    [change] = owner_client.get(history_url(running_execution.id)).json()["results"]
    assert change["actor"] is None
    assert change["channel"] == "command"
    assert change["new_status"] == "interrupted"


def test_history_is_oldest_first(owner_client, running_execution):
    now = timezone.now()
    # Records as an older version of the rules could have left them; the API shows them
    # in the order they happened, whatever order they were written in.
    for minutes, (previous, new) in [(1, ("running", "failed")), (0, ("running", "cancelled"))]:
        ExecutionStatusChange.objects.create(
            execution=running_execution,
            previous_status=previous,
            new_status=new,
            channel=ChangeChannel.ADMIN,
            created_at=now - timedelta(minutes=minutes),
        )
    results = owner_client.get(history_url(running_execution.id)).json()["results"]
    assert [change["new_status"] for change in results] == ["failed", "cancelled"]


@pytest.mark.parametrize("execution_id", ["not-a-uuid", UNKNOWN_EXECUTION_ID])
def test_history_of_unknown_ids_is_404(owner_client, execution_id):
    response = owner_client.get(history_url(execution_id))
    assert response.status_code == 404
    assert response.json()["error_code"] == "EXECUTION_NOT_FOUND"


def test_history_of_someone_elses_execution_is_404_unless_manager(client_for, owner, other_user, manager):
    execution = ExecutionFactory(created_by=owner)
    client_for(owner).patch(f"/api/v1/executions/{execution.id}", {"status": "cancelled"}, format="json")

    assert client_for(other_user).get(history_url(execution.id)).status_code == 404
    [change] = client_for(manager).get(history_url(execution.id)).json()["results"]
    assert change["actor"] == "owner"


def test_history_needs_authentication(client, running_execution):
    assert client.get(history_url(running_execution.id)).status_code == 401
