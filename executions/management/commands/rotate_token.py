from django.core.management.base import BaseCommand

from executions.management.arguments import EXPIRES_HELP, duration_argument, text_argument, user_named
from executions.tokens import ROTATED_TOKEN_NAME, token_rotate


class Command(BaseCommand):
    help = (
        "Revoke every API token of a user and make one new one (named "
        f"{ROTATED_TOKEN_NAME!r}); print only its key. The old keys stop working at once."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", type=text_argument)
        parser.add_argument("--expires", type=duration_argument, help=EXPIRES_HELP)

    def handle(self, *args, username, expires, **options):
        _, key = token_rotate(user=user_named(username), expires_in=expires)
        self.stdout.write(key)
