"""The service's URLs plus views that fail the way a database that went away fails, outside
DRF (tests/system/test_faults.py)."""

from django.db import OperationalError
from django.urls import path

from config.urls import handler400, handler403, handler404, handler500, urlpatterns  # noqa: F401


def database_gone(request):
    raise OperationalError("server closed the connection unexpectedly")


def plain_bug(request):
    raise RuntimeError("a bug")


urlpatterns = [
    path("api/test-only/database-gone", database_gone),
    path("api/test-only/bug", plain_bug),
    path("test-only/database-gone", database_gone),
    *urlpatterns,
]
