"""The purge's archive, the only copy of what it deleted, against real processes and a real
disk: killed at bytes of a member being written, a filesystem that fills up (and one that is
read-only), two runs at once, and rows as large as the API takes (peak memory)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from django.db import connection

from devtools.servers import REPO_ROOT, service_env
from executions.api.limits import MAX_JSON_OBJECT_BYTES
from executions.models import Execution, ExecutionStatusChange
from executions.retention.archive import read_archive
from executions.retention.purge import executions_with_history

from ..factories import UserFactory
from ..purging import (
    NOW,
    archived_records,
    as_archived,
    database_url_of_this_test,
    finished,
    purge_json,
    remaining,
    run_purge,
    zcat_records,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

KILLER = "tests/purge_killed_while_archiving.py"

# Each run killed while writing a member (which, at which byte), how many executions are
# deleted after it, and whether it leaves the file's end broken (for the next run to cut).
KILLS = [
    (1, "5", 0, True),  # in the new file's first member's header
    (2, "-4", 10, True),  # in the second member's trailer: its CRC written, not its length
    (1, "100", 10, True),  # in the compressed lines of the first member this run writes
    (2, "-1", 20, True),  # all of a member but its last byte
    (1, "all", 20, False),  # the whole member, killed before its fsync (so before its DELETE)
]


def gzip_test_passes(path) -> bool:
    return subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode == 0


def test_killed_at_any_byte_of_a_member_a_rerun_leaves_an_archive_zcat_reads_whole(tmp_path):
    """Five runs, each killed (SIGKILL) at another byte of a member (batches of 10), then a
    run that finishes: `gzip -t` accepts the file, `zcat` and read_archive read every purged
    execution exactly as it was in the database, and no execution was deleted before its
    member was whole."""
    executions = [finished(200 - n / 10, metadata={"n": n, "text": "é\n" * n}) for n in range(50)]
    ids = [str(e.pk) for e in executions]
    before = {record["id"]: record for record in as_archived(executions_with_history(ids))}
    archive = tmp_path / "purged.jsonl.gz"
    args = ["--finished-before", "90d", "--batch-size", "10", "--archive", str(archive), "--json"]

    for member, cut, deleted, broken in KILLS:
        killed = run_purge(*args, helper=[KILLER, str(member), cut])
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        connection.close()  # SQLite: see the file as the dead process left it
        assert remaining(*executions) == [False] * deleted + [True] * (50 - deleted), (member, cut)
        assert gzip_test_passes(archive) is not broken, (member, cut)

    rerun = run_purge(*args)

    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout.splitlines()[-1])["deleted"] == 30
    assert remaining(*executions) == [False] * 50
    records = zcat_records(archive)
    assert records == archived_records(archive)
    # The third batch twice: archived whole by the run killed before its DELETE, then again.
    assert [record["id"] for record in records] == ids[:30] + ids[20:]
    for record in records:
        assert record == before[record["id"]]


@contextlib.contextmanager
def tmpfs(path, size: str):
    """A tmpfs of `size` mounted at `path`, and a function to remount it with options."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.strip()}): needs root; "
            "tests/test_purge_command.py's full-disk tests inject ENOSPC instead"
        )
    try:
        yield lambda options: subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_full_filesystem_then_room_a_rerun_archives_every_execution_once(tmp_path):
    """The archive on a 96 KiB tmpfs, batches of 50 executions whose metadata does not
    compress (a member is some 35 KB): the purge stops with ENOSPC in a later batch, and the
    file is whole members holding exactly what was deleted. Read-only, the rerun is refused
    before it deletes anything. With room, the rerun archives the rest, each once."""
    executions = [finished(200 - n / 100, metadata={"noise": os.urandom(512).hex()}) for n in range(300)]
    before = {
        record["id"]: record for record in as_archived(executions_with_history([e.pk for e in executions]))
    }
    folder = tmp_path / "small-disk"
    with tmpfs(folder, "96k") as remount:
        archive = folder / "purged.jsonl.gz"
        args = ["--finished-before", "90d", "--batch-size", "50", "--archive", str(archive), "--json"]

        full = run_purge(*args)

        assert full.returncode == 1
        assert "No space left on device" in full.stderr
        summary = json.loads(full.stdout.splitlines()[-1])
        assert 0 < summary["deleted"] < 300 and summary["deleted"] % 50 == 0
        deleted = {str(e.pk) for e, left in zip(executions, remaining(*executions), strict=True) if not left}
        assert len(deleted) == summary["deleted"]
        assert {record["id"] for record in zcat_records(archive)} == deleted

        remount("ro")
        read_only = run_purge(*args)
        assert read_only.returncode == 1
        assert read_only.stderr.strip().splitlines()[-1] == (
            f"CommandError: --archive: cannot open {archive} for writing: Read-only file system"
        )
        new_file = run_purge(*args[:-3], "--archive", str(folder / "new.jsonl.gz"))
        assert "--archive: cannot create" in new_file.stderr and "is not writable" in new_file.stderr
        assert len([left for left in remaining(*executions) if not left]) == len(deleted)

        remount("rw,size=4m")
        rerun = run_purge(*args)

        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout.splitlines()[-1])["deleted"] == 300 - len(deleted)
        records = zcat_records(archive)
        assert sorted(record["id"] for record in records) == sorted(before)
        for record in records:
            assert record == before[record["id"]]


