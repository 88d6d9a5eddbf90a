"""API tokens: making, revoking and rotating them, and the one lookup that authenticates a key.

A key is "exe_" and 43 URL-safe characters (256 random bits). The database keeps its SHA-256
hash and its first characters (the prefix, to tell keys apart); the key itself exists in
clear only in what token_create (token_save_new, token_rotate) returns, for the caller to
show once.
Keys of DRF's old authtoken (40 hex characters) were hashed the same way by a migration,
without a new prefix, and keep working.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from .db.prepared import prepared_statements
from .models import ApiToken
from .statements import write_transaction

KEY_PREFIX = "exe_"
# "exe_" and the first 8 random characters: 48 of the 256 random bits, shown in the admin.
VISIBLE_PREFIX_LENGTH = len(KEY_PREFIX) + 8
# A token's last-used time is written at most this often, never on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
ROTATED_TOKEN_NAME = "rotate_token"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(*, user, name: str, expires_in: timedelta | None = None) -> tuple[ApiToken, str]:
    """A new token of `user`, and its key: the only time the key exists in clear."""
    token = ApiToken(user=user, name=name)
    return token, token_save_new(token, expires_in)


def token_save_new(token: ApiToken, expires_in: timedelta | None = None) -> str:
    """Give the unsaved `token` (its user and name set) a new key, and an expiry `expires_in`
    from now; save it; return the key, the only time it exists in clear."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token.prefix = key[:VISIBLE_PREFIX_LENGTH]
    token.key_hash = key_hash(key)
    token.created_at = timezone.now()
    token.expires_at = token.created_at + expires_in if expires_in else None
    with write_transaction(single_statement=True):
        token.save(force_insert=True)
    return key


def tokens_revoke(tokens) -> int:
    """Revoke the tokens of the queryset `tokens` that are not revoked yet; how many."""
    with write_transaction(single_statement=True):
        return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


def token_rotate(*, user, expires_in: timedelta | None = None) -> tuple[ApiToken, str]:
    """Revoke every token of `user` and make one new one, in one transaction: from the commit
    on, the old keys authenticate nobody and the new one authenticates `user`."""
    with write_transaction():
        tokens_revoke(ApiToken.objects.filter(user=user))
        return token_create(user=user, name=ROTATED_TOKEN_NAME, expires_in=expires_in)


def token_mark_used(token_id: int, now: datetime) -> None:
    """Record that the token was used at `now`, unless that was recorded less than
    LAST_USED_RESOLUTION ago (by another process, say)."""
    with write_transaction(single_statement=True):
        ApiToken.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION), pk=token_id
        ).update(last_used_at=now)


@dataclass(frozen=True)
class Authenticated:
    """What `user_for_key` found: the user, and about the token that let them in."""

    user: object
    token_id: int
    last_used_is_stale: bool


@cache
def _user_for_key_sql() -> str:
    """The lookup as SQL text, built once: the user's columns and the token's id and
    staleness, for a key hash, where the token is neither revoked nor expired and the user is
    active. Building the same query with the ORM on every request costs more than running it."""
    User = get_user_model()
    quote = connection.ops.quote_name
    user_columns = ", ".join(f"u.{quote(field.column)}" for field in User._meta.concrete_fields)
    return (
        f"SELECT {user_columns}, t.{quote('id')} AS api_token_id,"
        f" (t.last_used_at IS NULL OR t.last_used_at < %s) AS api_token_last_used_is_stale"
        f" FROM {quote(ApiToken._meta.db_table)} t"
        f" JOIN {quote(User._meta.db_table)} u ON u.{quote(User._meta.pk.column)} = t.user_id"
        f" WHERE t.key_hash = %s AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > %s)"
        f" AND u.{quote('is_active')}"
    )


def user_for_key(key: str, now: datetime) -> Authenticated | None:
    """The active user whose valid token `key` is, in one SQL statement; None for a key that is
    unknown, revoked or expired, or whose user is inactive (the caller answers all alike).
    Nothing is cached: a revocation or an expiry takes effect on the next request."""
    adapt = connection.ops.adapt_datetimefield_value
    params = [adapt(now - LAST_USED_RESOLUTION), key_hash(key), adapt(now)]
    with prepared_statements(), connection.cursor() as cursor:
        cursor.execute(_user_for_key_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return None
    names, converters = _user_columns()
    values = list(row[: len(names)])
    for index, column, functions in converters:
        for convert in functions:
            values[index] = convert(values[index], column, connection)
    token_id, last_used_is_stale = row[len(names) :]
    user = get_user_model().from_db(connection.alias, names, values)
    return Authenticated(user, token_id, bool(last_used_is_stale))


@cache
def _user_columns() -> tuple[list[str], list[tuple]]:
    """The names of the user's fields in the lookup's row, and for each column that needs
    them the database's converters (SQLite gives datetimes as text): what a raw() query set
    works out on every request, about half of the lookup's time, worked out once."""
    User = get_user_model()
    fields = User._meta.concrete_fields
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(User._meta.db_table)
        functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if functions:
            converters.append((index, column, functions))
    return [field.attname for field in fields], converters
