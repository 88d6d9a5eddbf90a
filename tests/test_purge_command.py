"""manage.py purge_executions: what it deletes and keeps, its archive, its output, its
errors; killed mid-run and run again; two runs at once."""

import gzip
import json
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from devtools.servers import REPO_ROOT, service_env
from executions.models import IDEMPOTENCY_KEYS_KEPT_FOR, Execution, ExecutionStatusChange, IdempotencyKey
from executions.retention.archive import GzipJsonLinesArchive, json_default, read_archive
from executions.retention.purge import executions_with_history
from executions.services import execution_change_status

from .factories import ExecutionFactory

COMMAND = "purge_executions"
NOW = timezone.now()


def purge(*args) -> str:
    out = StringIO()
    call_command(COMMAND, *args, stdout=out)
    return out.getvalue()


def purge_json(*args) -> dict:
    return json.loads(purge(*args, "--json"))


def finished(days_ago: float, status="completed", **fields) -> Execution:
    """An execution that finished `days_ago`, through the service (so with its audit record)."""
    execution = ExecutionFactory(created_at=NOW - timedelta(days=days_ago + 1), **fields)
    with mock.patch("django.utils.timezone.now", return_value=NOW - timedelta(days=days_ago)):
        execution_change_status(execution_id=execution.id, status=status, channel="api")
    return execution


def as_archived(records: list[dict]) -> list[dict]:
    """Records as the archive stores them (JSON), to compare with what it read back."""
    return json.loads(json.dumps(records, default=json_default))


def remaining(*executions) -> list[bool]:
    return [Execution.objects.filter(pk=e.pk).exists() for e in executions]


@pytest.mark.django_db
def test_deletes_finished_executions_older_than_the_cutoff_with_their_audit_records_only():
    old = [finished(100, status) for status in ("completed", "failed", "cancelled", "interrupted")]
    recent = finished(10)
    running_for_long = ExecutionFactory(created_at=NOW - timedelta(days=400))

    summary = purge_json("--finished-before", "90d")

    assert (summary["deleted"], summary["deleted_status_changes"], summary["batches"]) == (4, 4, 1)
    assert remaining(*old) == [False] * 4
    assert remaining(recent, running_for_long) == [True, True]
    assert not ExecutionStatusChange.objects.filter(execution_id__in=[e.pk for e in old]).exists()
    assert ExecutionStatusChange.objects.filter(execution=recent).count() == 1
    assert purge_json("--finished-before", "90d")["deleted"] == 0  # a second run finds nothing


@pytest.mark.django_db
def test_batches_oldest_first_and_limit():
    executions = [finished(200 - n) for n in range(5)]  # oldest first
    summary = purge_json("--finished-before", "90d", "--batch-size", "2", "--limit", "3")
    assert (summary["deleted"], summary["batches"]) == (3, 2)
    assert remaining(*executions) == [False, False, False, True, True]
    summary = purge_json("--finished-before", "90d", "--batch-size", "2")
    assert (summary["deleted"], summary["batches"]) == (2, 1)


@pytest.mark.django_db
def test_dry_run_counts_and_samples_escaping_control_characters_and_deletes_nothing():
    hostile = finished(120, name="evil\x1b[2J\nDeleted 0 execution(s)\u202e")
    finished(100)
    out = purge("--finished-before", "90d", "--dry-run")
    assert "Dry run: 2 execution(s) finished before" in out
    assert "Sample (oldest first, 2 of 2):" in out
    assert f"{hostile.id}  evil\\x1b[2J\\x0aDeleted 0 execution(s)\\u202e  completed" in out
    assert "\x1b" not in out and "\u202e" not in out
    assert len(out.splitlines()) == 4
    assert Execution.objects.count() == 2

    summary = purge_json("--finished-before", "90d", "--dry-run", "--limit", "1")
    assert summary["would_delete"] == 1
    assert summary["sample"] == [
        {
            "id": str(hostile.id),
            "name": hostile.name,
            "status": "completed",
            "finished_at": (NOW - timedelta(days=120)).isoformat(),
        }
    ]
    assert Execution.objects.count() == 2


def idempotency_key(execution, key: str, age: timedelta) -> IdempotencyKey:
    return IdempotencyKey.objects.create(
        user=execution.created_by,
        key=key,
        request_fingerprint="0" * 64,
        execution=execution,
        response_body={"id": str(execution.id)},
        # From the time of the test, not of the module's import (NOW): "kept" is a minute
        # short of expiring, and a suite that reaches this test a minute later would expire it.
        created_at=timezone.now() - age,
    )


