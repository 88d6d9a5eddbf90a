from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from executions.api.schemas import MAX_NAME_LENGTH
from executions.management.arguments import text_argument
from executions.services import execution_create
from executions.text import has_control_characters


class Command(BaseCommand):
    help = "Create a running execution (for scripts and the quickstart) and print its id."

    def add_arguments(self, parser):
        parser.add_argument(
            "--name", required=True, type=text_argument, help="What runs: the job or workflow name."
        )
        parser.add_argument(
            "--owner", type=text_argument, help="Username of the owner; none for a system execution."
        )

    def handle(self, *args, name, owner, **options):
        # The API's rules for a name, so that what one channel refuses the other does too.
        if not 1 <= len(name) <= MAX_NAME_LENGTH:
            raise CommandError(f"--name must be 1 to {MAX_NAME_LENGTH} characters")
        if has_control_characters(name):
            raise CommandError("--name may not contain control characters")
        created_by = None
        if owner:
            try:
                created_by = get_user_model().objects.get_by_natural_key(owner)
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user named {owner!r}") from None
        execution = execution_create(name=name, created_by=created_by)
        self.stdout.write(str(execution.id))
