"""manage.py purge_executions: what it deletes and keeps, its archive, its output, its
errors; killed mid-run and run again; two runs at once."""

import contextlib
import errno
import gzip
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from devtools.servers import REPO_ROOT, service_env
from executions.models import IDEMPOTENCY_KEYS_KEPT_FOR, Execution, ExecutionStatusChange, IdempotencyKey
from executions.retention.archive import GzipJsonLinesArchive, read_archive
from executions.retention.purge import executions_with_history

from .factories import ExecutionFactory
from .purging import (
    COMMAND,
    NOW,
    archived_records,
    as_archived,
    database_url_of_this_test,
    finished,
    purge,
    purge_json,
    remaining,
    zcat_records,
)
from .test_sqlite_writer_queue import queue_is_free


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
        # Now, not NOW (the module's import): the purge compares with its own clock, and a
        # suite that takes over a minute to get here made a key kept for 1 minute more expired.
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
    records = archived_records(archive)
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
    assert archived_records(archive) == records + expected_later
    with gzip.open(archive, "rt") as lines:  # any gzip reader: zcat, gzip.open
        assert len(lines.read().splitlines()) == 4


@pytest.mark.django_db
def test_each_line_is_the_execution_with_its_history_as_the_orm_reads_it(tmp_path):
    """The database writes the lines (lines.py); the ORM's reading of the same rows
    (executions_with_history) is what they must hold, value for value, whatever the rows hold."""
    hostile = {
        "text": 'é 😀 \x1b[2J \n\r\t\x0b\x0c\x1c "quoted" \\ \u2028 \u2029 \x85 \u202e',
        '"key"\n': [
            1,
            -2,
            1.5,
            2**60,
            -(2**62),
            1e-7,
            True,
            False,
            None,
            {},
            [],
            {"deep": [[{"a": [0.25]}]]},
        ],
    }
    with_everything = finished(
        120, status="failed", metadata=hostile, error_info={"exit_code": 3, "tail": "ü\n"}
    )
    ownerless = finished(110, created_by=None, metadata={})
    whole_second = finished(100, status="cancelled")
    Execution.objects.filter(pk=whole_second.pk).update(
        created_at=datetime(2026, 1, 1, 10, 0, tzinfo=UTC),
        last_heartbeat_at=datetime(2026, 1, 1, 10, 5, 0, 1, UTC),
    )
    # Audit records as older versions may have left them: several, two at the same moment.
    at = NOW - timedelta(days=130)
    for new_status, when in (("failed", at), ("cancelled", at), ("running", at - timedelta(seconds=1))):
        ExecutionStatusChange.objects.create(
            execution=whole_second,
            previous_status="running",
            new_status=new_status,
            error_info={"why": "é\x00"[:1], "n": 1.0},
            actor_username="ö\n",
            channel="admin",
            correlation_id="c-1",
            created_at=when,
        )
    ids = [with_everything.pk, ownerless.pk, whole_second.pk]
    expected = {record["id"]: record for record in as_archived(executions_with_history(ids))}
    archive = tmp_path / "purged.jsonl.gz"

    assert purge_json("--finished-before", "90d", "--archive", str(archive))["deleted"] == 3

    records = zcat_records(archive)
    assert records == archived_records(archive)
    assert {record["id"]: record for record in records} == expected
    assert len(records) == 3
    written = {record["id"]: record for record in read_archive(str(archive))}[str(whole_second.pk)]
    assert written["created_at"] == "2026-01-01T10:00:00+00:00"  # ISO 8601, UTC, no fraction at zero
    assert written["last_heartbeat_at"] == "2026-01-01T10:05:00.000001+00:00"
    changes = [change["new_status"] for change in written["status_changes"]]
    assert changes == ["running", "failed", "cancelled", "cancelled"]
    assert expected[str(ownerless.pk)]["created_by_username"] is None


@pytest.mark.django_db
def test_json_written_around_the_service_with_line_breaks_still_makes_one_line(tmp_path):
    """JSON text the service never writes, put in by SQL: line breaks as whitespace (both
    databases take them there). The execution is still one line, with its value."""
    spaced = finished(120)
    table = connection.ops.quote_name(Execution._meta.db_table)
    cast = "::json" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET metadata = %s{cast} WHERE id = %s",
            ['{"a":\r\n  [1,\n 2]}', Execution._meta.pk.get_db_prep_value(spaced.pk, connection)],
        )
    archive = tmp_path / "purged.jsonl.gz"

    assert purge_json("--finished-before", "90d", "--archive", str(archive))["deleted"] == 1

    [record] = zcat_records(archive)
    assert record["metadata"] == {"a": [1, 2]}


