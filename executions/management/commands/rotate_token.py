from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from executions.management.arguments import text_argument
from executions.tokens import token_rotate


class Command(BaseCommand):
    help = (
        "Replace a user's API token with a new one (creating it if the user had none) and print "
        "only the new key. The old key stops working at once."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", type=text_argument)

    def handle(self, *args, username, **options):
        User = get_user_model()
        try:
            user = User.objects.get_by_natural_key(username)
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}") from None
        self.stdout.write(token_rotate(user=user).key)
