"""Correlation ids: every request gets one, every response and log line carries it."""

import contextvars
import logging
import re
import time
import uuid

from ..text import printable

logger = logging.getLogger("executions.request")

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is taken as it is only if it is short and plain, so that it cannot forge
# log lines or fill them; anything else is replaced by a new id.
_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

_current_correlation_id = contextvars.ContextVar("correlation_id", default="-")


def current_correlation_id() -> str:
    return _current_correlation_id.get()


class CorrelationIdLogFilter(logging.Filter):
    """Puts the current request's correlation id on every log record."""

    def filter(self, record):
        if not hasattr(record, "correlation_id"):
            # Django logs an error response (django.request) after the middleware that set
            # the id has returned, but passes the request along with the record.
            request_id = getattr(getattr(record, "request", None), "correlation_id", None)
            record.correlation_id = request_id or _current_correlation_id.get()
        return True


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        correlation_id = request.headers.get(REQUEST_ID_HEADER, "")
        if not _ACCEPTABLE_REQUEST_ID.fullmatch(correlation_id):
            correlation_id = str(uuid.uuid4())
        request.correlation_id = correlation_id
        token = _current_correlation_id.set(correlation_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = correlation_id
            logger.info(
                "%s %s %s %.1fms",
                request.method,
                # A path may hold anything percent-encoded: a newline would forge a log line.
                printable(request.path),
                response.status_code,
                (time.perf_counter() - started) * 1000,
                extra={"correlation_id": correlation_id},
            )
            return response
        finally:
            _current_correlation_id.reset(token)


class ReleaseRenderedResponseMiddleware:
    """Lets a DRF response be freed the moment it is sent, not at the next full garbage
    collection. DRF leaves every response in reference cycles (the view keeps it as
    `view.response`, its `renderer_context` keeps the view and the response itself), so a
    page of executions, as Python objects and as JSON, stayed in the worker after each
    request: a gunicorn worker grew by the size of every list page it served."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        # Rendered by now (Django renders a template response before the middleware sees it).
        context = getattr(response, "renderer_context", None)
        if context is not None:
            view = context.get("view")
            if getattr(view, "response", None) is response:
                del view.response
            response.renderer_context = None
        return response
