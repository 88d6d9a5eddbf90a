"""An index for the admin's search by the start of a name (`name__istartswith`), in the form
each database can use for it: SQLite's LIKE 'x%' needs an index with the NOCASE collation,
PostgreSQL's UPPER(name) LIKE UPPER('x%') an index on UPPER(name) with text_pattern_ops."""

from django.db import migrations

INDEX = "execution_name_prefix_idx"
CREATE = {
    "sqlite": f"CREATE INDEX {INDEX} ON executions_execution (name COLLATE NOCASE)",
    "postgresql": f"CREATE INDEX {INDEX} ON executions_execution (UPPER(name::text) text_pattern_ops)",
}


def create_index(apps, schema_editor):
    statement = CREATE.get(schema_editor.connection.vendor)
    if statement:
        schema_editor.execute(statement)


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor in CREATE:
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("executions", "0006_execution_finished_idx")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