@pytest.mark.parametrize(
    "make_path, message",
    [
        (lambda tmp: "", "the path is empty"),
        (lambda tmp: "  ", "the path is empty"),
        (lambda tmp: str(tmp), "is a directory"),
        (lambda tmp: f"{tmp}/new-folder/", "names a folder, not a file"),
        (lambda tmp: f"{tmp}/missing-folder/a.gz", "no folder"),
        (lambda tmp: f"{tmp}/notes.txt/a.gz", "Not a directory"),
        (lambda tmp: "/dev/null", "is not a regular file"),
        (lambda tmp: f"{tmp}/notes.txt", "is not a gzip file"),
    ],
    ids=[
        "empty",
        "blank",
        "directory",
        "folder-name",
        "missing-folder",
        "under-a-file",
        "device",
        "not-gzip",
    ],
)
@pytest.mark.django_db
def test_an_archive_path_that_cannot_hold_the_archive_is_refused_before_anything_is_deleted(
    tmp_path, make_path, message
):
    execution = finished(100)
    (tmp_path / "notes.txt").write_text("my notes\n")
    before = sorted(path.name for path in tmp_path.rglob("*"))
    path = make_path(tmp_path)

    with pytest.raises(CommandError, match=f"^--archive: .*{message}") as refused:
        purge("--finished-before", "90d", "--archive", path)

    assert "\n" not in str(refused.value)
    assert remaining(execution) == [True]
    assert sorted(path.name for path in tmp_path.rglob("*")) == before
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"


@pytest.mark.django_db
def test_an_empty_archive_path_with_dry_run_is_refused_too():
    with pytest.raises(CommandError, match="--archive has nothing to write with --dry-run"):
        purge("--finished-before", "90d", "--dry-run", "--archive", "")


@pytest.mark.django_db
def test_an_archive_another_purge_is_writing_is_refused(tmp_path):
    import fcntl

    execution = finished(100)
    archive = tmp_path / "purged.jsonl.gz"
    archive.write_bytes(gzip.compress(b'{"id": "x"}\n'))
    before = archive.read_bytes()
    with open(archive, "rb") as other_purge:
        fcntl.flock(other_purge, fcntl.LOCK_EX)
        with pytest.raises(CommandError, match="^--archive: another purge is writing to"):
            purge("--finished-before", "90d", "--archive", str(archive))
    assert archive.read_bytes() == before
    assert remaining(execution) == [True]


@pytest.mark.django_db
def test_an_archive_that_cannot_be_read_is_refused_before_anything_is_deleted(tmp_path):
    execution = finished(100)
    archive = tmp_path / "purged.jsonl.gz"
    archive.write_bytes(gzip.compress(b'{"id": "x"}\n'))
    before = archive.read_bytes()
    with mock.patch("os.pread", side_effect=OSError(errno.EIO, os.strerror(errno.EIO))):
        with pytest.raises(CommandError, match="^--archive: cannot check .*: Input/output error$"):
            purge("--finished-before", "90d", "--archive", str(archive))
    assert archive.read_bytes() == before
    assert remaining(execution) == [True]


@pytest.mark.django_db
def test_a_purge_with_nothing_to_purge_leaves_no_file_and_an_archive_as_it_was(tmp_path):
    finished(10)  # too recent
    new = tmp_path / "new.jsonl.gz"
    assert purge_json("--finished-before", "90d", "--archive", str(new))["deleted"] == 0
    assert not new.exists()

    left_empty = tmp_path / "left-empty.jsonl.gz"  # as a run killed before its first write leaves it
    left_empty.touch()
    purge_json("--finished-before", "90d", "--archive", str(left_empty))
    assert not left_empty.exists()

    existing = tmp_path / "existing.jsonl.gz"
    existing.write_bytes(gzip.compress(b'{"id": "x"}\n'))
    before = existing.read_bytes()
    purge_json("--finished-before", "90d", "--archive", str(existing))
    assert existing.read_bytes() == before


@pytest.mark.django_db
def test_a_rerun_cuts_off_what_an_interrupted_run_left_and_says_so(tmp_path):
    first = finished(120)
    archive = tmp_path / "purged.jsonl.gz"
    purge_json("--finished-before", "90d", "--archive", str(archive))
    complete = archive.read_bytes()
    interrupted = gzip.compress(b'{"id": "never deleted"}\n' * 50)[:-5]  # killed before its trailer
    archive.write_bytes(complete + interrupted)
    second = finished(110)

    out = purge("--finished-before", "90d", "--archive", str(archive))

    assert out.splitlines()[0] == (
        f"Cut off {len(interrupted)} byte(s) an interrupted run left at the end of {archive} "
        "(an incomplete gzip member: its batch was not deleted)."
    )
    assert out.splitlines()[1].startswith("Deleted 1 execution(s)")
    assert archive.read_bytes().startswith(complete)
    assert [record["id"] for record in zcat_records(archive)] == [str(first.pk), str(second.pk)]


