"""`manage.py create_execution`: the API's rules for a name, and one-line errors."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from executions.models import Execution


def create(*args) -> str:
    out = StringIO()
    call_command("create_execution", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_creates_a_running_execution_of_the_owner_and_prints_its_id(owner):
    printed = create("--name", "nightly-report", "--owner", "owner")

    execution = Execution.objects.get()
    assert printed == f"{execution.id}\n"
    assert (execution.name, execution.status, execution.created_by) == ("nightly-report", "running", owner)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "evil\x1b[2J"], "--name may not contain control characters"),
        (["--name", "two\nlines"], "--name may not contain control characters"),
        (["--name", "x" * 201], "--name must be 1 to 200 characters"),
        (["--name", ""], "--name must be 1 to 200 characters"),
        (["--name", "\udced\udca0\udc80"], "--name: not valid UTF-8 text"),
        (["--name", "ok", "--owner", "\udced\udca0\udc80"], "--owner: not valid UTF-8 text"),
        (["--name", "ok", "--owner", "a\x00"], "--owner: may not contain NUL"),
        (["--name", "ok", "--owner", "nobody"], "No user named 'nobody'"),
    ],
)
def test_bad_input_is_a_command_error_and_creates_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        create(*args)
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_a_run_of_a_monitor_is_its_start(owner):
    from executions.models import MonitorStateChange

    from .factories import monitor_for

    monitor = monitor_for(owner)

    printed = create("--name", "nightly", "--owner", "owner", "--monitor", "nightly")

    execution = Execution.objects.get()
    assert printed == f"{execution.id}\n"
    assert execution.monitor_id == monitor.id
    change = MonitorStateChange.objects.get()
    assert (change.new_state, change.channel, change.actor) == ("up", "command", owner)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "ok", "--monitor", "nightly"], "--monitor needs --owner"),
        (["--name", "ok", "--owner", "owner", "--monitor", "unknown"], "No monitor named 'unknown'"),
        (["--name", "ok", "--owner", "owner", "--monitor", "a\x00"], "--monitor: may not contain NUL"),
    ],
)
def test_a_monitor_that_is_not_the_owners_is_a_command_error(owner, args, message):
    with pytest.raises(CommandError, match=message):
        create(*args)
    assert not Execution.objects.exists()
