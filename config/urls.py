from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from executions.api.errors import api_route_not_found

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/", include("executions.api.urls")),
    # Last: whatever else is asked for under /api/ is a JSON 404, with DEBUG on or off.
    re_path(r"^api/", api_route_not_found),
]

handler400 = "executions.api.errors.bad_request"
handler403 = "executions.api.errors.permission_denied"
handler404 = "executions.api.errors.page_not_found"
handler500 = "executions.api.errors.server_error"
