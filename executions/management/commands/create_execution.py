from django.core.management.base import BaseCommand, CommandError

from executions.errors import UnknownMonitor
from executions.management.arguments import checked_name, duration_argument, text_argument, user_named
from executions.models import EXECUTION_NAME_MAX_LENGTH, ChangeChannel
from executions.monitors.selectors import monitor_for_run
from executions.services import execution_create


class Command(BaseCommand):
    help = "Create a running execution (for scripts and the quickstart) and print its id."

    def add_arguments(self, parser):
        parser.add_argument(
            "--name", required=True, type=text_argument, help="What runs: the job or workflow name."
        )
        parser.add_argument(
            "--owner", type=text_argument, help="Username of the owner; none for a system execution."
        )
        parser.add_argument(
            "--max-runtime",
            type=duration_argument,
            help="How long it may run (90s, 30m, 6h, 2d): the worker fails it if it is still "
            "running then (default: its monitor's max runtime, else no limit).",
        )
        parser.add_argument(
            "--monitor",
            type=text_argument,
            help="Make it a run of this monitor of the owner (its start); needs --owner.",
        )

    def handle(self, *args, name, owner, max_runtime, monitor, **options):
        name = checked_name(name, EXECUTION_NAME_MAX_LENGTH)
        created_by = user_named(owner) if owner else None
        if monitor is not None and created_by is None:
            raise CommandError("--monitor needs --owner: a monitor is named within its owner's")
        try:
            run_of = monitor_for_run(created_by, monitor) if monitor is not None else None
            execution = execution_create(
                name=name,
                created_by=created_by,
                max_runtime_seconds=None if max_runtime is None else int(max_runtime.total_seconds()),
                monitor=run_of,
                channel=ChangeChannel.COMMAND,
            )
        except UnknownMonitor as error:
            raise CommandError(error.message) from None
        self.stdout.write(str(execution.id))
