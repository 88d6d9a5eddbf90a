"""Migration 0007's index for the admin's search by the start of a name, again: on SQLite,
0008's AlterField of the id rebuilt the table (Django's SQLite schema editor copies a table
to alter a column), and a rebuilt table keeps only the indexes the models declare, so the
raw-SQL index of 0007 was gone and every search scanned the whole table (1.2 s at 300,000
rows, bench/scale.py). IF NOT EXISTS: PostgreSQL still has it. A later migration that
rebuilds the table on SQLite must create it again: tests/test_admin.py::
test_the_name_search_is_answered_from_the_name_index fails until it does."""

from django.db import migrations

INDEX = "execution_name_prefix_idx"
CREATE = {
    "sqlite": f"CREATE INDEX IF NOT EXISTS {INDEX} ON executions_execution (name COLLATE NOCASE)",
    "postgresql": (
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON executions_execution (UPPER(name::text) text_pattern_ops)"
    ),
}


def create_index(apps, schema_editor):
    statement = CREATE.get(schema_editor.connection.vendor)
    if statement:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("executions", "0013_notification_payload_as_sent")]

    # Going back leaves the index: 0007 (which drops it going back) owns it.
    operations = [migrations.RunPython(create_index, migrations.RunPython.noop, elidable=False)]
