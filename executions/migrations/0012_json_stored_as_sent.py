"""The JSON columns keep the JSON text as sent: `json` instead of `jsonb` on PostgreSQL
(executions/models/fields.py says why). SQLite stores JSON as text already: nothing changes
there, so its tables are not rebuilt.

On PostgreSQL each ALTER rewrites its table under an exclusive lock (a pause of writes and
reads for as long as the copy takes). What jsonb had already changed (a number spelt out in
full, keys reordered) stays as it is: only what is written from now on is kept as sent.
"""

from django.db import migrations

import executions.models.fields

COLUMNS = [
    ("executions_execution", "metadata"),
    ("executions_execution", "error_info"),
    ("executions_executionstatuschange", "error_info"),
    ("executions_idempotencykey", "response_body"),
]


def _alter(to_type: str):
    def alter(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        quote = schema_editor.quote_name
        for table, column in COLUMNS:
            schema_editor.execute(
                f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} "
                f"TYPE {to_type} USING {quote(column)}::{to_type}"
            )

    return alter


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0011_notifications"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(_alter("json"), _alter("jsonb"))],
            state_operations=[
                migrations.AlterField(
                    model_name="execution",
                    name="error_info",
                    field=executions.models.fields.ExactJSONField(
                        blank=True, help_text="Why it failed or was stopped, as a JSON object.", null=True
                    ),
                ),
                migrations.AlterField(
                    model_name="execution",
                    name="metadata",
                    field=executions.models.fields.ExactJSONField(
                        blank=True, default=dict, help_text="Free-form data the creator attached."
                    ),
                ),
                migrations.AlterField(
                    model_name="executionstatuschange",
                    name="error_info",
                    field=executions.models.fields.ExactJSONField(blank=True, null=True),
                ),
                migrations.AlterField(
                    model_name="idempotencykey",
                    name="response_body",
                    field=executions.models.fields.ExactJSONField(
                        help_text="The original 201's body, answered again to a retry."
                    ),
                ),
            ],
        )
    ]
