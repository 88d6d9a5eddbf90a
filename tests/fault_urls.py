"""The service's URLs plus views that fail the way a database that went away fails, outside
DRF (tests/system/test_faults.py), and a worker that dies mid-answer
(tests/system/test_production.py, through tests/fault_settings.py)."""

import os
import signal

from django.db import OperationalError
from django.http import StreamingHttpResponse
from django.urls import path

from config.urls import handler400, handler403, handler404, handler500, urlpatterns  # noqa: F401
from executions.services import execution_create


def database_gone(request):
    raise OperationalError("server closed the connection unexpectedly")


def plain_bug(request):
    raise RuntimeError("a bug")


def create_then_die(request):
    """Creates an execution (committed), then the worker is SIGKILLed mid-answer: after it
    gave gunicorn the answer's status and headers, before the body. An empty first chunk is
    the moment at which gunicorn, unchanged, has written the head to nginx."""
    execution_create(name="created-then-killed")

    def body():
        yield b""
        os.kill(os.getpid(), signal.SIGKILL)
        yield b'{"never": "sent"}'

    return StreamingHttpResponse(
        body(), status=201, content_type="application/json", headers={"Content-Length": "17"}
    )


urlpatterns = [
    path("api/test-only/create-then-die", create_then_die),
    path("api/test-only/database-gone", database_gone),
    path("api/test-only/bug", plain_bug),
    path("test-only/database-gone", database_gone),
    *urlpatterns,
]