@pytest.mark.django_db
def test_expired_idempotency_keys_go_and_keys_still_kept_stay():
    execution = ExecutionFactory()
    idempotency_key(execution, "expired", IDEMPOTENCY_KEYS_KEPT_FOR + timedelta(minutes=1))
    idempotency_key(execution, "kept", IDEMPOTENCY_KEYS_KEPT_FOR - timedelta(minutes=1))

    assert purge_json("--finished-before", "90d", "--dry-run")["would_delete_idempotency_keys"] == 1
    assert IdempotencyKey.objects.count() == 2
    summary = purge_json("--finished-before", "90d", "--batch-size", "1")

    assert summary["deleted_idempotency_keys"] == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["kept"]
    assert remaining(execution) == [True]


@pytest.mark.django_db
def test_a_purged_execution_takes_its_idempotency_key_with_it():
    old = finished(100)
    idempotency_key(old, "fresh", timedelta(minutes=1))

    summary = purge_json("--finished-before", "90d")

    assert (summary["deleted"], summary["deleted_idempotency_keys"]) == (1, 0)
    assert remaining(old) == [False]
    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db
def test_text_summary():
    finished(100)
    out = purge("--finished-before", "90d")
    assert out.startswith("Deleted 1 execution(s) and 1 audit record(s) in 1 batch(es), elapsed ")


@pytest.mark.django_db
def test_archive_holds_each_execution_with_its_history_and_a_rerun_appends(tmp_path):
    first = [finished(100 + n, status="failed", metadata={"n": n, "text": "é\x1b"}) for n in range(3)]
    expected_first = as_archived(executions_with_history([e.pk for e in first]))
    archive = tmp_path / "purged.jsonl.gz"

    summary = purge_json("--finished-before", "90d", "--archive", str(archive), "--batch-size", "2")
    assert (summary["deleted"], summary["batches"]) == (3, 2)
    records = list(read_archive(str(archive)))
    assert sorted(records, key=lambda r: r["id"]) == sorted(expected_first, key=lambda r: r["id"])
    record = records[0]
    assert record["status"] == "failed" and len(record["status_changes"]) == 1
    assert record["status_changes"][0]["previous_status"] == "running"
    assert (
        record["created_by_username"]
        == Execution._meta.get_field("created_by")
        .related_model.objects.get(pk=record["created_by_id"])
        .username
    )

    later = finished(95)
    expected_later = as_archived(executions_with_history([later.pk]))
    purge_json("--finished-before", "90d", "--archive", str(archive))
    assert list(read_archive(str(archive))) == records + expected_later
    with gzip.open(archive, "rt") as lines:  # any gzip reader: zcat, gzip.open
        assert len(lines.read().splitlines()) == 4


@pytest.mark.django_db
def test_an_archive_that_cannot_be_written_deletes_nothing(tmp_path):
    execution = finished(100)
    not_gzip = tmp_path / "notes.txt"
    not_gzip.write_text("my notes\n")
    with pytest.raises(CommandError, match="is not a gzip file"):
        purge("--finished-before", "90d", "--archive", str(not_gzip))
    assert not_gzip.read_text() == "my notes\n"
    with pytest.raises(CommandError, match="--archive: cannot open"):
        purge("--finished-before", "90d", "--archive", str(tmp_path / "missing-folder" / "a.gz"))
    assert remaining(execution) == [True]


