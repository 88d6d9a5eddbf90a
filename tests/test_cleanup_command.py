"""`manage.py cleanup_stale_executions`: what it changes, what it leaves, what it prints."""

import json
import os
import re
import subprocess
import sys
import threading
from datetime import timedelta
from io import StringIO
from pathlib import Path
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from executions.models import ChangeChannel, Execution, ExecutionStatusChange
from executions.services import execution_change_status
from executions.signals import execution_status_changed

from .factories import ExecutionFactory

NOW = timezone.now().replace(microsecond=0)
COMMAND = "cleanup_stale_executions"


def cleanup(*args, at=NOW):
    """Run the command as cron would, at `at` (None: the real clock); returns what it printed."""
    out = StringIO()
    if at is None:
        call_command(COMMAND, *args, stdout=out)
    else:
        with mock.patch("django.utils.timezone.now", return_value=at):
            call_command(COMMAND, *args, stdout=out)
    return out.getvalue()


def cleanup_json(*args, at=NOW):
    return json.loads(cleanup(*args, "--json", at=at))


def cleanup_json_now(*args):
    """For threads: patching the clock is process-wide, so concurrent runs use the real one."""
    return cleanup_json(*args, at=None)


def seen(ago, **fields):
    """A running execution whose last sign of life was `ago` before NOW."""
    return ExecutionFactory(created_at=NOW - ago, **fields)


def statuses(*executions):
    return [Execution.objects.get(pk=e.pk).status for e in executions]


@pytest.mark.django_db
def test_threshold_is_strict_at_the_boundary():
    just_stale = seen(timedelta(hours=6, microseconds=1))
    exactly_at = seen(timedelta(hours=6))
    heartbeat_recent = seen(timedelta(days=3), last_heartbeat_at=NOW - timedelta(hours=5, minutes=59))
    heartbeat_old = seen(timedelta(days=3), last_heartbeat_at=NOW - timedelta(hours=7))

    summary = cleanup_json("--older-than", "6h")

    assert (summary["changed"], summary["skipped"]) == (2, 0)
    assert statuses(just_stale, exactly_at, heartbeat_recent, heartbeat_old) == [
        "interrupted",
        "running",
        "running",
        "interrupted",
    ]
    just_stale.refresh_from_db()
    assert just_stale.error_info["last_seen_at"] == (NOW - timedelta(hours=6, microseconds=1)).isoformat()


@pytest.mark.django_db
def test_each_change_is_signalled_after_commit(django_capture_on_commit_callbacks):
    stale = seen(timedelta(days=1), last_heartbeat_at=NOW - timedelta(hours=2, microseconds=250))
    received = []

    def receiver(sender, **change):
        received.append(change)

    execution_status_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            cleanup("--older-than", "1h")
    finally:
        execution_status_changed.disconnect(receiver)

    assert [
        (c["execution_id"], c["previous_status"], c["new_status"], c["channel"], c["actor"]) for c in received
    ] == [(stale.pk, "running", "interrupted", "command", None)]
    assert (
        received[0]["error_info"]["last_seen_at"] == (NOW - timedelta(hours=2, microseconds=250)).isoformat()
    )


@pytest.mark.django_db
@pytest.mark.parametrize("target", ["interrupted", "failed", "completed", "cancelled"])
def test_each_target_status_with_a_structured_reason_and_an_audit_record(target):
    stale = seen(timedelta(days=2), last_heartbeat_at=NOW - timedelta(hours=30))

    output = cleanup("--older-than", "1d", "--status", target)

    assert output.strip().startswith("Changed 1, skipped 0, batches 1, elapsed ")
    stale.refresh_from_db()
    assert stale.status == target
    assert stale.finished_at is not None
    expected_info = {
        "reason": "stale",
        "last_seen_at": (NOW - timedelta(hours=30)).isoformat(),
        "threshold": "1d",
        "detected_by": "cleanup_stale_executions",
    }
    assert stale.error_info == expected_info
    audit = ExecutionStatusChange.objects.get(execution=stale)
    assert (audit.previous_status, audit.new_status, audit.channel, audit.actor, audit.actor_username) == (
        "running",
        target,
        ChangeChannel.COMMAND,
        None,
        "",
    )
    assert audit.error_info == expected_info


