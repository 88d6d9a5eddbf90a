from django.core.management.base import BaseCommand

from executions.management.arguments import (
    EXPIRES_HELP,
    checked_name,
    duration_argument,
    text_argument,
    user_named,
)
from executions.models import ApiToken
from executions.tokens import token_create

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
            help='What will use it, e.g. "nightly-worker on host-3".',
        )
        parser.add_argument("--expires", type=duration_argument, help=EXPIRES_HELP)

    def handle(self, *args, username, name, expires, **options):
        name = checked_name(name.strip(), NAME_MAX_LENGTH)
        _, key = token_create(user=user_named(username), name=name, expires_in=expires)
        self.stdout.write(key)
