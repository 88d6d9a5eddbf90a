"""The shared metrics folder (executions/metrics_files.py): what processes that ended counted
moves into the archive files, the sums a scrape reads stay exactly the same, and an archive
interrupted at any step is finished by the next run without counting anything twice.
Processes are played by values files written as prometheus_client writes them."""

import os
from pathlib import Path

import pytest
from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from executions import metrics_files
from executions.metrics_files import archive_ended_processes

RUNNING_PID = 4242
ENDED_PIDS = (1001, 1002)
HELP = "Status changes committed."


def write_counter(folder, pid, channel, value):
    values = MmapedDict(str(Path(folder, f"counter_{pid}.db")))
    key = mmap_key(
        "executions_status_changes", "executions_status_changes_total", ["channel"], [channel], HELP
    )
    values.write_value(key, value, 0.0)
    values.close()


def write_histogram(folder, pid, observations):
    """Buckets 1 and 10 (and +Inf), as a Histogram child keeps them: per bucket, not accumulated."""
    values = MmapedDict(str(Path(folder, f"histogram_{pid}.db")))
    bounds = [1.0, 10.0, float("inf")]
    counts = [sum(1 for seen in observations if seen <= bound) for bound in bounds]
    per_bucket = [counts[0]] + [later - earlier for earlier, later in zip(counts, counts[1:], strict=False)]
    for bound, count in zip(("1.0", "10.0", "+Inf"), per_bucket, strict=True):
        key = mmap_key("lag", "lag_bucket", ["task", "le"], ["deadlines", bound], "Lag.")
        values.write_value(key, count, 0.0)
    values.write_value(mmap_key("lag", "lag_sum", ["task"], ["deadlines"], "Lag."), sum(observations), 0.0)
    values.close()


def scraped(folder) -> dict:
    """What a scrape of the folder reads: {(sample name, labels): value}."""
    collector = multiprocess.MultiProcessCollector(None, path=str(folder))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in collector.collect()
        for sample in metric.samples
    }


def running_only(pid: int) -> bool:
    return pid == RUNNING_PID


@pytest.fixture
def folder(tmp_path):
    write_counter(tmp_path, ENDED_PIDS[0], "command", 3)
    write_counter(tmp_path, ENDED_PIDS[1], "command", 4)
    write_counter(tmp_path, ENDED_PIDS[1], "worker", 5)
    write_counter(tmp_path, RUNNING_PID, "worker", 7)
    write_histogram(tmp_path, ENDED_PIDS[0], [0.5, 3, 30])
    write_histogram(tmp_path, RUNNING_PID, [0.2, 2])
    return tmp_path


def files(folder) -> set[str]:
    return {path.name for path in Path(folder).glob("*.db")}


def test_ended_processes_move_into_the_archive_and_the_sums_stay(folder):
    before = scraped(folder)
    assert before[("executions_status_changes_total", (("channel", "command"),))] == 7

    assert archive_ended_processes(str(folder), is_running=running_only) == 3

    assert files(folder) == {
        f"counter_{RUNNING_PID}.db",
        f"histogram_{RUNNING_PID}.db",
        "counter_archive.db",
        "histogram_archive.db",
    }
    assert scraped(folder) == before
    assert before[("lag_bucket", (("le", "10.0"), ("task", "deadlines")))] == 4  # accumulated
    assert before[("lag_count", (("task", "deadlines"),))] == 5


def test_the_archive_grows_with_each_process_that_ends(folder):
    archive_ended_processes(str(folder), is_running=running_only)
    write_counter(folder, 1003, "command", 10)
    write_histogram(folder, 1004, [100])
    before = scraped(folder)
    archive_ended_processes(str(folder), is_running=running_only)
    assert scraped(folder) == before
    assert before[("executions_status_changes_total", (("channel", "command"),))] == 17
    assert f"counter_{RUNNING_PID}.db" in files(folder) and "counter_1003.db" not in files(folder)


def test_nothing_ended_nothing_changes(folder):
    archive_ended_processes(str(folder), is_running=lambda pid: True)
    assert len(files(folder)) == 5


def test_a_running_process_keeps_counting_into_its_own_file(folder):
    archive_ended_processes(str(folder), is_running=running_only)
    write_counter(folder, RUNNING_PID, "worker", 8)  # its next increment, in the same file
    assert scraped(folder)[("executions_status_changes_total", (("channel", "worker"),))] == 13


@pytest.mark.parametrize("crash_at", ["journal written", "archive replaced", "one file deleted"])
def test_an_archive_interrupted_at_any_step_is_finished_by_the_next_run(folder, monkeypatch, crash_at):
    before = scraped(folder)
    real_replace, real_unlink = os.replace, os.unlink
    calls = {"replace": 0, "unlink": 0}

    class Crash(Exception):
        pass

    def replace(source, target):
        calls["replace"] += 1
        # 1: the journal into place; 2 and 3: the two archives.
        if (crash_at == "journal written" and calls["replace"] == 2) or (
            crash_at == "archive replaced" and calls["replace"] == 3
        ):
            raise Crash()
        return real_replace(source, target)

    def unlink(path, *args, **kwargs):
        if crash_at == "one file deleted" and str(path).endswith(".db"):
            calls["unlink"] += 1
            if calls["unlink"] == 2:
                raise Crash()
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(metrics_files.os, "replace", replace)
    monkeypatch.setattr(metrics_files.os, "unlink", unlink)
    with pytest.raises(Crash):
        archive_ended_processes(str(folder), is_running=running_only)
    monkeypatch.undo()

    archive_ended_processes(str(folder), is_running=running_only)
    assert scraped(folder) == before
    assert not Path(folder, metrics_files.JOURNAL_NAME).exists()


def test_the_default_folder_is_the_checkouts_var_metrics(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(metrics_files.os, "makedirs", lambda *args, **kwargs: None)
    assert metrics_files.configured_folder() == str(
        Path(metrics_files.__file__).parent.parent / "var" / "metrics"
    )
    # Empty is the default too (prometheus_client would take it for the current directory).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    assert metrics_files.configured_folder() == str(
        Path(metrics_files.__file__).parent.parent / "var" / "metrics"
    )
