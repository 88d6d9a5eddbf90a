"""The folder where every process of the service keeps its counters for /metrics
(PROMETHEUS_MULTIPROC_DIR), and the archive that keeps what ended processes counted.

prometheus_client's multiprocess mode gives each process files of its own
(`counter_<pid>.db`, `histogram_<pid>.db`) and a scrape adds up every file in the folder. The
web's workers, the worker (manage.py run_worker) and the commands (cleanup, purge) all write
there, so a scrape sees what any of them did. Two things make that last:

- Nothing is wiped when a server starts (prometheus_client's advice assumes only the server
  writes the folder; here the worker's live values are there too). Counters count from the
  folder's creation; a restart neither loses nor resets them. Delete the folder to start over.
- A process that ended leaves its files behind: a cron'd command would leave two per run, and
  every scrape would read them all. So the files of processes that no longer run are added
  into one archive per type (`counter_archive.db`, `histogram_archive.db`) and deleted: at
  each scrape and when gunicorn starts or replaces a worker.

The folder is per host (processes are told apart by pid, as prometheus_client does), and all
of this runs under an exclusive lock on the folder, so a scrape never reads a file half
archived. The archive is replaced in steps a crash can interrupt; a journal written first
makes the next run finish them, so nothing is counted twice or lost.
"""

import contextlib
import fcntl
import json
import os
import re
from pathlib import Path

# prometheus_client is imported inside the functions: it picks its mode from VARIABLE when it
# is first imported, so not before configured_folder() has run.

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Unset (or empty): the checkout's var/metrics, so that the development server, the worker and
# the commands share one without configuration. Set to a path: that folder. (prometheus_client
# would read an empty value as the current directory.)
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "var" / "metrics"

ARCHIVED_TYPES = ("counter", "histogram")
ARCHIVE_NAME = "archive"  # counter_archive.db: read by the scrape like any process's file
LOCK_NAME = ".lock"
JOURNAL_NAME = "archive-journal.json"
_PROCESS_FILE = re.compile(r"(?P<type>counter|histogram)_(?P<pid>[0-9]+)\.db")
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]*_(?P<pid>[0-9]+)\.db")


def configured_folder() -> str:
    """The folder this process's environment names, the default applied (see above) in the
    environment too, so that the processes it starts count in the same one. Must run before
    prometheus_client is first imported: it reads the variable then (config/settings.py, and
    executions/metrics.py for gunicorn's master, which imports it before the settings)."""
    if not os.environ.get(VARIABLE):
        os.environ[VARIABLE] = str(DEFAULT_FOLDER)
    folder = os.environ[VARIABLE]
    # Each metric opens its file when it is created: a folder named but missing (a fresh
    # host, a command run with the servers' environment) would make every import fail.
    os.makedirs(folder, exist_ok=True)
    return folder


@contextlib.contextmanager
def folder_lock(folder: str):
    """The folder's exclusive lock: archiving and scraping take turns."""
    with open(os.path.join(folder, LOCK_NAME), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def process_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: running
    return True


def archive_ended_processes(folder: str, is_running=process_is_running) -> int:
    """Add the counters and histograms of every process of `folder` that no longer runs into
    the archive files, delete its files (and its live gauges'); how many files were archived.
    The caller holds folder_lock()."""
    from prometheus_client import multiprocess

    _finish_interrupted_archive(folder)
    ended = {}
    for path in Path(folder).iterdir():
        match = _PROCESS_FILE.fullmatch(path.name) or _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match and int(match["pid"]) != os.getpid() and not is_running(int(match["pid"])):
            ended.setdefault(match.groupdict().get("type"), []).append(path)
    for live_gauge in ended.pop(None, []):
        multiprocess.mark_process_dead(_LIVE_GAUGE_FILE.fullmatch(live_gauge.name)["pid"], folder)
    if not ended:
        return 0
    replacements = {}
    for kind, files in ended.items():
        archive = Path(folder, f"{kind}_{ARCHIVE_NAME}.db")
        sources = [str(archive)] if archive.exists() else []
        new_archive = Path(folder, f"{kind}_{ARCHIVE_NAME}.db.new")
        _write_merged(sources + [str(path) for path in files], new_archive)
        replacements[str(new_archive)] = str(archive)
    # The journal makes the rest one step: done whole now, or finished by the next run.
    journal = {"replace": replacements, "delete": [str(path) for files in ended.values() for path in files]}
    journal_path = Path(folder, JOURNAL_NAME)
    temporary = journal_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(journal))
    os.replace(temporary, journal_path)
    _finish_interrupted_archive(folder)
    return len(journal["delete"])


def _write_merged(files: list[str], target: Path) -> None:
    """The sum of `files` (one type) written as one values file, in their own form (histogram
    buckets not accumulated), as if one process had counted it all."""
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    merged = MmapedDict(str(target))
    try:
        for metric in multiprocess.MultiProcessCollector.merge(files, accumulate=False):
            for sample in metric.samples:
                key = mmap_key(
                    metric.name,
                    sample.name,
                    list(sample.labels),
                    list(sample.labels.values()),
                    metric.documentation,
                )
                merged.write_value(key, sample.value, 0.0)
    finally:
        merged.close()


def _finish_interrupted_archive(folder: str) -> None:
    """Carry out a journal's steps (each may already be done): the new archives replace the
    old ones, then the archived processes' files go."""
    journal_path = Path(folder, JOURNAL_NAME)
    if not journal_path.exists():
        return
    journal = json.loads(journal_path.read_text())
    for new_archive, archive in journal["replace"].items():
        if os.path.exists(new_archive):
            os.replace(new_archive, archive)
    for path in journal["delete"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    journal_path.unlink()
