"""One error contract for every endpoint, produced here and nowhere else.

Bodies that fail validation get FastAPI's 422 HTTPValidationError; every other error is an
ErrorResponse (detail, error_code, correlation_id, timestamp). DRF views reach this through
`api_exception_handler`; requests that never reach a DRF view (unknown URLs, errors in
middleware) through the Django handlers below, which answer JSON under /api/.
"""

import logging
import sys

from django.core import exceptions as django_exceptions
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from .. import metrics
from ..errors import (
    DeliveryNotFound,
    ExecutionError,
    ExecutionNotFound,
    ExecutionNotRunning,
    IdempotencyKeyReused,
    InvalidStatusTransition,
    MonitorNameTaken,
    MonitorNotFound,
    NotificationEndpointNotFound,
    PreconditionFailed,
    UnknownMonitor,
)
from ..notifications.services import InvalidEndpoint
from .error_codes import ErrorCode
from .middleware import current_correlation_id
from .parsers import PayloadTooLarge
from .schemas import ErrorResponse
from .throttling import throttle_refused_authentication
from .validation import RequestValidationError

logger = logging.getLogger("executions.api")

DOMAIN_ERROR_STATUS = {
    ExecutionNotFound: status.HTTP_404_NOT_FOUND,
    InvalidStatusTransition: status.HTTP_400_BAD_REQUEST,
    ExecutionNotRunning: status.HTTP_409_CONFLICT,
    PreconditionFailed: status.HTTP_412_PRECONDITION_FAILED,
    IdempotencyKeyReused: status.HTTP_422_UNPROCESSABLE_ENTITY,
    NotificationEndpointNotFound: status.HTTP_404_NOT_FOUND,
    DeliveryNotFound: status.HTTP_404_NOT_FOUND,
    MonitorNotFound: status.HTTP_404_NOT_FOUND,
    MonitorNameTaken: status.HTTP_409_CONFLICT,
}


