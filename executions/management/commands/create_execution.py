from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from executions.services import execution_create


class Command(BaseCommand):
    help = "Create a running execution (for scripts and the quickstart) and print its id."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="What runs: the job or workflow name.")
        parser.add_argument("--owner", help="Username of the owner; none for a system execution.")

    def handle(self, *args, name, owner, **options):
        created_by = None
        if owner:
            try:
                created_by = get_user_model().objects.get_by_natural_key(owner)
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user named {owner!r}") from None
        execution = execution_create(name=name[:200], created_by=created_by)
        self.stdout.write(str(execution.id))
