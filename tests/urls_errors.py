"""The service's URLs plus views that fail, for tests/test_error_leaks.py."""

from django.conf import settings
from django.urls import path

from config.urls import handler400, handler403, handler404, handler500  # noqa: F401
from config.urls import urlpatterns as service_urlpatterns


def fail_with_secrets(request):
    """An internal error whose message holds what must never reach a client."""
    raise RuntimeError(
        f'SELECT "password" FROM "auth_user"; {settings.SECRET_KEY}; {settings.BASE_DIR}/config/settings.py'
    )


urlpatterns = [
    path("api/v1/plain-django-failure", fail_with_secrets),
    path("plain-django-failure", fail_with_secrets),
    *service_urlpatterns,
]