@pytest.mark.django_db
def test_finished_executions_are_never_touched():
    old_finished = [seen(timedelta(days=9), status=status) for status in ("completed", "failed", "cancelled")]

    assert cleanup_json("--older-than", "1h")["changed"] == 0
    assert statuses(*old_finished) == ["completed", "failed", "cancelled"]
    assert not ExecutionStatusChange.objects.exists()


@pytest.mark.django_db
def test_dry_run_counts_and_shows_a_sample_but_changes_nothing():
    oldest = seen(timedelta(hours=5), name="oldest-job")
    seen(timedelta(hours=3))
    seen(timedelta(minutes=10))

    output = cleanup("--older-than", "2h", "--dry-run")

    assert "2 execution(s) would become interrupted" in output
    assert "nothing changed" in output
    assert f"{oldest.pk}  oldest-job  last seen {(NOW - timedelta(hours=5)).isoformat()}" in output
    assert Execution.objects.filter(status="running").count() == 3
    assert not ExecutionStatusChange.objects.exists()

    summary = cleanup_json("--older-than", "2h", "--dry-run", "--limit", "1")
    assert summary["would_change"] == 1
    assert summary["sample"] == [
        {"id": str(oldest.pk), "name": "oldest-job", "last_seen_at": (NOW - timedelta(hours=5)).isoformat()}
    ]


@pytest.mark.django_db
def test_json_summary():
    seen(timedelta(hours=2))

    summary = cleanup_json("--older-than", "90m", "--status", "failed")

    assert set(summary) == {
        "dry_run",
        "status",
        "older_than",
        "cutoff",
        "name",
        "limit",
        "changed",
        "skipped",
        "batches",
        "elapsed_seconds",
    }
    assert summary["dry_run"] is False
    assert (summary["status"], summary["older_than"], summary["changed"], summary["batches"]) == (
        "failed",
        "90m",
        1,
        1,
    )
    assert summary["cutoff"] == (NOW - timedelta(minutes=90)).isoformat()


@pytest.mark.django_db
@pytest.mark.parametrize("count, batches", [(4, 2), (5, 3), (1, 1), (0, 0)])
def test_batch_boundaries(count, batches):
    for _ in range(count):
        seen(timedelta(days=1))

    summary = cleanup_json("--older-than", "1h", "--batch-size", "2")

    assert (summary["changed"], summary["skipped"], summary["batches"]) == (count, 0, batches)
    assert ExecutionStatusChange.objects.count() == count


@pytest.mark.django_db
def test_executions_seen_at_the_same_instant_across_pages_are_all_changed():
    same_instant = [seen(timedelta(days=1)) for _ in range(5)]  # all share one last_seen_at

    summary = cleanup_json("--older-than", "1h", "--batch-size", "2")

    assert (summary["changed"], summary["batches"]) == (5, 3)
    assert set(statuses(*same_instant)) == {"interrupted"}


@pytest.mark.django_db
def test_limit_and_name():
    nightly = [seen(timedelta(days=1), name="nightly") for _ in range(3)]
    other = seen(timedelta(days=1), name="hourly")

    assert (
        cleanup_json("--older-than", "1h", "--name", "nightly", "--limit", "2", "--batch-size", "1")[
            "changed"
        ]
        == 2
    )
    assert sorted(statuses(*nightly)) == ["interrupted", "interrupted", "running"]
    assert statuses(other) == ["running"]


@pytest.mark.django_db
def test_default_threshold_is_the_stale_setting(settings):
    settings.EXECUTIONS_STALE_AFTER = timedelta(minutes=45)
    stale, fresh = seen(timedelta(minutes=46)), seen(timedelta(minutes=44))

    summary = cleanup_json()

    assert summary["older_than"] == "45m"
    assert statuses(stale, fresh) == ["interrupted", "running"]