def test_two_archived_runs_at_once_delete_each_execution_once_and_archive_each_whole(tmp_path):
    executions = [finished(200 - n / 100, metadata={"n": n}) for n in range(300)]
    before = {
        record["id"]: record for record in as_archived(executions_with_history([e.pk for e in executions]))
    }
    results, errors = [], []

    def run(archive):
        try:
            results.append(
                purge_json("--finished-before", "90d", "--batch-size", "10", "--archive", str(archive))
            )
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    archives = [tmp_path / "host-a.jsonl.gz", tmp_path / "host-b.jsonl.gz"]
    threads = [threading.Thread(target=run, args=(archive,)) for archive in archives]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(result["deleted"] for result in results) == 300
    assert remaining(*executions) == [False] * 300
    records = [record for archive in archives if archive.exists() for record in zcat_records(archive)]
    assert {record["id"] for record in records} == set(before)
    for record in records:  # an execution both runs archived (SQLite) is the same in both
        assert record == before[record["id"]]
    if connection.vendor == "postgresql":  # rows another run holds are skipped, not archived
        assert len(records) == 300


PEAK_RSS_LIMIT_MB = 150
BIG_ROWS = 1000
# As many empty objects as the API takes in one JSON value: some 700 KB each once parsed.
DENSE_ITEMS = (MAX_JSON_OBJECT_BYTES - len('{"a":[]}')) // 3 + 1


# Runs argv[1:] as a child and prints, last, [its exit code, its peak RSS in KB].
MEASURE_PEAK_RSS = (
    "import json, os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss]), flush=True)\n"
)


def test_the_purge_stays_under_150_mb_whatever_the_rows_hold(tmp_path):
    """1,000 finished executions whose metadata and error_info, and their audit record's
    error_info, are each 16 KiB of `{"a":[{},{},...]}` (issue 22: 1.35 MB per execution once
    parsed, so more than 1.3 GB for this one default batch when the purge read the batch
    through the ORM). The real command, archiving them, in a process of its own: its peak
    RSS (from the kernel, wait4) stays under 150 MB, and the archive holds all of them."""
    dense = {"a": [{} for _ in range(DENSE_ITEMS)]}
    assert len(json.dumps(dense, separators=(",", ":"))) <= MAX_JSON_OBJECT_BYTES
    owner = UserFactory(username="big-rows")
    long_ago = NOW - timedelta(days=100)
    rows = Execution.objects.bulk_create(
        [
            Execution(
                name=f"big-{n}",
                status="failed",
                metadata=dense,
                error_info=dense,
                created_by=owner,
                created_at=long_ago,
                updated_at=long_ago,
                finished_at=long_ago,
            )
            for n in range(BIG_ROWS)
        ],
        batch_size=50,
    )
    ExecutionStatusChange.objects.bulk_create(
        [
            ExecutionStatusChange(
                execution=row, previous_status="running", new_status="failed", error_info=dense, channel="api"
            )
            for row in rows
        ],
        batch_size=50,
    )
    archive = tmp_path / "purged.jsonl.gz"

    # Started by a small Python of its own, whose wait4 reads the command's peak: a process
    # forked from this test's (the suite's, hundreds of MB by now) carries the parent's
    # resident pages in its high-water mark until it execs, and wait4 would report those.
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            MEASURE_PEAK_RSS,
            sys.executable,
            "manage.py",
            "purge_executions",
            "--finished-before",
            "90d",
            "--archive",
            str(archive),
            "--json",
        ],
        cwd=REPO_ROOT,
        env=service_env(database_url_of_this_test()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = process.communicate()
    *output_lines, measured = output.splitlines()
    output = "\n".join(output_lines)
    process.returncode, peak_rss_kb = json.loads(measured)
    peak_rss_mb = peak_rss_kb / 1024

    assert process.returncode == 0, output
    summary = json.loads(output.splitlines()[-1])
    assert (summary["deleted"], summary["batches"]) == (BIG_ROWS, 1)  # one default batch
    assert peak_rss_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_rss_mb:.0f} MB"
    assert subprocess.run(["gzip", "-t", str(archive)]).returncode == 0
    archived = 0
    for record in read_archive(str(archive)):
        assert (
            record["metadata"] == record["error_info"] == record["status_changes"][0]["error_info"] == dense
        )
        archived += 1
    assert archived == BIG_ROWS
