"""Concurrent requests against a real server (pytest-django's live server, one thread and one
database connection per request): every execution ends with exactly one status change and
exactly one audit record, and nobody is told `success: true` for a change that lost."""

import json
from datetime import timedelta
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from devtools.net import request
from executions.api.error_codes import ErrorCode
from executions.models import ChangeChannel, Execution, ExecutionStatus, ExecutionStatusChange

from ..concurrency import run_together
from ..factories import ExecutionFactory, UserFactory, api_key_for

# A system test (real servers, processes or a browser): outside the quick loop, `pytest -m "not slow"`.
pytestmark = pytest.mark.slow

TARGETS = [ExecutionStatus.CANCELLED, ExecutionStatus.FAILED, ExecutionStatus.COMPLETED]
CONCURRENCY = 16


@pytest.fixture
def server_port(live_server):
    return urlsplit(live_server.url).port


def patch_status(port, token, execution_id, status, request_id):
    return request(
        port,
        "PATCH",
        f"/api/v1/executions/{execution_id}",
        {"status": status},
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
    token = api_key_for(operator)
    for round_number in range(3):
        execution = ExecutionFactory(created_by=operator)
        targets = [TARGETS[(i + round_number) % 3] for i in range(CONCURRENCY)]
        request_ids = [f"race-{round_number}-{i}" for i in range(CONCURRENCY)]
        answers = run_together(
            CONCURRENCY,
            lambda i, execution=execution, targets=targets, request_ids=request_ids: patch_status(
                server_port, token, execution.id, targets[i], request_ids[i]
            ),
        )
        assert_exactly_one_winner(execution.id, answers, targets, request_ids)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_owner_and_operator_race_on_many_executions(server_port):
    """The owner (a worker) and an operator with manage_all_executions each send a different
    target for the same executions at the same time, 8 executions at once."""
    owner = UserFactory(username="worker")
    operator = UserFactory(username="operator", permissions=["manage_all_executions"])
    tokens = [api_key_for(owner), api_key_for(operator)]
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


def worker_patches(port, token, execution_ids, status):
    """One worker finishing its share of executions: [(execution id, answer)]."""
    return [
        (execution_id, patch_status(port, token, execution_id, status, "worker"))
        for execution_id in execution_ids
    ]


def assert_each_execution_changed_once(execution_ids, worker_answers, bulk_channel, bulk_status):
    """Each execution changed exactly once, by the workers (200 success: true) or by the bulk
    change (then the worker was told 400); returns how many the bulk change made."""
    changes = list(ExecutionStatusChange.objects.filter(execution_id__in=execution_ids))
    assert len(changes) == len(execution_ids)
    changes = {change.execution_id: change for change in changes}
    bulk_changed = 0
    for execution in Execution.objects.filter(pk__in=execution_ids):
        change = changes[execution.id]
        assert (change.previous_status, change.new_status) == (ExecutionStatus.RUNNING, execution.status)
        code, _, body = worker_answers[execution.id]
        if change.channel == ChangeChannel.API:
            assert execution.status == ExecutionStatus.COMPLETED
            assert code == 200 and body["success"] is True, body
        else:
            assert (change.channel, execution.status) == (bulk_channel, bulk_status)
            assert code == 400, body
            assert body["error_code"] == ErrorCode.INVALID_STATUS_TRANSITION
            bulk_changed += 1
    return bulk_changed


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_cleanup_command_against_worker_patches(server_port):
    """`cleanup_stale_executions` interrupts 60 stale executions in batches of 7 while their 8
    workers, late, PATCH them to completed: each execution changes once, the command's
    summary counts exactly the ones it changed, and a worker told `success: true` made the
    change it was told of."""
    owner = UserFactory(username="worker")
    token = api_key_for(owner)
    long_ago = timezone.now() - timedelta(days=1)
    ids = [ExecutionFactory(created_by=owner, created_at=long_ago).id for _ in range(60)]

    def act(index):
        if index == 0:
            out = StringIO()
            try:
                call_command(
                    "cleanup_stale_executions",
                    "--older-than",
                    "1h",
                    "--batch-size",
                    "7",
                    "--json",
                    stdout=out,
                )
            finally:
                connection.close()
            return json.loads(out.getvalue())
        return worker_patches(server_port, token, ids[index - 1 :: 8], ExecutionStatus.COMPLETED)

    results = run_together(9, act)
    summary = results[0]
    worker_answers = dict(answer for batch in results[1:] for answer in batch)
    interrupted = assert_each_execution_changed_once(
        ids, worker_answers, ChangeChannel.COMMAND, ExecutionStatus.INTERRUPTED
    )
    assert summary["changed"] == interrupted
    # Skipped: read as stale, finished by a worker before its batch was locked. Executions
    # finished before the command read their page are not stale any more, and not counted.
    assert summary["skipped"] <= len(ids) - interrupted


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_admin_bulk_action_against_worker_patches(server_port, settings):
    """An operator cancels 60 executions from the admin list (batches of 7) while 8 workers
    PATCH them to completed: each changes once, and the admin's message counts exactly the
    ones the operator cancelled and the ones skipped."""
    settings.EXECUTIONS_BULK_BATCH_SIZE = 7
    owner = UserFactory(username="worker")
    token = api_key_for(owner)
    operator = UserFactory(
        username="operator",
        is_staff=True,
        permissions=["view_execution", "change_execution", "manage_all_executions"],
    )
    ids = [ExecutionFactory(created_by=owner).id for _ in range(60)]

    def act(index):
        if index == 0:
            admin = Client()
            try:
                admin.force_login(operator)
                response = admin.post(
                    "/admin/executions/execution/",
                    {"action": "cancel_selected", "index": 0, ACTION_CHECKBOX_NAME: [str(pk) for pk in ids]},
                    follow=True,
                )
                return response.status_code, [str(message) for message in response.context["messages"]]
            finally:
                connection.close()
        return worker_patches(server_port, token, ids[index - 1 :: 8], ExecutionStatus.COMPLETED)

    results = run_together(9, act)
    admin_status, admin_messages = results[0]
    worker_answers = dict(answer for batch in results[1:] for answer in batch)
    # The workers' 400 says "from 'cancelled'": what the operator did.
    cancelled = assert_each_execution_changed_once(
        ids, worker_answers, ChangeChannel.ADMIN, ExecutionStatus.CANCELLED
    )
    assert admin_status == 200
    skipped = len(ids) - cancelled
    expected = f"Cancelled {cancelled} execution{'s' if cancelled != 1 else ''}"
    if skipped:
        expected += (
            f"; {skipped} skipped because {'it was' if skipped == 1 else 'they were'} no longer running"
        )
    assert admin_messages == [expected + "."]
    assert set(
        ExecutionStatusChange.objects.filter(channel=ChangeChannel.ADMIN).values_list(
            "actor_username", flat=True
        )
    ) <= {"operator"}


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_heartbeats_against_a_cancel(server_port):
    """Two executions, each with 7 heartbeats racing an operator's cancel: the cancel wins
    once; a heartbeat answered 200 came before it, every later one is told 409 with the
    status (the worker stops); no heartbeat revives the execution or writes after losing."""
    owner = UserFactory(username="worker")
    operator = UserFactory(username="operator", permissions=["manage_all_executions"])
    tokens = {"worker": api_key_for(owner), "operator": api_key_for(operator)}
    executions = [ExecutionFactory(created_by=owner) for _ in range(2)]

    def act(index):
        execution = executions[index // 8]
        if index % 8 == 0:
            return patch_status(
                server_port, tokens["operator"], execution.id, ExecutionStatus.CANCELLED, "cancel"
            )
        return request(
            server_port,
            "POST",
            f"/api/v1/executions/{execution.id}/heartbeat",
            None,
            {"Authorization": f"Token {tokens['worker']}"},
        )

    answers = run_together(16, act)
    for number, execution in enumerate(executions):
        cancel, *heartbeats = answers[8 * number : 8 * number + 8]
        assert cancel[0] == 200 and cancel[2]["success"] is True, cancel
        accepted = []
        for code, _, body in heartbeats:
            if code == 200:
                assert body["status"] == ExecutionStatus.RUNNING
                accepted.append(body["last_heartbeat_at"])
            else:
                assert code == 409, body
                assert body["error_code"] == ErrorCode.EXECUTION_NOT_RUNNING
                assert "cancelled" in body["detail"]
        execution.refresh_from_db()
        assert execution.status == ExecutionStatus.CANCELLED
        # What is stored is an accepted heartbeat's time: a refused one wrote nothing. (Not
        # always the latest: two accepted heartbeats commit in either order.)
        stored = execution.last_heartbeat_at
        if accepted:
            assert stored.isoformat().replace("+00:00", "Z") in accepted
        else:
            assert stored is None
        assert [
            (c.previous_status, c.new_status)
            for c in ExecutionStatusChange.objects.filter(execution=execution)
        ] == [(ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED)]
