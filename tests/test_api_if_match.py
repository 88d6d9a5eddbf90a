import threading

import pytest
from django.db import connection

from executions import statements
from executions.api.error_codes import ErrorCode
from executions.models import Execution, ExecutionStatusChange

from .api import ERROR_RESPONSE_KEYS, assert_unchanged, patch_status
from .factories import ExecutionFactory


def url(execution):
    return f"/api/v1/executions/{execution.id}"


def etag_of(client, execution):
    return client.get(url(execution))["ETag"]


def test_patch_with_the_current_etag_changes_the_execution(owner_client, running_execution):
    etag = etag_of(owner_client, running_execution)
    response = patch_status(owner_client, running_execution, HTTP_IF_MATCH=etag)
    assert response.status_code == 200
    assert response.json()["success"] is True
    # The change moved the ETag: the same If-Match now fails.
    assert etag_of(owner_client, running_execution) != etag
    assert patch_status(owner_client, running_execution, HTTP_IF_MATCH=etag).status_code == 412


def test_patch_with_an_etag_from_before_a_change_is_412_and_changes_nothing(owner_client, running_execution):
    etag = etag_of(owner_client, running_execution)
    owner_client.post(f"{url(running_execution)}/heartbeat")  # the execution changes meanwhile

    response = patch_status(owner_client, running_execution, HTTP_IF_MATCH=etag)

    assert response.status_code == 412
    body = response.json()
    assert body["error_code"] == ErrorCode.PRECONDITION_FAILED
    assert set(body) == ERROR_RESPONSE_KEYS
    assert_unchanged(running_execution)


def test_two_clients_with_the_same_etag_one_wins_the_other_gets_412(
    client_for, owner, manager, running_execution
):
    worker, operator = client_for(owner), client_for(manager)
    etag = etag_of(worker, running_execution)
    assert etag_of(operator, running_execution) == etag

    assert (
        operator.patch(
            url(running_execution), {"status": "cancelled"}, format="json", HTTP_IF_MATCH=etag
        ).status_code
        == 200
    )
    late = worker.patch(url(running_execution), {"status": "completed"}, format="json", HTTP_IF_MATCH=etag)

    assert late.status_code == 412
    running_execution.refresh_from_db()
    assert running_execution.status == "cancelled"
    assert ExecutionStatusChange.objects.filter(execution=running_execution).count() == 1


@pytest.mark.parametrize(
    "if_match",
    ['W/"{etag}"', "{etag}", '"garbage"', "garbage", '"99999999999999999999"', '"-1"', '"1", W/"{etag}"'],
)
def test_weak_or_unknown_etags_never_match(owner_client, running_execution, if_match):
    etag = etag_of(owner_client, running_execution).strip('"')
    response = patch_status(owner_client, running_execution, HTTP_IF_MATCH=if_match.format(etag=etag))
    assert response.status_code == 412
    assert response.json()["error_code"] == ErrorCode.PRECONDITION_FAILED
    assert_unchanged(running_execution)


@pytest.mark.parametrize("if_match", ["", '"{etag}', '"a" "b"', '"a",', ",", 'W/ "1"'])
def test_an_if_match_that_is_not_its_syntax_is_a_422_in_the_header(owner_client, running_execution, if_match):
    """Empty or broken: not a condition anyone can mean (the schema's pattern says
    so), so a 422 rather than the 412 of a tag that names another version."""
    etag = etag_of(owner_client, running_execution).strip('"')
    value = if_match.format(etag=etag)
    response = patch_status(owner_client, running_execution, HTTP_IF_MATCH=value)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "type": "if_match_invalid",
            "loc": ["header", "If-Match"],
            "msg": 'If-Match must be * or a list of entity tags ("..." or W/"...")',
            "input": value,
        }
    ]
    assert_unchanged(running_execution)


def test_a_list_of_etags_matches_if_one_does(owner_client, running_execution):
    etag = etag_of(owner_client, running_execution)
    response = patch_status(owner_client, running_execution, HTTP_IF_MATCH=f'"1", {etag}')
    assert response.status_code == 200


