def test_owner_cancels_running_execution(owner_client, running_execution):
    response = owner_client.patch(
        f"/api/v1/executions/{running_execution.id}", {"status": "cancelled"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["current_status"] == "cancelled"
