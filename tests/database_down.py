"""A real database outage for one test: the default connection is swapped for one that
points where no database answers (a missing directory for SQLite, a closed port for
PostgreSQL), so the service meets a genuine OperationalError, not a mock."""

import pytest
from django.db import connections
from django.db.utils import load_backend

from devtools.net import free_port


@pytest.fixture
def database_down(db):
    working = connections["default"]
    settings_dict = dict(working.settings_dict)
    if working.vendor == "sqlite":
        settings_dict["NAME"] = "/nonexistent-directory/executions.sqlite3"
    else:
        settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()), OPTIONS={"connect_timeout": 2})
    broken = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, "default")
    connections["default"] = broken
    try:
        yield
    finally:
        connections["default"] = working