class BadRequest(drf_exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Bad request"
    default_code = "bad_request"


# The error_code of each DRF exception the API can raise (subclasses included).
API_EXCEPTION_ERROR_CODES = {
    drf_exceptions.NotAuthenticated: ErrorCode.NOT_AUTHENTICATED,
    drf_exceptions.AuthenticationFailed: ErrorCode.AUTHENTICATION_FAILED,
    drf_exceptions.PermissionDenied: ErrorCode.PERMISSION_DENIED,
    drf_exceptions.NotFound: ErrorCode.NOT_FOUND,
    drf_exceptions.MethodNotAllowed: ErrorCode.METHOD_NOT_ALLOWED,
    drf_exceptions.NotAcceptable: ErrorCode.NOT_ACCEPTABLE,
    drf_exceptions.UnsupportedMediaType: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    drf_exceptions.Throttled: ErrorCode.THROTTLED,
    PayloadTooLarge: ErrorCode.PAYLOAD_TOO_LARGE,
    BadRequest: ErrorCode.BAD_REQUEST,
}


def _api_error_code(exc: drf_exceptions.APIException) -> str:
    for cls in type(exc).__mro__:
        if cls in API_EXCEPTION_ERROR_CODES:
            return API_EXCEPTION_ERROR_CODES[cls]
    # Any other DRF exception (none is raised today) keeps DRF's own code, in capitals.
    return exc.default_code.upper()


# Seconds a client is told to wait before retrying while the database is unreachable.
RETRY_AFTER_DATABASE_DOWN = 5


def error_body(detail: str, error_code: str) -> dict:
    return ErrorResponse(
        detail=detail, error_code=error_code, correlation_id=current_correlation_id()
    ).model_dump(mode="json")


def api_exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every exception a DRF view raises becomes a JSON answer."""
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, django_exceptions.PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    elif isinstance(exc, django_exceptions.RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, django_exceptions.SuspiciousOperation):
        # What Django answers 400 outside DRF (e.g. TooManyFieldsSent for a query string
        # with more than DATA_UPLOAD_MAX_NUMBER_FIELDS parameters) is a 400 here too.
        exc = BadRequest()
    elif isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        exc = throttle_refused_authentication(context["request"], context["view"]) or exc

    set_rollback()
    headers = {}
    if isinstance(exc, UnknownMonitor):
        # The body's `monitor` names nothing the caller may run: a 422 item like pydantic's.
        exc = RequestValidationError(
            [{"type": exc.item_type, "loc": ["body", "monitor"], "msg": exc.message, "input": exc.name}]
        )
    if isinstance(exc, RequestValidationError):
        return Response({"detail": exc.errors}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    if isinstance(exc, InvalidEndpoint):
        # The service's own check of an endpoint as a whole (the body's fields are checked
        # before it): an item located at the field it names.
        item = {"type": "invalid_endpoint", "loc": ["body", exc.field], "msg": str(exc), "input": None}
        return Response({"detail": [item]}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    if isinstance(exc, ExecutionError):
        body = {**error_body(exc.detail, exc.error_code), **exc.extra_fields()}
        return Response(body, status=DOMAIN_ERROR_STATUS[type(exc)])
    if isinstance(exc, drf_exceptions.APIException):
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        return Response(
            error_body(str(exc.detail), _api_error_code(exc)), status=exc.status_code, headers=headers
        )
    if isinstance(exc, (OperationalError, InterfaceError)):
        return database_unavailable_response(exc, Response)
    if isinstance(exc, DataError):
        logger.warning("Value refused by the database: %s", exc)
        return Response(
            error_body("The database cannot store a value in this request", ErrorCode.BAD_REQUEST),
            status=status.HTTP_400_BAD_REQUEST,
        )
    logger.exception("Unhandled error in %s %s", context["request"].method, context["request"].path)
    return Response(
        error_body("Internal server error", ErrorCode.INTERNAL_ERROR),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def database_unavailable_response(exc, response_class):
    """503 SERVICE_UNAVAILABLE with Retry-After, as a DRF Response or a Django JsonResponse."""
    logger.warning("Database unavailable: %s", exc)
    metrics.DATABASE_UNAVAILABLE.inc()
    return response_class(
        error_body("The database is unavailable; try again shortly", ErrorCode.SERVICE_UNAVAILABLE),
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_DATABASE_DOWN)},
    )


# --- Django's own error handlers (config/urls.py) ----------------------------------------


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _json_error(detail: str, error_code: str, status_code: int) -> JsonResponse:
    return JsonResponse(error_body(detail, error_code), status=status_code)


# Exempt: it changes nothing, and without the exemption a POST, PATCH, PUT or DELETE to an
# unknown URL (the PATCH URL with a trailing slash, say) got Django's HTML CSRF page, not a 404.
@csrf_exempt
def api_route_not_found(request, *args, **kwargs):
    """Any /api/ URL that no route takes: JSON, whatever DEBUG says."""
    return _json_error("Not found", ErrorCode.NOT_FOUND, status.HTTP_404_NOT_FOUND)


# deploy/nginx.conf hands its 431 here (the request's headers left behind): nginx writes no
# reason phrase for a status it does not know, gunicorn does.
HEADERS_TOO_LARGE_PATH = ".errors/headers_too_large"


@csrf_exempt
def headers_too_large(request, *args, **kwargs):
    return _json_error(
        "Request header fields too large",
        ErrorCode.HEADERS_TOO_LARGE,
        status.HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE,
    )


def bad_request(request, exception, template_name="400.html"):
    if not _is_api(request):
        return defaults.bad_request(request, exception, template_name)
    if isinstance(exception, django_exceptions.RequestDataTooBig):
        return _json_error("Request body too large", ErrorCode.PAYLOAD_TOO_LARGE, 413)
    return _json_error("Bad request", ErrorCode.BAD_REQUEST, status.HTTP_400_BAD_REQUEST)


def permission_denied(request, exception, template_name="403.html"):
    if not _is_api(request):
        return defaults.permission_denied(request, exception, template_name)
    return _json_error("Permission denied", ErrorCode.PERMISSION_DENIED, status.HTTP_403_FORBIDDEN)


def page_not_found(request, exception, template_name="404.html"):
    if not _is_api(request):
        return defaults.page_not_found(request, exception, template_name)
    return api_route_not_found(request)


# The admin's answer while the database is unreachable: a page of its own, with no template
# or context processor that could reach for the database again.
DATABASE_UNAVAILABLE_PAGE = (
    '<!doctype html>\n<html lang="en"><head><title>Service unavailable</title></head><body>'
    "<h1>Service unavailable</h1><p>The database is unavailable; try again shortly.</p></body></html>\n"
)


def server_error(request, template_name="500.html"):
    # Django calls this handler while it handles the exception, so exc_info() is that one:
    # a database that went away outside a DRF view (middleware, a plain view, the admin) is a
    # 503 with Retry-After, not a 500.
    exception = sys.exc_info()[1]
    database_unavailable = isinstance(exception, (OperationalError, InterfaceError))
    if not _is_api(request):
        if database_unavailable:
            return HttpResponse(
                DATABASE_UNAVAILABLE_PAGE,
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": str(RETRY_AFTER_DATABASE_DOWN)},
            )
        return defaults.server_error(request, template_name)
    if database_unavailable:
        return database_unavailable_response(exception, JsonResponse)
    return _json_error("Internal server error", ErrorCode.INTERNAL_ERROR, 500)
