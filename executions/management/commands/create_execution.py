from django.core.management.base import BaseCommand, CommandError

from executions.errors import UnknownMonitor
from executions.management.arguments import checked_name, text_argument, user_named
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
            "--monitor",
            type=text_argument,
            help="Make it a run of this monitor of the owner (its start); needs --owner.",
        )

    def handle(self, *args, name, owner, monitor, **options):
        name = checked_name(name, EXECUTION_NAME_MAX_LENGTH)
        created_by = user_named(owner) if owner else None
        if monitor is not None and created_by is None:
            raise CommandError("--monitor needs --owner: a monitor is named within its owner's")
        try:
            run_of = monitor_for_run(created_by, monitor) if monitor is not None else None
            execution = execution_create(
                name=name, created_by=created_by, monitor=run_of, channel=ChangeChannel.COMMAND
            )
        except UnknownMonitor as error:
            raise CommandError(error.message) from None
        self.stdout.write(str(execution.id))
