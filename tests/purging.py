"""What the purge's tests share: executions that finished long ago, the command run in
this process or in one of its own, and its archive read as the gzip tools read it."""

import json
import subprocess
import sys
from datetime import datetime, timedelta
from io import StringIO
from unittest import mock

from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from devtools.servers import REPO_ROOT, service_env
from executions.models import Execution
from executions.retention.archive import json_default, read_archive
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


TIMESTAMPS = ("created_at", "updated_at", "finished_at", "last_heartbeat_at")


def comparable(record: dict) -> dict:
    """An archived record with its timestamps as datetimes: the same instant reads the same
    whether its fraction of a second was written with trailing zeros (isoformat(), SQLite)
    or without (PostgreSQL's JSON)."""

    def parsed(fields: dict) -> dict:
        return {
            name: datetime.fromisoformat(value) if name in TIMESTAMPS and value is not None else value
            for name, value in fields.items()
        }

    if "status_changes" not in record:  # (not one of the purge's records)
        return record
    return {**parsed(record), "status_changes": [parsed(change) for change in record["status_changes"]]}


def as_archived(records: list[dict]) -> list[dict]:
    """Records (executions_with_history) as the archive stores them (JSON), comparable."""
    return [comparable(record) for record in json.loads(json.dumps(records, default=json_default))]


def archived_records(path) -> list[dict]:
    """The archive as the project reads it (read_archive), comparable."""
    return [comparable(record) for record in read_archive(str(path))]


def remaining(*executions) -> list[bool]:
    return [Execution.objects.filter(pk=e.pk).exists() for e in executions]


def zcat_records(path) -> list[dict]:
    """The archive as the real gzip tools read it: `gzip -t` accepts it and `zcat` reads it
    to its end (exit 0), every line a JSON object (lines as str.splitlines, the strictest
    reader, sees them: it breaks at U+2028 and U+0085 too); comparable."""
    tested = subprocess.run(["gzip", "-t", str(path)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stderr
    read = subprocess.run(["zcat", str(path)], capture_output=True)
    assert read.returncode == 0, read.stderr
    return [comparable(json.loads(line)) for line in read.stdout.decode().splitlines()]


def database_url_of_this_test() -> str:
    """The test database as a DATABASE_URL, for a command in a process of its own."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    return (
        f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD'] or ''}@{settings_dict['HOST']}:"
        f"{settings_dict['PORT']}/{settings_dict['NAME']}"
    )


def run_purge(*args: str, helper: list[str] | None = None, timeout: float = 120):
    """`manage.py purge_executions ARGS` (or a helper script of tests/ that runs it: `helper`
    is its path and arguments) in a process of its own, on this test's database."""
    program = helper or ["manage.py"]
    return subprocess.run(
        [sys.executable, *program, COMMAND, *args],
        cwd=REPO_ROOT,
        env=service_env(database_url_of_this_test()),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
