from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from executions.api.docs import only_this_host
from executions.api.exception_handler import HEADERS_TOO_LARGE_PATH, api_route_not_found, headers_too_large
from executions.api.health import LivenessView, ReadinessView
from executions.api.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI's set-up script as a file of its own (?script), not inline: the docs' policy
    # runs scripts from this host only (executions/api/docs.py).
    path(
        "api/docs/", only_this_host(SpectacularSwaggerSplitView.as_view(url_name="schema")), name="swagger-ui"
    ),
    path(
        "api/redoc/",
        only_this_host(
            SpectacularRedocView.as_view(url_name="schema", template_name="executions/redoc.html")
        ),
        name="redoc",
    ),
    path("favicon.ico", RedirectView.as_view(url=static("executions/favicon.svg")), name="favicon"),
    path("healthz", LivenessView.as_view(), name="healthz"),
    path("readyz", ReadinessView.as_view(), name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path(HEADERS_TOO_LARGE_PATH, headers_too_large),
    path("api/v1/", include("executions.api.urls")),
    # Last: whatever else is asked for under /api/ is a JSON 404, with DEBUG on or off.
    re_path(r"^api/", api_route_not_found),
]

handler400 = "executions.api.exception_handler.bad_request"
handler403 = "executions.api.exception_handler.permission_denied"
handler404 = "executions.api.exception_handler.page_not_found"
handler500 = "executions.api.exception_handler.server_error"
