"""What create_token and rotate_token read from their command lines, read one way."""

import argparse

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from executions.durations import parse_duration

EXPIRES_HELP = "Refuse the key after this long: 90d, 12w, 6h... (default: never)."


def duration_argument(text: str):
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def user_named(username: str):
    User = get_user_model()
    try:
        return User.objects.get_by_natural_key(username)
    except User.DoesNotExist:
        raise CommandError(f"No user named {username!r}") from None
