from django.core.management.base import BaseCommand, CommandError

from executions.management.arguments import text_argument
from executions.models import ApiToken
from executions.text import has_control_characters
from executions.tokens import token_create

from ._token_arguments import EXPIRES_HELP, duration_argument, user_named

NAME_MAX_LENGTH = ApiToken._meta.get_field("name").max_length


class Command(BaseCommand):
    help = (
        "Make a new API token for a user (their other tokens keep working) and print only its key. "
        "The key is shown this once: the database keeps only its hash."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", type=text_argument)
        parser.add_argument(
            "--name",
            required=True,
            type=text_argument,
            help='What will use it, e.g. "nightly-worker on host-3".'
        )
        parser.add_argument("--expires", type=duration_argument, help=EXPIRES_HELP)

    def handle(self, *args, username, name, expires, **options):
        name = name.strip()
        if not 0 < len(name) <= NAME_MAX_LENGTH:
            raise CommandError(f"--name must be 1 to {NAME_MAX_LENGTH} characters")
        if has_control_characters(name):
            raise CommandError("--name may not contain control characters")
        _, key = token_create(user=user_named(username), name=name, expires_in=expires)
        self.stdout.write(key)
