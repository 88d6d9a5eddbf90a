from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from executions.api.errors import api_route_not_found
from executions.api.health import LivenessView, ReadinessView
from executions.api.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="executions/redoc.html"), name="redoc"),
    path("healthz", LivenessView.as_view(), name="healthz"),
    path("readyz", ReadinessView.as_view(), name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include("executions.api.urls")),
    # Last: whatever else is asked for under /api/ is a JSON 404, with DEBUG on or off.
    re_path(r"^api/", api_route_not_found),
]

handler400 = "executions.api.errors.bad_request"
handler403 = "executions.api.errors.permission_denied"
handler404 = "executions.api.errors.page_not_found"
handler500 = "executions.api.errors.server_error"
