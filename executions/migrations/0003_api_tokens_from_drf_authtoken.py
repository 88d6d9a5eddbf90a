"""DRF's authtoken keys become hashed ApiTokens, and leave the database in clear.

Every key in DRF's `authtoken_token` table is stored as an ApiToken with the same SHA-256 hash
executions/tokens.py computes, so the same key keeps authenticating its user and no worker
has to be reconfigured; then the clear keys are deleted from that table (the table itself
stays, empty, for Django to drop with the app whenever it likes). rest_framework.authtoken is
no longer installed, so its table is read with plain SQL, and only if it exists: a new
database never had one.

Not reversible: the clear keys are gone. Going back leaves the tokens where they are.
"""

import hashlib
from datetime import UTC

from django.db import migrations
from django.utils import timezone

DRF_TOKEN_TABLE = "authtoken_token"
MIGRATED_TOKEN_NAME = "DRF token (migrated)"
# DRF keys are 40 hex characters, without our "exe_": their first 8 tell them apart.
MIGRATED_PREFIX_LENGTH = 8


def hash_drf_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if DRF_TOKEN_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("executions", "ApiToken")
    table = connection.ops.quote_name(DRF_TOKEN_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {connection.ops.quote_name('key')}, created, user_id FROM {table}")
        rows = cursor.fetchall()
        ApiToken.objects.bulk_create(
            ApiToken(
                user_id=user_id,
                name=MIGRATED_TOKEN_NAME,
                prefix=key[:MIGRATED_PREFIX_LENGTH],
                key_hash=hashlib.sha256(key.encode()).hexdigest(),
                created_at=timezone.make_aware(created, UTC) if timezone.is_naive(created) else created,
            )
            for key, created, user_id in rows
        )
        cursor.execute(f"DELETE FROM {table}")


class Migration(migrations.Migration):
    dependencies = [("executions", "0002_api_token")]

    operations = [migrations.RunPython(hash_drf_tokens, migrations.RunPython.noop)]
