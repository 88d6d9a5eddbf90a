"""Writes to API tokens (DRF's authtoken: one token per user)."""

from django.db import transaction
from rest_framework.authtoken.models import Token


def token_rotate(*, user) -> Token:
    """Replace `user`'s token (if any) with a new one, in one transaction: from the commit on,
    the old key authenticates nobody and the new one authenticates `user`."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)