@pytest.mark.django_db
def test_a_run_that_dies_mid_way_leaves_whole_batches_and_a_rerun_finishes():
    stale = [seen(timedelta(days=1)) for _ in range(7)]
    updates = []

    def killed_after_second_update(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith(("UPDATE", "WITH")):  # WITH moved AS (UPDATE ...) on PostgreSQL
            updates.append(sql)
            if len(updates) == 2:  # the second batch wrote everything, but has not committed
                raise RuntimeError("killed")
        return result

    with connection.execute_wrapper(killed_after_second_update):
        with pytest.raises(RuntimeError):
            cleanup("--older-than", "1h", "--batch-size", "3")

    assert Execution.objects.filter(status="interrupted").count() == 3
    assert ExecutionStatusChange.objects.count() == 3

    assert cleanup_json("--older-than", "1h", "--batch-size", "3")["changed"] == 4
    assert set(statuses(*stale)) == {"interrupted"}
    assert ExecutionStatusChange.objects.count() == 7


@pytest.mark.django_db
def test_quiet_when_not_a_terminal():
    seen(timedelta(days=1))
    output = cleanup("--older-than", "1h")
    assert output.count("\n") == 1  # the summary line, no progress bar


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["--older-than", "6x"], "--older-than: '6x' is not a duration"),
        (["--older-than", "0m"], "--older-than: '0m' is out of range"),
        (["--older-than", ""], "is not a duration"),
        (["--batch-size", "0"], "--batch-size: must be a whole number from 1 to 10000"),
        (["--limit", "-3"], "--limit: must be a whole number from 1 to 1000000000"),
        (["--status", "running"], "invalid choice: 'running'"),
        (["--batch-size", "many"], "--batch-size: must be a whole number from 1 to 10000"),
        # Beyond what a database integer holds: was an OverflowError traceback.
        (["--batch-size", "9223372036854775808"], "--batch-size: must be a whole number from 1 to 10000"),
        (["--limit", "9223372036854775808"], "--limit: must be a whole number from 1"),
        (["--batch-size", "\uff15"], "--batch-size: must be a whole number"),
        # ASCII digits only: a full-width 5 was read as 5 minutes.
        (["--older-than", "\uff15m"], "is not a duration"),
        (["--older-than", "\u0665h"], "is not a duration"),
        # A command line that is not UTF-8 arrives surrogate-escaped: was a UnicodeEncodeError.
        (["--name", "\udced\udca0\udc80"], "--name: not valid UTF-8 text"),
        (["--name", "a\x00b"], "--name: may not contain NUL"),
    ],
)
def test_bad_arguments_are_a_command_error(args, message):
    running = seen(timedelta(days=1))
    with pytest.raises(CommandError, match=re.escape(message)):
        cleanup(*args)
    assert statuses(running) == ["running"]


def test_bad_arguments_exit_non_zero_from_the_shell():
    process = subprocess.run(
        [sys.executable, "manage.py", COMMAND, "--older-than", "soon"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )
    assert process.returncode != 0
    assert "CommandError: --older-than: 'soon' is not a duration" in process.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        ([b"--name", b"\xed\xa0\x80"], "argument --name: not valid UTF-8 text"),
        (
            [b"--batch-size", b"9223372036854775808"],
            "argument --batch-size: must be a whole number from 1 to 10000",
        ),
    ],
)
def test_bad_bytes_on_the_command_line_are_one_line_not_a_traceback(args, message):
    process = subprocess.run(
        [sys.executable.encode(), b"manage.py", COMMAND.encode(), b"--dry-run", *args],
        capture_output=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )
    stderr = process.stderr.decode(errors="replace")
    assert process.returncode != 0
    assert message in stderr
    assert "Traceback" not in stderr


