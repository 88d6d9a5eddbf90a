"""Concurrent requests against a real server (pytest-django's live server, one thread and one
database connection per request): every execution ends with exactly one status change and
exactly one audit record, and nobody is told `success: true` for a change that lost."""

import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from rest_framework.authtoken.models import Token

from executions.errors import ErrorCode
from executions.models import ChangeChannel, Execution, ExecutionStatus, ExecutionStatusChange
from executions.services import execution_change_status_bulk

from .factories import ExecutionFactory, UserFactory
from .servers import request

TARGETS = [ExecutionStatus.CANCELLED, ExecutionStatus.FAILED, ExecutionStatus.COMPLETED]
CONCURRENCY = 16


def token_for(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def run_together(count: int, action):
    """Call action(index) from `count` threads released at the same moment; the results in
    index order."""
    barrier = threading.Barrier(count)

    def run(index):
        barrier.wait()
        return action(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


@pytest.fixture
def server_port(live_server):
    return urlsplit(live_server.url).port


def patch_status(port, token, execution_id, status, request_id):
    return request(
        port, "PATCH", f"/api/v1/executions/{execution_id}", {"status": status},
        {"Authorization": f"Token {token}", "X-Request-ID": request_id},
    )


def assert_exactly_one_winner(execution_id, answers, targets, request_ids):
    """`answers[i]` is the (status, headers, body) of the request for `targets[i]`."""
    winners = [i for i, (code, _, body) in enumerate(answers) if code == 200 and body["success"]]
    assert len(winners) == 1, answers
    winner = winners[0]
    won_status = targets[winner]
    assert answers[winner][2]["previous_status"] == ExecutionStatus.RUNNING
    assert answers[winner][2]["current_status"] == won_status

    for index, (code, _, body) in enumerate(answers):
        if index == winner:
            continue
        if targets[index] == won_status:
            # Asked for what the winner did: told that it is already so, nothing changed.
            assert code == 200, body
            assert body["success"] is False
            assert body["previous_status"] == body["current_status"] == won_status
        else:
            assert code == 400, body
            assert body["error_code"] == ErrorCode.INVALID_STATUS_TRANSITION
            assert f"from '{won_status}'" in body["detail"]

    execution = Execution.objects.get(pk=execution_id)
    assert execution.status == won_status
    changes = list(ExecutionStatusChange.objects.filter(execution_id=execution_id))
    assert len(changes) == 1
    assert (changes[0].previous_status, changes[0].new_status) == (ExecutionStatus.RUNNING, won_status)
    assert changes[0].correlation_id == request_ids[winner]


@pytest.mark.django_db(transaction=True)
def test_concurrent_patches_with_different_targets_change_status_once(server_port):
    """Runs on SQLite too: there BEGIN IMMEDIATE serializes the writers."""
    operator = UserFactory(username="operator", is_superuser=True)
    token = token_for(operator)
    for round_number in range(3):
        execution = ExecutionFactory(created_by=operator)
        targets = [TARGETS[(i + round_number) % 3] for i in range(CONCURRENCY)]
        request_ids = [f"race-{round_number}-{i}" for i in range(CONCURRENCY)]
        answers = run_together(
            CONCURRENCY,
            lambda i: patch_status(server_port, token, execution.id, targets[i], request_ids[i]),
        )
        assert_exactly_one_winner(execution.id, answers, targets, request_ids)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_owner_and_operator_race_on_many_executions(server_port):
    """The owner (a worker) and an operator with manage_all_executions each send a different
    target for the same executions at the same time, 8 executions at once."""
    owner = UserFactory(username="worker")
    operator = UserFactory(username="operator", permissions=["manage_all_executions"])
    tokens = [token_for(owner), token_for(operator)]
    executions = [ExecutionFactory(created_by=owner) for _ in range(8)]
    # Request i: execution i // 2, sent by the worker (even i) or the operator (odd i).
    targets = [ExecutionStatus.COMPLETED if i % 2 == 0 else ExecutionStatus.CANCELLED for i in range(16)]
    request_ids = [f"pair-{i}" for i in range(16)]
    answers = run_together(
        16,
        lambda i: patch_status(server_port, tokens[i % 2], executions[i // 2].id, targets[i], request_ids[i]),
    )
    for number, execution in enumerate(executions):
        pair = slice(2 * number, 2 * number + 2)
        assert_exactly_one_winner(execution.id, answers[pair], targets[pair], request_ids[pair])


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_bulk_change_against_worker_patches(server_port):
    """The bulk service (what the admin action and the cleanup command call) moves 40
    executions to interrupted while their workers PATCH them to completed: each execution
    changes once, the bulk result counts exactly the ones it changed, and every worker told
    `success: true` really made the change."""
    owner = UserFactory(username="worker")
    token = token_for(owner)
    executions = [ExecutionFactory(created_by=owner) for _ in range(40)]
    ids = [execution.id for execution in executions]

    def act(index):
        if index == 0:
            from django.db import connection

            try:
                return execution_change_status_bulk(
                    execution_ids=ids, status=ExecutionStatus.INTERRUPTED,
                    channel=ChangeChannel.COMMAND, batch_size=7, correlation_id="bulk",
                )
            finally:
                connection.close()
        # Workers 1..8 each complete every eighth execution.
        return [
            (execution_id, patch_status(server_port, token, execution_id, ExecutionStatus.COMPLETED, "worker"))
            for execution_id in ids[index - 1 :: 8]
        ]

    results = run_together(9, act)
    bulk = results[0]
    worker_answers = {execution_id: answer for batch in results[1:] for execution_id, answer in batch}
    assert len(worker_answers) == len(ids)

    changes = list(ExecutionStatusChange.objects.filter(execution_id__in=ids))
    assert len(changes) == len(ids)
    changes = {change.execution_id: change for change in changes}
    for execution in Execution.objects.filter(pk__in=ids):
        change = changes[execution.id]
        assert (change.previous_status, change.new_status) == (ExecutionStatus.RUNNING, execution.status)
        code, _, body = worker_answers[execution.id]
        if execution.status == ExecutionStatus.COMPLETED:
            assert change.channel == ChangeChannel.API
            assert code == 200 and body["success"] is True
        else:
            assert execution.status == ExecutionStatus.INTERRUPTED
            assert change.channel == ChangeChannel.COMMAND
            assert code == 400, body
            assert body["error_code"] == ErrorCode.INVALID_STATUS_TRANSITION
    interrupted = sum(1 for change in changes.values() if change.new_status == ExecutionStatus.INTERRUPTED)
    assert bulk.changed == interrupted
    assert bulk.skipped == len(ids) - interrupted
