"""Token authentication against executions.models.ApiToken (hashed, named, expiring keys)."""

from django.utils import timezone
from rest_framework import authentication, exceptions

from ..tokens import token_mark_used, user_for_key

# One answer for every key that does not let its sender in: unknown, revoked, expired, or
# of an inactive user. Which of them it was is nobody's business but the admin's.
INVALID_TOKEN = "Invalid token."


class HashedTokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's TokenAuthentication reads it (and documents it
    in the OpenAPI schema), looked up by the key's hash. `request.user` is the token's User;
    `request.auth` the token's id.

    Costs one SQL statement per request; a second one, at most once a minute per token,
    records when it was last used."""

    def authenticate_credentials(self, key):
        now = timezone.now()
        found = user_for_key(key, now)
        if found is None:
            raise exceptions.AuthenticationFailed(INVALID_TOKEN)
        if found.last_used_is_stale:
            token_mark_used(found.token_id, now)
        return found.user, found.token_id
