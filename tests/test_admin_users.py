"""Deleting a user in the admin: the confirmation page costs the same whatever the user owns
(Django's lists every related object, loaded whole: 700 Idempotency-Keys with their stored
answers took a worker from 156 to 404 MB), and a user with API tokens can be deleted (Django
refused: the tokens' own admin deletes nothing)."""

import gc
import re
import tracemalloc

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import User
from django.test import Client

from executions.api.limits import MAX_JSON_OBJECT_BYTES
from executions.models import ApiToken, Execution, ExecutionStatusChange, IdempotencyKey
from executions.services import execution_change_status

from .factories import ExecutionFactory, UserFactory, api_key_for

KEYS = 300
TOKENS = 3
# A page's allocations at most, whatever the user owns (measured: under 0.5 MB); Django's own
# page took 133 MB here.
PAGE_BYTES_AT_MOST = 8 * 1024 * 1024


def dense_body(execution) -> dict:
    """A stored 201 as large as the API makes one, in the shape that costs Python the most:
    metadata of 16 KiB of empty objects (~20 times that as Python objects)."""
    items = (MAX_JSON_OBJECT_BYTES - len('{"a":[]}')) // 3
    return {"id": str(execution.pk), "name": execution.name, "metadata": {"a": [{}] * items}}


@pytest.fixture
def worker(db):
    """A worker's user: tokens, and KEYS executions created with an Idempotency-Key each."""
    user = UserFactory(username="retired-worker")
    for number in range(TOKENS):
        api_key_for(user, name=f"host-{number}")
    executions = Execution.objects.bulk_create(
        Execution(name=f"job-{number}", created_by=user) for number in range(KEYS)
    )
    IdempotencyKey.objects.bulk_create(
        IdempotencyKey(
            user=user,
            key=f"key-{number}",
            request_fingerprint="f",
            execution=execution,
            response_body=dense_body(execution),
        )
        for number, execution in enumerate(executions)
    )
    execution_change_status(execution_id=executions[0].pk, status="cancelled", channel="api", actor=user)
    return user


@pytest.fixture
def superuser_client(db):
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    # The pages' templates compiled and cached first, so that what is measured is the page.
    newcomer = UserFactory(username="newcomer")
    assert client.get(f"/admin/auth/user/{newcomer.pk}/delete/").status_code == 200
    assert client.get("/admin/auth/user/").status_code == 200
    return client


def with_peak_memory(call):
    """`call()`'s answer, and the most memory Python held at once while it ran (bytes)."""
    gc.collect()
    tracemalloc.start()
    try:
        response = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return response, peak


def summary(page) -> dict[str, int]:
    """The page's "Summary": how many of each kind the deletion takes along."""
    section = page.content.decode().split("<h2>Summary</h2>", 1)[1].split("</ul>", 1)[0]
    return {name: int(count) for name, count in re.findall(r"<li>([^:<]+): (\d+)</li>", section)}


def test_the_delete_page_of_a_user_with_many_keys_is_small_and_says_what_goes(superuser_client, worker):
    url = f"/admin/auth/user/{worker.pk}/delete/"

    page, peak = with_peak_memory(lambda: superuser_client.get(url))

    assert page.status_code == 200
    text = page.content.decode()
    assert "permission to delete" not in text and "Cannot delete" not in text
    assert summary(page) == {"Users": 1, "API tokens": TOKENS, "Idempotency keys": KEYS}
    assert "host-0" in text  # the tokens are named; of the keys, the first few
    assert len(page.content) < 64 * 1024
    assert peak < PAGE_BYTES_AT_MOST, f"{peak / 2**20:.1f} MB"


def test_a_user_with_tokens_and_keys_is_deleted_and_their_executions_stay(superuser_client, worker):
    executions = set(Execution.objects.filter(created_by=worker).values_list("pk", flat=True))

    answer, peak = with_peak_memory(
        lambda: superuser_client.post(f"/admin/auth/user/{worker.pk}/delete/", {"post": "yes"})
    )

    assert answer.status_code == 302, answer.content[:500]
    assert not User.objects.filter(pk=worker.pk).exists()
    assert not ApiToken.objects.filter(user_id=worker.pk).exists()
    assert not IdempotencyKey.objects.filter(user_id=worker.pk).exists()
    # The record of what ran stays: the executions, now without an owner, and their history,
    # which still names who acted.
    assert set(Execution.objects.filter(created_by=None).values_list("pk", flat=True)) == executions
    change = ExecutionStatusChange.objects.get()
    assert (change.actor, change.actor_username) == (None, "retired-worker")
    assert peak < PAGE_BYTES_AT_MOST, f"{peak / 2**20:.1f} MB"


def test_deleting_several_users_at_once_is_bounded_too(superuser_client, worker):
    other = UserFactory(username="other-worker")
    api_key_for(other)
    ExecutionFactory(created_by=other)
    selected = {"action": "delete_selected", ACTION_CHECKBOX_NAME: [worker.pk, other.pk]}

    page, peak = with_peak_memory(lambda: superuser_client.post("/admin/auth/user/", selected))

    assert page.status_code == 200
    assert summary(page) == {"Users": 2, "API tokens": TOKENS + 1, "Idempotency keys": KEYS}
    assert peak < PAGE_BYTES_AT_MOST, f"{peak / 2**20:.1f} MB"

    done = superuser_client.post("/admin/auth/user/", {**selected, "post": "yes"})
    assert done.status_code == 302
    assert not User.objects.filter(pk__in=[worker.pk, other.pk]).exists()
    assert not ApiToken.objects.exists()
