"""GET /metrics for Prometheus, behind a bearer secret, and the request-duration middleware."""

import hmac
import time

from django.conf import settings
from django.http import HttpResponse, HttpResponseNotFound
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from .. import metrics

# Methods a route may be asked with; any other method is counted as "other", so that a
# client cannot add label values (and so time series) at will.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"


@require_GET
def metrics_view(request):
    """Not public: without METRICS_TOKEN the endpoint does not exist (404); with it, only a
    request with `Authorization: Bearer <METRICS_TOKEN>` is answered."""
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponseNotFound("Not found\n", content_type="text/plain")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


class RequestDurationMiddleware:
    """Times every request, labelled by the name of the route it matched ("execution-detail",
    "healthz"), never the raw path: the number of label values stays bounded whatever
    clients ask for."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.view_name if match is not None else UNMATCHED_ROUTE
        method = request.method if request.method in _KNOWN_METHODS else "other"
        metrics.REQUEST_DURATION.labels(route, method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response
