"""What many test files share to call the API and check its answers, in one place."""

from executions.models import ExecutionStatusChange

# The keys of every ErrorResponse body (the contract's error shape).
ERROR_RESPONSE_KEYS = {"detail", "error_code", "correlation_id", "timestamp"}


def execution_url(execution) -> str:
    """The execution's URL; `execution` is an Execution or any id text (also a bad one)."""
    return f"/api/v1/executions/{getattr(execution, 'pk', execution)}"


def patch_status(client, execution, status="cancelled", **headers):
    """PATCH the execution's status with a test client (APIClient or django.test.Client)."""
    return client.patch(
        execution_url(execution), {"status": status}, content_type="application/json", **headers
    )


def assert_unchanged(execution):
    """Still running, with no audit record: a refused request changed nothing."""
    execution.refresh_from_db()
    assert execution.status == "running"
    assert not ExecutionStatusChange.objects.filter(execution=execution).exists()


# An id no execution has, the same in every process (so that test ids do not differ between
# the quick loop's worker processes, as uuid4() in a parametrize list would make them).
UNKNOWN_EXECUTION_ID = "6f1c2b9e-4d3a-4e8f-9b7c-2a5d8e0f1c34"