@pytest.mark.django_db
def test_a_file_damaged_before_its_end_is_refused_unchanged_and_the_docs_say_how_to_read_it(tmp_path):
    """As an earlier version left a file after a full disk and a rerun: a complete member, an
    incomplete one, complete ones after it."""
    execution = finished(100)
    first, broken, last = (gzip.compress(f'{{"n": {n}}}\n'.encode() * 100) for n in range(3))
    broken = broken[: len(broken) // 2]
    archive = tmp_path / "purged.jsonl.gz"
    archive.write_bytes(first + broken + last)
    start, end = len(first), len(first) + len(broken)

    with pytest.raises(
        CommandError, match=f"^--archive: .* is damaged: bytes {start} to {end} are not a complete"
    ):
        purge("--finished-before", "90d", "--archive", str(archive))
    assert archive.read_bytes() == first + broken + last
    assert remaining(execution) == [True]

    # docs/operations.md: the members before and after the damage, as a file zcat reads.
    repaired = tmp_path / "repaired.jsonl.gz"
    subprocess.run(
        f"head -c {start} {archive} > {repaired} && tail -c +{end + 1} {archive} >> {repaired}",
        shell=True,
        check=True,
    )
    assert [record["n"] for record in zcat_records(repaired)] == [0] * 100 + [2] * 100


class FullDisk:
    """os.pwrite as on a filesystem with room for `room` bytes of a file: a write reaching past
    that is cut short, and one starting there fails with ENOSPC (truncating makes room)."""

    def __init__(self, room: int):
        self.room = room
        self.real_pwrite = os.pwrite

    def __call__(self, fd, data, offset):
        space = self.room - offset
        if space <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real_pwrite(fd, bytes(data[:space]), offset)


def failing(call, error: int, *, from_call: int = 1):
    """`call` (os.fsync, os.ftruncate) failing with `error` from its `from_call`th call on a
    regular file (the archive) on."""
    calls = []

    def fail(fd, *args):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls.append(fd)
            if len(calls) >= from_call:
                raise OSError(error, os.strerror(error))
        return call(fd, *args)

    return fail


def purge_failing(archive, *patches) -> tuple[dict, str]:
    """A purge (batches of 20) with `patches` applied: its JSON summary, and its error."""
    out = StringIO()
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        with pytest.raises(CommandError) as failed:
            call_command(
                COMMAND,
                "--finished-before",
                "90d",
                "--archive",
                str(archive),
                "--batch-size",
                "20",
                "--json",
                stdout=out,
            )
    return json.loads(out.getvalue()), str(failed.value)


@pytest.mark.parametrize(
    "failure",
    [
        "disk full in the second member",
        "disk full in the first member",
        "fsync fails",
        "cutting back fails too",
    ],
)
@pytest.mark.django_db
def test_a_full_disk_or_an_io_error_leaves_a_readable_archive_and_deletes_only_what_it_holds(
    tmp_path, failure
):
    """The batch being written when the disk fills (or its fsync fails) is cut off the file
    at once and not deleted: right after the failure, the file is whole members holding
    exactly what was deleted; after room is made, a rerun archives the rest, each once."""
    # Incompressible metadata: a member of 20 takes some 7 KB.
    executions = [finished(200 - n, metadata={"noise": os.urandom(150).hex()}) for n in range(60)]
    before = {
        record["id"]: record for record in as_archived(executions_with_history([e.pk for e in executions]))
    }
    archive = tmp_path / "purged.jsonl.gz"
    fsync, ftruncate = os.fsync, os.ftruncate
    patches = {
        "disk full in the second member": [mock.patch("os.pwrite", FullDisk(room=10_000))],
        "disk full in the first member": [mock.patch("os.pwrite", FullDisk(room=3_000))],
        "fsync fails": [mock.patch("os.fsync", failing(fsync, errno.EIO, from_call=2))],
        "cutting back fails too": [
            mock.patch("os.pwrite", FullDisk(room=10_000)),
            mock.patch("os.ftruncate", failing(ftruncate, errno.EIO)),
        ],
    }[failure]

    summary, error = purge_failing(archive, *patches)

    reason = "Input/output error" if failure == "fsync fails" else "No space left on device"
    assert reason in error and reason in summary["error"]
    deleted = {str(e.pk) for e in executions if not Execution.objects.filter(pk=e.pk).exists()}
    assert summary["deleted"] == len(deleted) == (0 if failure == "disk full in the first member" else 20)
    if failure == "cutting back fails too":
        assert archive.stat().st_size == 10_000  # the incomplete member is still there...
    elif deleted:
        assert {record["id"] for record in zcat_records(archive)} == deleted  # ...here it is cut off
    else:
        assert not archive.exists()

    rerun = purge_json("--finished-before", "90d", "--archive", str(archive), "--batch-size", "20")

    assert rerun["deleted"] == 60 - len(deleted)
    assert ("archive_cut_bytes" in rerun) == (failure == "cutting back fails too")
    records = zcat_records(archive)
    assert len(records) == 60
    assert {record["id"]: record for record in records} == before
    assert not Execution.objects.filter(pk__in=[e.pk for e in executions]).exists()


@pytest.mark.django_db
def test_each_batch_is_durable_in_the_archive_before_its_rows_are_deleted(tmp_path):
    """fsync of the file (and, for the new file, of its folder) before a batch's DELETEs."""
    for n in range(4):
        finished(200 - n)
    events = []
    real_fsync = os.fsync

    def fsync(fd):
        events.append("fsync file" if stat.S_ISREG(os.fstat(fd).st_mode) else "fsync folder")
        real_fsync(fd)

    def record_deletes(execute, sql, params, many, context):
        if "DELETE FROM" in sql and events[-1:] != ["delete"]:  # (on PostgreSQL inside a WITH)
            events.append("delete")
        return execute(sql, params, many, context)

    with mock.patch("os.fsync", fsync), connection.execute_wrapper(record_deletes):
        purge_json("--finished-before", "90d", "--archive", str(tmp_path / "a.gz"), "--batch-size", "2")

    # (The last DELETE: the expired Idempotency-Keys, after the batches.)
    assert events == ["fsync file", "fsync folder", "delete", "fsync file", "delete"]


@pytest.mark.django_db(transaction=True)
def test_sqlite_other_writers_go_on_while_a_batch_is_archived(tmp_path):
    """On SQLite a batch is read and archived before the write lock is taken: while the
    archive is written, another process could write; while the batch is deleted, not."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: PostgreSQL locks rows, not the database")
    for n in range(4):
        finished(200 - n)
    free_while_archiving, free_while_deleting = [], []
    real_append = GzipJsonLinesArchive.append

    def append(self, lines):
        free_while_archiving.append(queue_is_free())
        real_append(self, lines)

    def record_deletes(execute, sql, params, many, context):
        if sql.startswith("DELETE"):
            free_while_deleting.append(queue_is_free())
        return execute(sql, params, many, context)

    with (
        mock.patch.object(GzipJsonLinesArchive, "append", append),
        connection.execute_wrapper(record_deletes),
    ):
        summary = purge_json(
            "--finished-before", "90d", "--archive", str(tmp_path / "a.gz"), "--batch-size", "2"
        )

    assert summary["deleted"] == 4
    assert free_while_archiving == [True, True]
    assert free_while_deleting and not any(free_while_deleting)


@pytest.mark.django_db(transaction=True)
def test_sqlite_a_row_gone_or_changed_once_archived_is_not_deleted_by_that_batch(tmp_path):
    """SQLite archives a batch before it takes the write lock; what happens to its rows
    meanwhile (another purge deleting one; one changing, which a finished execution never
    does today) is seen under the lock: only rows still there unchanged are deleted and
    counted. The changed one stays, and the next run archives it again, as it now is."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: PostgreSQL archives a batch under its row locks")
    changed, gone, *others = [finished(200 - n) for n in range(4)]
    archive = tmp_path / "a.gz"
    real_append = GzipJsonLinesArchive.append
    later = NOW + timedelta(seconds=1)

    def append_then_change_the_rows(self, lines):
        real_append(self, lines)
        if Execution.objects.filter(pk=gone.pk).exists():
            Execution.objects.filter(pk=changed.pk).update(updated_at=later)
            ExecutionStatusChange.objects.filter(execution=gone).delete()
            Execution.objects.filter(pk=gone.pk).delete()

    with mock.patch.object(GzipJsonLinesArchive, "append", append_then_change_the_rows):
        summary = purge_json("--finished-before", "90d", "--archive", str(archive), "--batch-size", "4")

    assert (summary["deleted"], summary["deleted_status_changes"]) == (2, 2)
    assert remaining(changed, gone, *others) == [True, False, False, False]
    assert purge_json("--finished-before", "90d", "--archive", str(archive))["deleted"] == 1
    records = zcat_records(archive)
    assert [record["id"] for record in records] == [str(e.pk) for e in (changed, gone, *others, changed)]
    assert records[-1]["updated_at"] == later != records[0]["updated_at"]


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
    env = service_env(database_url_of_this_test())
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
    archived_at_kill = archived_records(archive)
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

    archived = archived_records(archive)
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