def test_a_bad_duration_setting_is_one_line_naming_it_for_every_command():
    bad = "999999999d"
    for args in (["check"], [COMMAND, "--dry-run"]):
        process = subprocess.run(
            [sys.executable, "manage.py", *args],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "EXECUTIONS_STALE_AFTER": bad},
        )
        assert process.returncode == 1
        assert process.stderr.startswith("manage.py: EXECUTIONS_STALE_AFTER: '999999999d' is not a duration")
        assert "Traceback" not in process.stderr
        assert process.stderr.count("\n") == 1


@pytest.mark.django_db
def test_dry_run_escapes_control_characters_in_names():
    # Written before names were checked, or straight into the database: the API refuses it now.
    hostile = "evil\x1b[2J\x1b[31mRED\x1b]0;pwned\x07\n  00000000-fake  fake-row\u202e"
    execution = seen(timedelta(days=1), name=hostile)

    output = cleanup("--older-than", "1h", "--dry-run")

    assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output
    escaped = "evil\\x1b[2J\\x1b[31mRED\\x1b]0;pwned\\x07\\x0a  00000000-fake  fake-row\\u202e"
    assert f"  {execution.id}  {escaped}  last seen" in output
    # One line per sample row: the newline in the name forged none.
    assert not any(line.startswith("  00000000-fake") for line in output.splitlines())


# --- Real concurrency (PostgreSQL: row locks) -------------------------------------------------


def in_thread(target, *args):
    outcome = {}

    def run():
        try:
            outcome["value"] = target(*args)
        except BaseException as error:  # handed to the test thread, which asserts on it
            outcome["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_until_a_session_waits_for_a_lock():
    with connection.cursor() as cursor:
        for _ in range(10_000):
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                return
            threading.Event().wait(0.01)
    raise AssertionError("the cleanup never waited for the worker's lock")


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_an_execution_that_finishes_during_the_run_is_skipped_not_overwritten():
    stale = [seen(timedelta(days=1)) for _ in range(4)]
    finishing = stale[2]
    locked, release = threading.Event(), threading.Event()

    def worker_finishes():
        # The worker's own "completed", committed only after the cleanup has read the row as
        # running and is waiting for its lock.
        with transaction.atomic():
            execution_change_status(execution_id=finishing.pk, status="completed", channel=ChangeChannel.API)
            locked.set()
            release.wait(60)

    worker, worker_outcome = in_thread(worker_finishes)
    assert locked.wait(60)
    cleanup_thread, cleanup_outcome = in_thread(cleanup_json_now, "--older-than", "1h", "--batch-size", "10")
    wait_until_a_session_waits_for_a_lock()
    release.set()
    worker.join(60)
    cleanup_thread.join(60)

    assert "error" not in worker_outcome and "error" not in cleanup_outcome, (worker_outcome, cleanup_outcome)
    summary = cleanup_outcome["value"]
    assert (summary["changed"], summary["skipped"]) == (3, 1)
    finishing.refresh_from_db()
    assert finishing.status == "completed" and finishing.error_info is None
    assert [(a.channel, a.new_status) for a in ExecutionStatusChange.objects.filter(execution=finishing)] == [
        ("api", "completed")
    ]
    assert statuses(*stale) == ["interrupted", "interrupted", "completed", "interrupted"]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_runs_on_several_hosts_at_once_change_each_execution_once():
    stale = [seen(timedelta(days=1)) for _ in range(60)]

    runs = [in_thread(cleanup_json_now, "--older-than", "1h", "--batch-size", "7") for _ in range(3)]
    for thread, _ in runs:
        thread.join(120)

    outcomes = [outcome for _, outcome in runs]
    assert all("error" not in outcome for outcome in outcomes), outcomes
    assert sum(outcome["value"]["changed"] for outcome in outcomes) == 60
    assert set(statuses(*stale)) == {"interrupted"}
    assert ExecutionStatusChange.objects.count() == 60
    assert ExecutionStatusChange.objects.values("execution").distinct().count() == 60