def test_star_matches_any_version(owner_client, running_execution):
    owner_client.post(f"{url(running_execution)}/heartbeat")
    assert patch_status(owner_client, running_execution, HTTP_IF_MATCH="*").status_code == 200


def test_without_if_match_the_patch_is_unconditional(owner_client, running_execution):
    owner_client.post(f"{url(running_execution)}/heartbeat")
    assert patch_status(owner_client, running_execution).json()["success"] is True


def test_if_match_on_an_invisible_execution_is_404_not_412(client_for, owner, other_user, running_execution):
    etag = etag_of(client_for(owner), running_execution)
    response = patch_status(client_for(other_user), running_execution, HTTP_IF_MATCH=etag)
    assert response.status_code == 404
    assert_unchanged(running_execution)


def test_matching_etag_on_a_finished_execution_gives_the_contract_answers(owner_client, running_execution):
    assert patch_status(owner_client, running_execution).status_code == 200
    etag = etag_of(owner_client, running_execution)
    same = patch_status(owner_client, running_execution, HTTP_IF_MATCH=etag)
    assert same.status_code == 200 and same.json()["success"] is False
    other = owner_client.patch(
        url(running_execution), {"status": "failed"}, format="json", HTTP_IF_MATCH=etag
    )
    assert other.status_code == 400
    assert other.json()["error_code"] == ErrorCode.INVALID_STATUS_TRANSITION


def test_if_match_does_not_bypass_body_validation(owner_client, running_execution):
    etag = etag_of(owner_client, running_execution)
    response = owner_client.patch(
        url(running_execution), {"status": "running"}, format="json", HTTP_IF_MATCH=etag
    )
    assert response.status_code == 422


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_conditional_patches_exactly_one_wins(client_for, owner):
    execution = ExecutionFactory(created_by=owner)
    clients = [client_for(owner) for _ in range(8)]
    etag = etag_of(clients[0], execution)
    barrier = threading.Barrier(len(clients))
    statuses = []

    def patch(client, target):
        try:
            barrier.wait()
            response = client.patch(url(execution), {"status": target}, format="json", HTTP_IF_MATCH=etag)
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=patch, args=(client, ["cancelled", "failed", "completed"][i % 3]))
        for i, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] + [412] * (len(clients) - 1)
    assert ExecutionStatusChange.objects.filter(execution=execution).count() == 1
    assert Execution.objects.get(pk=execution.pk).status != "running"


# Stale versions, as ETags: never the execution's current one.
def stale_tags(count: int) -> list[str]:
    return [f'"{946684800000000 + number}"' for number in range(count)]


def test_if_match_lists_of_every_length_leave_the_statement_cache_small(owner_client, running_execution):
    """The SQL of a PATCH is built once per shape and kept; the number of If-Match tags is part
    of the shape, and a client chooses it: 2,320 PATCHes with 1 to 1,160 tags once grew a
    worker by 45 MB for good. Lengths share shapes by powers of two (1, 2, 4, ... 256 for up
    to 200 tags: 9), so the cache stays small and the shapes ordinary PATCHes use stay in it."""
    one_statement = connection.vendor == "postgresql"  # the change and its audit record
    cached = statements.change_and_audit_sql if one_statement else statements.compare_and_set_sql
    cached.cache_clear()

    for count in range(1, 201):
        response = patch_status(owner_client, running_execution, HTTP_IF_MATCH=", ".join(stale_tags(count)))
        assert response.status_code == 412, (count, response.content)

    assert cached.cache_info().currsize == 9
    assert_unchanged(running_execution)
    # Padding a list changes nothing it matches: the current version among 150 others wins.
    current = etag_of(owner_client, running_execution)
    tags = ", ".join([*stale_tags(75), current, *stale_tags(150)[75:]])
    response = patch_status(owner_client, running_execution, HTTP_IF_MATCH=tags)
    assert (response.status_code, response.json()["success"]) == (200, True)
    assert cached.cache_info().currsize == 9  # 151 tags: the shape of 256, made above
