from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Create a user for the API with the least rights (neither staff nor superuser, no "
        "permissions, no password: it never logs in, it sends a token). Safe to run again: "
        "an existing user of that name is left as it is."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        User = get_user_model()
        try:
            # The checks of the admin's user form: not empty, not too long, allowed characters.
            username = User._meta.get_field(User.USERNAME_FIELD).clean(username, None)
        except ValidationError as error:
            raise CommandError(f"Username {username!r}: {' '.join(error.messages)}") from None
        if User.objects.filter(**{User.USERNAME_FIELD: username}).exists():
            self.stdout.write(f"User {username!r} exists already; left as it is.")
            return
        User.objects.create_user(username)
        self.stdout.write(f"Created user {username!r}.")