@pytest.mark.django_db
def test_a_failure_mid_run_exits_non_zero_keeps_the_batches_before_and_rolls_back_its_own(tmp_path):
    executions = [finished(200 - n) for n in range(6)]
    real_append = GzipJsonLinesArchive.append
    calls = []

    def append_failing_the_second_time(self, records):
        calls.append(len(records))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_append(self, records)

    out = StringIO()
    with mock.patch.object(GzipJsonLinesArchive, "append", append_failing_the_second_time):
        with pytest.raises(CommandError, match=r"stopped after 2 deleted: OSError: \[Errno 28\] No space"):
            call_command(
                COMMAND,
                "--finished-before",
                "90d",
                "--archive",
                str(tmp_path / "a.gz"),
                "--batch-size",
                "2",
                "--json",
                stdout=out,
            )
    summary = json.loads(out.getvalue())
    assert (summary["deleted"], summary["batches"]) == (2, 1)
    assert "No space left on device" in summary["error"]
    assert remaining(*executions) == [False, False, True, True, True, True]
    assert len(list(read_archive(str(tmp_path / "a.gz")))) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--finished-before", "soon"], "--finished-before"),
        (["--finished-before", "-5d"], "--finished-before"),
        (["--finished-before", "90d", "--batch-size", "0"], "--batch-size"),
        (["--finished-before", "90d", "--limit", "0"], "--limit"),
        (["--finished-before", "90d", "--batch-size", "9223372036854775808"], "--batch-size"),
        (["--finished-before", "５d"], "--finished-before"),
        (["--finished-before", "90d", "--dry-run", "--archive", "x.gz"], "--archive"),
        ([], "finished-before"),
    ],
)
@pytest.mark.django_db
def test_bad_arguments_are_a_command_error(args, message):
    finished(100)
    with pytest.raises(CommandError, match=message):
        purge(*args)
    assert Execution.objects.count() == 1


def _database_url_of_this_test() -> str:
    """The test database as a DATABASE_URL, for a command in a process of its own."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    return (
        f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD'] or ''}@{settings_dict['HOST']}:"
        f"{settings_dict['PORT']}/{settings_dict['NAME']}"
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_killed_mid_run_and_rerun_every_execution_is_archived_exactly_as_it_was(tmp_path):
    """Batches of 10: the command is killed (SIGKILL) in its third batch's transaction, after
    archiving that batch and before deleting it. Two batches are gone; the third is still in
    the database (rolled back with the dead process) and in the archive. The rerun, on the
    same archive, purges the rest. Then, row by row: every purged execution is in the
    archive exactly as it was in the database, the third batch's twice and identically."""
    executions = [finished(200 - n / 10, metadata={"n": n}) for n in range(45)]  # oldest first
    ids = [e.pk for e in executions]
    before = {record["id"]: record for record in as_archived(executions_with_history(ids))}
    keep = finished(10)
    archive = tmp_path / "purged.jsonl.gz"
    marker = tmp_path / "paused"
    env = service_env(_database_url_of_this_test())
    args = [
        "purge_executions",
        "--finished-before",
        "90d",
        "--batch-size",
        "10",
        "--archive",
        str(archive),
        "--json",
    ]

    process = subprocess.Popen(
        [sys.executable, "tests/purge_paused.py", "3", str(marker), *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the purge never reached its third batch"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    connection.close()  # SQLite: see the file as the dead process left it

    assert remaining(*executions) == [False] * 20 + [True] * 25
    assert ExecutionStatusChange.objects.filter(execution_id__in=ids).count() == 25
    archived_at_kill = list(read_archive(str(archive)))
    assert [record["id"] for record in archived_at_kill] == [str(pk) for pk in ids[:30]]

    rerun = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert (summary["deleted"], summary["deleted_status_changes"]) == (25, 25)
    assert remaining(*executions) == [False] * 45
    assert remaining(keep) == [True]

    archived = list(read_archive(str(archive)))
    assert [record["id"] for record in archived] == [str(pk) for pk in ids[:30] + ids[20:]]
    for record in archived:
        assert record == before[record["id"]]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_share_the_work_and_delete_each_execution_once():
    executions = [finished(200 - n / 100) for n in range(300)]
    results, errors = [], []

    def run():
        try:
            results.append(purge_json("--finished-before", "90d", "--batch-size", "10"))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(result["deleted"] for result in results) == 300
    assert sum(result["deleted_status_changes"] for result in results) == 300
    assert remaining(*executions) == [False] * 300
    assert ExecutionStatusChange.objects.count() == 0


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_row_another_purge_holds_is_skipped_not_waited_for():
    import psycopg

    held, *others = [finished(200 - n) for n in range(5)]
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context"):
        params.pop(key, None)
    with psycopg.connect(**params) as other_host:
        other_host.execute("SELECT id FROM executions_execution WHERE id = %s FOR UPDATE", [held.pk])
        summary = purge_json("--finished-before", "90d", "--batch-size", "2")
        other_host.rollback()
    assert summary["deleted"] == 4
    assert remaining(held, *others) == [True, False, False, False, False]
