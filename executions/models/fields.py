"""Model fields of our own."""

import json

from django.db import models


class ExactJSONField(models.JSONField):
    """A JSONField that gives back the JSON value it was given, on SQLite and PostgreSQL alike.

    Django's JSONField is `jsonb` on PostgreSQL, which parses the text into PostgreSQL's own
    types: every number becomes `numeric` (`1e308` reads back as a 309-digit integer, 50 times
    the bytes, `-0.0` as `0.0`) and object keys are reordered. This one is `json` there, the
    text as written (checked to be JSON), as SQLite keeps it: what reads it gets the same
    numbers, the same key order, and so no more bytes than were stored. The price is
    PostgreSQL's jsonb operators (containment, key lookups, equality), which nothing here uses.
    """

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def get_db_prep_value(self, value, connection, prepared=False):
        if connection.vendor != "postgresql":
            return super().get_db_prep_value(value, connection, prepared)
        if not prepared:
            value = self.get_prep_value(value)
        # psycopg's Json sends the text typed `json`; Django's Jsonb would make PostgreSQL
        # parse it as jsonb on the way in (and cast it back to text), which is the loss above.
        # Imported here, as Django imports psycopg: only where PostgreSQL is used.
        from psycopg.types.json import Json

        return Json(value, dumps=self._dumps)

    def _dumps(self, value) -> str:
        # What SQLite stores too (Django's JSONField there): ASCII, the encoder's.
        return json.dumps(value, cls=self.encoder)

    def from_db_value(self, value, expression, connection):
        # psycopg decodes a `json` column itself (Django only asks it not to for jsonb).
        if value is not None and not isinstance(value, str):
            return value
        return super().from_db_value(value, expression, connection)
